"""``/api/v1``: the console's actions as JSON, authenticated by per-user API tokens (Bearer).

Status codes: 401 without a valid token, 403 when the role may not do it or the tenant is not the
user's, 404 for a dead letter that does not exist *or* belongs to a tenant the user may not see
(no existence oracle), 400 for bad input, 501 when the deployment lacks the operation.
Every state-changing call appends a record naming the user to the system audit chain.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from pipeline.models import STAGES

from . import data
from .auth import Denied, addr_pseudonym, api, api_error, audit_action, deps_of, require_tenant

MAX_JSON_BYTES = 64 * 1024


async def _json_body(request: Request) -> dict[str, Any]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BYTES:
            raise Denied("body too large", status=413)
    if not body.strip():
        return {}
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Denied("body must be a JSON object", status=400) from None
    if not isinstance(obj, dict):
        raise Denied("body must be a JSON object", status=400)
    return obj


def _param(request: Request, body: dict[str, Any], name: str) -> str:
    v = body.get(name, request.query_params.get(name, ""))
    return v if isinstance(v, str) else ""


@api("view")
async def me(request: Request) -> Response:
    u = request.state.user
    from store.users import PERMISSIONS

    return JSONResponse({"name": u.name, "role": u.role, "tenants": list(u.tenants),
                         "permissions": sorted(PERMISSIONS[u.role])})


@api("view")
async def stats(request: Request) -> Response:
    deps = deps_of(request)
    user = request.state.user
    tenant = request.query_params.get("tenant", "")
    try:
        hours = max(1, min(168, int(request.query_params.get("hours", "24"))))
    except ValueError:
        return api_error(400, "hours must be an integer")
    queues = await data.queues(deps)
    if tenant:
        require_tenant(user, tenant)
        s = await data.tenant_series(deps, tenant, hours=hours)
        dead = await data.dead_letters(deps, user, tenant=tenant, limit=10**6)
        return JSONResponse({
            "tenant": tenant, "totals": s.totals, "audit_records": s.records, "dead_letters": len(dead),
            "hourly": [{"hour": time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(h)), **c}
                       for h, c in zip(s.hours, s.counts, strict=True)],
            "queues": queues,
        })
    tenants = await data.visible_tenants(deps, user)
    out: dict[str, Any] = {"tenants": {}, "queues": queues}
    for t in tenants[:500]:
        out["tenants"][t] = (await data.tenant_series(deps, t, hours=hours)).totals
    if user.all_tenants:
        from store.state import PipelineState

        out["outcomes"] = await PipelineState(deps.redis, deps.settings).outcomes()
    return JSONResponse(out)


def _dl(e: Any) -> dict[str, Any]:
    return asdict(e)


@api("view")
async def dead_letters(request: Request) -> Response:
    deps = deps_of(request)
    user = request.state.user
    q = request.query_params
    tenant, stage, reason, state = q.get("tenant", ""), q.get("stage", ""), q.get("reason", ""), q.get("state", "dead")
    if tenant:
        require_tenant(user, tenant)
    if stage and stage not in STAGES:
        return api_error(400, f"stage must be one of {', '.join(STAGES)}")
    if state not in ("dead", "replayed", "all"):
        return api_error(400, "state must be dead, replayed or all")
    try:
        limit = max(1, min(10_000, int(q.get("limit", "500"))))
    except ValueError:
        return api_error(400, "limit must be an integer")
    entries = await data.dead_letters(deps, user, tenant=tenant, stage=stage, reason=reason,
                                      state="" if state == "all" else state, limit=limit)
    return JSONResponse({"dead_letters": [_dl(e) for e in entries], "count": len(entries)})


@api("view")
async def dead_letter(request: Request) -> Response:
    deps = deps_of(request)
    entry = await data.dead_letter(deps, request.state.user, request.path_params["dlq_id"])
    if entry is None:
        return api_error(404, "no such dead letter")
    return JSONResponse(_dl(entry))


@api("dlq.replay")
async def replay(request: Request) -> Response:
    deps = deps_of(request)
    user = request.state.user
    entry = await data.dead_letter(deps, user, request.path_params["dlq_id"])
    if entry is None:
        return api_error(404, "no such dead letter")
    from ghl_intake.ops import replay as do_replay

    res = await do_replay(deps.redis, deps.settings, deps.keyring, entry.id, actor=f"api:{user.name}")  # type: ignore[arg-type]
    await audit_action(deps, request, user, "dlq_replay",
                       {"dlq_id": entry.id, "tenant": entry.tenant, "stage": entry.stage,
                        "result": "replayed" if res.replayed else "refused"}, via="api")
    return JSONResponse({"id": entry.id, "replayed": res.replayed, "stage": res.stage, "event_id": res.event_id,
                         "message": res.message}, status_code=200 if res.replayed else 409)


@api("dlq.purge")
async def purge_one(request: Request) -> Response:
    deps = deps_of(request)
    user = request.state.user
    entry = await data.dead_letter(deps, user, request.path_params["dlq_id"])
    if entry is None:
        return api_error(404, "no such dead letter")
    await audit_action(deps, request, user, "dlq_purge",
                       {"dlq_id": entry.id, "tenant": entry.tenant, "stage": entry.stage}, via="api")
    await data.dlq_store(deps).purge(entry.id)
    return JSONResponse({"id": entry.id, "purged": True})


@api("dlq.purge")
async def purge_many(request: Request) -> Response:
    """Purge by filters; a user without '*' must name one of their tenants."""
    deps = deps_of(request)
    user = request.state.user
    body = await _json_body(request)
    tenant, stage, reason = _param(request, body, "tenant"), _param(request, body, "stage"), _param(request, body, "reason")
    if tenant:
        require_tenant(user, tenant)
    elif not user.all_tenants:
        return api_error(403, "name one of your tenants")
    if stage and stage not in STAGES:
        return api_error(400, f"stage must be one of {', '.join(STAGES)}")
    entries = await data.dead_letters(deps, user, tenant=tenant, stage=stage, reason=reason, state="", limit=10**6)
    ids = [e.id for e in entries]
    await audit_action(deps, request, user, "dlq_purge",
                       {"tenant": tenant or "*", "stage": stage, "reason": reason, "count": str(len(ids)),
                        "ids": ",".join(ids[:50])}, via="api")
    store = data.dlq_store(deps)
    n = 0
    for i in ids:
        n += bool(await store.purge(i))
    return JSONResponse({"purged": n})


@api("audit.verify")
async def audit_verify(request: Request) -> Response:
    deps = deps_of(request)
    user = request.state.user
    body = await _json_body(request)
    tenants = await data.chains_to_verify(deps, user, _param(request, body, "tenant"))
    results = await data.verify_now(deps, tenants, user.name)
    bad = [r["tenant"] for r in results if not r["ok"]]
    await audit_action(deps, request, user, "audit_verify",
                       {"tenants": ",".join(tenants)[:400], "failed": ",".join(bad)[:400]}, via="api")
    return JSONResponse({"ok": not bad, "chains": results})


@api("audit.export")
async def audit_export(request: Request) -> Response:
    deps = deps_of(request)
    user = request.state.user
    tenant = request.query_params.get("tenant", "")
    if not tenant:
        return api_error(400, "tenant is required")
    require_tenant(user, tenant)
    try:
        lines = await deps.audit.export(tenant, request.query_params.get("since") or None,
                                        request.query_params.get("until") or None)
    except ValueError:
        return api_error(400, "since/until must be ISO-8601 times")
    await audit_action(deps, request, user, "audit_export", {"tenant": tenant, "lines": str(len(lines))}, via="api")
    return Response(b"".join(line + b"\n" for line in lines), media_type="application/x-ndjson")


def _gdpr(deps: Any) -> Any:
    """``store.gdpr.Gdpr`` over the console's Redis."""
    from ghl_intake import keys
    from store.gdpr import Gdpr

    crypto = keys.envelope_crypto(deps.settings, deps.redis, deps.keyring)
    return Gdpr(deps.redis, crypto, pseudonym_key=deps.pseudonym_key, prefix=deps.settings.key_prefix)


async def _gdpr_args(request: Request) -> tuple[str, str]:
    body = await _json_body(request) if request.method == "POST" else {}
    tenant, contact = _param(request, body, "tenant"), _param(request, body, "contact")
    if not tenant or not contact:
        raise Denied("tenant and contact are required", status=400)
    if len(contact) > 128:
        raise Denied("contact must be 1..128 characters", status=400)
    require_tenant(request.state.user, tenant)
    return tenant, contact


@api("gdpr.export")
async def gdpr_export(request: Request) -> Response:
    """Everything held about one contact, decrypted (admin only; audited with the pseudonym)."""
    deps = deps_of(request)
    tenant, contact = await _gdpr_args(request)
    gdpr = _gdpr(deps)
    data_ = await gdpr.export(tenant, contact)
    await deps.audit.append(
        data.SYSTEM_TENANT, event_id=f"console-{uuid.uuid4().hex}", stage="console", outcome="gdpr_export",
        actor=f"console:{request.state.user.name}", contact=data_["pseudonym"],
        counts={"audit_records": len(data_["audit_records"]), "dead_letters": len(data_["dead_letters"])},
        detail={"via": "api", "tenant": tenant, "addr": addr_pseudonym(deps, request)})
    return Response(orjson.dumps(data_, default=str), media_type="application/json",
                    headers={"Cache-Control": "no-store"})


@api("gdpr.erase")
async def gdpr_erase(request: Request) -> Response:
    """Destroy one contact's data key and data (admin only; audited with the pseudonym and counts)."""
    deps = deps_of(request)
    tenant, contact = await _gdpr_args(request)
    gdpr = _gdpr(deps)
    pseudo = (await gdpr.find(tenant, contact, decrypt=False)).pseudonym
    counts = await gdpr.erase(tenant, contact)
    await deps.audit.append(
        data.SYSTEM_TENANT, event_id=f"console-{uuid.uuid4().hex}", stage="console", outcome="gdpr_erase",
        actor=f"console:{request.state.user.name}", contact=pseudo, counts={k: int(v) for k, v in counts.items()},
        detail={"via": "api", "tenant": tenant, "addr": addr_pseudonym(deps, request)})
    return JSONResponse({"tenant": tenant, "pseudonym": pseudo, "erased": counts})


def api_routes() -> list[BaseRoute]:
    return [
        Route("/me", me, methods=["GET"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/dead-letters", dead_letters, methods=["GET"]),
        Route("/dead-letters/purge", purge_many, methods=["POST"]),
        Route("/dead-letters/{dlq_id}", dead_letter, methods=["GET"]),
        Route("/dead-letters/{dlq_id}", purge_one, methods=["DELETE"]),
        Route("/dead-letters/{dlq_id}/replay", replay, methods=["POST"]),
        Route("/dead-letters/{dlq_id}/purge", purge_one, methods=["POST"]),
        Route("/audit/verify", audit_verify, methods=["POST"]),
        Route("/audit/export", audit_export, methods=["GET"]),
        Route("/gdpr/export", gdpr_export, methods=["GET"]),
        Route("/gdpr/erase", gdpr_erase, methods=["POST"]),
    ]
