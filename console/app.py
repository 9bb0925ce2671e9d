"""The operator console: server-rendered pages under ``/console`` and the JSON API under ``/api/v1``.

``console_routes(deps)`` gives the two mounts for the ingress app (empty when
``INTAKE_CONSOLE_ENABLED=0`` or when ``INTAKE_CONSOLE_PORT`` puts the console on its own port);
``create_console_app(...)`` builds a stand-alone app for that port. Every route and its role
check is listed in docs/console.md.
"""

from __future__ import annotations

import hmac
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from itsdangerous import Signer
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ghl_intake.settings import Settings
from pipeline.models import STAGES
from store.audit import AuditStore, load_signing_key
from store.keyring import Keyring
from store.users import LoginThrottle, SessionStore, UserStore

from . import data
from .auth import (
    LOGIN_COOKIE,
    SECURITY_HEADERS,
    SESSION_COOKIE,
    ConsoleDeps,
    Denied,
    audit_action,
    base_path,
    client_addr,
    cookie_secret,
    cross_site,
    deps_of,
    error_page,
    load_session,
    make_templates,
    page,
    read_cookie,
    read_form,
    render,
    require_tenant,
    same_origin,
    set_cookie,
)

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


def make_deps(settings: Settings, redis: Redis, keyring: Keyring, pseudonym_key: bytes | None = None) -> ConsoleDeps:
    if pseudonym_key is None:
        from ghl_intake.keys import load

        pseudonym_key = load(settings).pseudonym_key
    users = UserStore(redis, prefix=settings.key_prefix)
    audit = AuditStore(redis, prefix=settings.key_prefix, signing_key=load_signing_key(settings),
                       checkpoint_every=settings.audit_checkpoint_every,
                       checkpoint_interval_s=settings.audit_checkpoint_interval_s)
    return ConsoleDeps(
        settings=settings, redis=redis, keyring=keyring, pseudonym_key=pseudonym_key, audit=audit, users=users,
        sessions=SessionStore(users, idle_s=settings.session_idle_s, max_s=settings.session_max_s),
        throttle=LoginThrottle(users, max_failures=settings.login_max_failures, lockout_s=settings.login_lockout_s),
        signer=Signer(cookie_secret(pseudonym_key), salt="ghl-intake-console"),
        templates=make_templates(str(TEMPLATES)),
    )


# --------------------------------------------------------------------------------------- login / logout


def _safe_next(request: Request, nxt: str) -> str:
    base = base_path(request)
    if nxt.startswith(base + "/") and not nxt.startswith("//") and "\\" not in nxt and "\n" not in nxt:
        return nxt
    return base + "/"


async def login_form(request: Request) -> Response:
    deps = deps_of(request)
    if await load_session(request) is not None:
        return RedirectResponse(base_path(request) + "/", status_code=303)
    token = secrets.token_urlsafe(24)
    resp = await render(request, "login.html", {"login_csrf": token, "next": request.query_params.get("next", ""),
                                                "error": ""})
    set_cookie(deps, request, resp, LOGIN_COOKIE, token, max_age=3600)
    return resp


async def login_submit(request: Request) -> Response:
    deps = deps_of(request)
    form = await read_form(request)
    name = form.get("username", "").strip()[:64]
    password = form.get("password", "")[:1024]
    expected = read_cookie(deps, request, LOGIN_COOKIE)
    error, status = "", 200
    if not same_origin(request) or not expected or not hmac.compare_digest(expected, form.get("csrf", "")):
        error, status = "The login form expired; please try again.", 403
    elif (await deps.throttle.locked(name, client_addr(request))).locked:
        error, status = "Too many failed attempts; try again later.", 429
    else:
        user = await deps.users.authenticate(name, password)
        if user is not None:
            await deps.throttle.success(user.name)
            sid, _ = await deps.sessions.create(user)
            await audit_action(deps, request, user, "login", {}, via="web")
            ok = RedirectResponse(_safe_next(request, form.get("next", "")), status_code=303)
            set_cookie(deps, request, ok, SESSION_COOKIE, sid, max_age=deps.settings.session_max_s)
            ok.delete_cookie(LOGIN_COOKIE, path=base_path(request) or "/")
            ok.headers.update(SECURITY_HEADERS)
            return ok
        st = await deps.throttle.failure(name, client_addr(request))
        if st.just_locked:
            exists = await deps.users.get(name) is not None  # a typed unknown name is never recorded
            await audit_action(deps, request, None, "login_lockout",
                               {"scope": st.scope, "failures": str(st.failures),
                                "lockout_s": str(deps.settings.login_lockout_s)},
                               via="web", actor=f"console:{name}" if exists else "console:unknown-user")
            error, status = "Too many failed attempts; try again later.", 429
        else:
            error, status = "Wrong user name or password.", 401
    token = secrets.token_urlsafe(24)
    resp = await render(request, "login.html", {"login_csrf": token, "next": form.get("next", ""), "error": error,
                                                "username": name}, status=status)
    set_cookie(deps, request, resp, LOGIN_COOKIE, token, max_age=3600)
    return resp


@page("view", post=True)
async def logout(request: Request) -> Response:
    deps = deps_of(request)
    await deps.sessions.destroy(read_cookie(deps, request, SESSION_COOKIE))
    await audit_action(deps, request, request.state.session.user, "logout", {}, via="web")
    resp = RedirectResponse(base_path(request) + "/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path=base_path(request) or "/")
    return resp


# --------------------------------------------------------------------------------------- pages


@page("view")
async def dashboard(request: Request) -> Response:
    deps = deps_of(request)
    user = request.state.session.user
    tenants = await data.visible_tenants(deps, user)
    selected = request.query_params.get("tenant", "")
    if selected:
        require_tenant(user, selected)
    elif tenants:
        selected = tenants[0]
    hours = 24
    try:
        hours = max(1, min(168, int(request.query_params.get("hours", "24"))))
    except ValueError:
        pass
    rows = []
    for t in tenants[:200]:
        s = await data.tenant_series(deps, t, hours=hours)
        rows.append({"tenant": t, "totals": s.totals, "records": s.records})
    chart = None
    series = None
    if selected:
        series = await data.tenant_series(deps, selected, hours=hours)
        chart = data.chart(series)
    dead = await data.dead_letters(deps, user, limit=10**6)
    return await render(request, "dashboard.html", {
        "tenants": tenants, "selected": selected, "rows": rows, "chart": chart, "series": series, "hours": hours,
        "queues": await data.queues(deps), "dead_count": len(dead), "outcomes": data.OUTCOMES,
    })


@page("view")
async def dead_letter_list(request: Request) -> Response:
    deps = deps_of(request)
    user = request.state.session.user
    q = request.query_params
    tenant, stage, reason, state = q.get("tenant", ""), q.get("stage", ""), q.get("reason", ""), q.get("state", "dead")
    if tenant:
        require_tenant(user, tenant)
    if stage and stage not in STAGES:
        stage = ""
    if state not in ("dead", "replayed", ""):
        state = "dead"
    entries = await data.dead_letters(deps, user, tenant=tenant, stage=stage, reason=reason, state=state)
    return await render(request, "dead_letters.html", {
        "entries": entries, "tenants": await data.visible_tenants(deps, user), "stages": STAGES,
        "f": {"tenant": tenant, "stage": stage, "reason": reason, "state": state},
    })


@page("view")
async def dead_letter_detail(request: Request) -> Response:
    deps = deps_of(request)
    entry = await data.dead_letter(deps, request.state.session.user, request.path_params["dlq_id"])
    if entry is None:
        return await error_page(request, 404, "no such dead letter")
    return await render(request, "dead_letter.html", {"e": entry})


@page("dlq.replay", post=True)
async def dead_letter_replay(request: Request) -> Response:
    deps = deps_of(request)
    session = request.state.session
    entry = await data.dead_letter(deps, session.user, request.path_params["dlq_id"])
    if entry is None:
        return await error_page(request, 404, "no such dead letter")
    from ghl_intake.ops import replay

    res = await replay(deps.redis, deps.settings, deps.keyring, entry.id, actor=f"console:{session.user.name}")  # type: ignore[arg-type]
    await audit_action(deps, request, session.user, "dlq_replay",
                       {"dlq_id": entry.id, "tenant": entry.tenant, "stage": entry.stage,
                        "result": "replayed" if res.replayed else "refused"}, via="web")
    await deps.sessions.flash(session, f"{entry.id}: {res.message}")
    return RedirectResponse(f"{base_path(request)}/dead-letters/{entry.id}", status_code=303)


@page("dlq.purge", post=True)
async def dead_letter_purge(request: Request) -> Response:
    deps = deps_of(request)
    session = request.state.session
    entry = await data.dead_letter(deps, session.user, request.path_params["dlq_id"])
    if entry is None:
        return await error_page(request, 404, "no such dead letter")
    await audit_action(deps, request, session.user, "dlq_purge",
                       {"dlq_id": entry.id, "tenant": entry.tenant, "stage": entry.stage}, via="web")
    await data.dlq_store(deps).purge(entry.id)
    await deps.sessions.flash(session, f"{entry.id}: purged")
    return RedirectResponse(f"{base_path(request)}/dead-letters", status_code=303)


@page("view")
async def audit_page(request: Request) -> Response:
    deps = deps_of(request)
    user = request.state.session.user
    tenants = await data.visible_chains(deps, user)
    return await render(request, "audit.html", {"chains": await data.audit_status(deps, tenants),
                                                "results": None})


@page("audit.verify", post=True)
async def audit_verify(request: Request) -> Response:
    deps = deps_of(request)
    user = request.state.session.user
    tenants = await data.chains_to_verify(deps, user, request.state.form.get("tenant", ""))
    results = await data.verify_now(deps, tenants, user.name)
    bad = [r["tenant"] for r in results if not r["ok"]]
    await audit_action(deps, request, user, "audit_verify",
                       {"tenants": ",".join(tenants)[:400], "failed": ",".join(bad)[:400]}, via="web")
    all_tenants = await data.visible_chains(deps, user)
    return await render(request, "audit.html", {"chains": await data.audit_status(deps, all_tenants),
                                                "results": results})


@page("audit.export")
async def audit_export(request: Request) -> Response:
    deps = deps_of(request)
    user = request.state.session.user
    if cross_site(request):  # a GET that writes an audit record: not on another site's behalf
        raise Denied("export links work only from the console itself", status=403)
    tenant = require_tenant(user, request.query_params.get("tenant", ""))
    since, until = request.query_params.get("since") or None, request.query_params.get("until") or None
    try:
        lines = await deps.audit.export(tenant, since, until)
    except ValueError:
        raise Denied("since/until must be ISO-8601 times", status=400) from None
    await audit_action(deps, request, user, "audit_export", {"tenant": tenant, "lines": str(len(lines))}, via="web")
    body = b"".join(line + b"\n" for line in lines)
    fname = f"audit_{tenant}_{time.strftime('%Y%m%d%H%M%S', time.gmtime())}.jsonl"
    return Response(body, media_type="application/x-ndjson",
                    headers={**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{quote(fname)}"'})


@page("security.view")
async def security_page(request: Request) -> Response:
    deps = deps_of(request)
    return await render(request, "security.html", {"p": await data.posture(deps)})


def page_routes() -> list[BaseRoute]:
    return [
        Route("/", dashboard, methods=["GET"], name="dashboard"),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/dead-letters", dead_letter_list, methods=["GET"]),
        Route("/dead-letters/{dlq_id}", dead_letter_detail, methods=["GET"]),
        Route("/dead-letters/{dlq_id}/replay", dead_letter_replay, methods=["POST"]),
        Route("/dead-letters/{dlq_id}/purge", dead_letter_purge, methods=["POST"]),
        Route("/audit", audit_page, methods=["GET"]),
        Route("/audit/verify", audit_verify, methods=["POST"]),
        Route("/audit/export", audit_export, methods=["GET"]),
        Route("/security", security_page, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
    ]


def _sub_app(deps: ConsoleDeps, routes: list[BaseRoute]) -> Starlette:
    app = Starlette(routes=routes)
    app.state.console = deps
    return app


def console_routes(ingress_deps: Any) -> list[Any]:
    """Routes for the ingress app: ``/console`` (pages) and ``/api/v1`` (API); [] when
    ``INTAKE_CONSOLE_ENABLED=0`` or when ``INTAKE_CONSOLE_PORT`` serves the console on its own port.
    (Typed ``list[Any]`` so that the ingress's ``list[Route]`` takes the mounts.)"""
    s: Settings = ingress_deps.settings
    if not s.console_enabled or s.console_port > 0:
        return []
    deps = make_deps(s, ingress_deps.pool, ingress_deps.keyring, getattr(ingress_deps, "pseudonym_key", None))
    return [Route("/console", _to_console), *mounts(deps)]


async def _to_console(request: Request) -> Response:
    return RedirectResponse("/console/", status_code=307)


def mounts(deps: ConsoleDeps) -> list[BaseRoute]:
    from .api import api_routes

    return [Mount("/console", app=_sub_app(deps, page_routes())),
            Mount("/api/v1", app=_sub_app(deps, api_routes()))]


def create_console_app(deps: ConsoleDeps) -> Starlette:
    """A stand-alone app (``INTAKE_CONSOLE_PORT``): the same mounts; ``/`` and ``/console`` redirect."""
    return Starlette(routes=[Route("/", _to_console), Route("/console", _to_console), *mounts(deps)])
