"""``demo``: the whole pipeline on real GHL payloads and realistic lead messages, in one process."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
import uuid
from typing import Any

import httpx
import orjson

from ghl_intake import keys
from ghl_intake.demo_data import Webhook, fixture_webhooks, lead_webhooks
from ghl_intake.runtime import warn
from ghl_intake.settings import Settings
from ghl_intake.signing import GhlSigner


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_demo(settings: Settings, *, resend: int = 4, quiet: bool = False) -> dict[str, Any]:
    """Post every webhook, resend a few, wait until all are terminal; returns the per-event results."""
    import uvicorn

    from ghl_intake.embedded import StageRunner, build_app, make_pool, wait_quiet
    from pipeline.parse import event_meta
    from store.audit import AuditStore
    from store.state import PipelineState
    from store.tenants import TenantRegistry

    signer = GhlSigner()
    settings.ghl_ed25519_public_keys = signer.public_pem
    pool = make_pool(settings)
    state = PipelineState(pool, settings)
    started = time.monotonic()
    hooks: list[Webhook] = fixture_webhooks() + lead_webhooks()
    tenants = {event_meta(h.body)[0].tenant for h in hooks}
    registry = TenantRegistry(pool, keys.envelope_crypto(settings, pool), prefix=settings.key_prefix)
    for t in tenants:  # the demo agency is on the enterprise plan, so nothing waits for a new minute
        await registry.add(t, tier="enterprise")
    runner = StageRunner(settings, pool)
    runner.start()
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(settings, pool), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False, lifespan="off"))
    serve_task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.02)
    results: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        sends = [(h, False) for h in hooks] + [(h, True) for h in hooks[:: max(1, len(hooks) // resend)][:resend]]
        for h, again in sends:
            r = await client.post("/webhooks/ghl", content=h.body, headers=signer.headers(h.body))
            meta = event_meta(h.body)[0]
            results.append({"name": h.name + (" (sent again)" if again else ""), "type": meta.event_type,
                            "tenant": meta.tenant, "http": r.status_code,
                            "event_id": r.json().get("event_id") if r.status_code == 200 else None})
        bad = await client.post("/webhooks/ghl", content=hooks[0].body,
                                headers={"content-type": "application/json", "x-ghl-signature": signer.sign(b"x")})
    quiet_ok = await wait_quiet(pool, settings, timeout_s=180)
    audit = AuditStore(pool, prefix=settings.key_prefix, signing_key=keys.load(settings).audit_signing_key)
    await audit.checkpoint()  # sign every chain head now, so verification checks signatures too
    pii: dict[str, dict[str, int]] = {}
    samples: list[str] = []
    for event_id, counts, redacted in await _ready_counts(pool, settings):
        pii[event_id] = counts
        body = redacted.get("body")
        if isinstance(body, str) and redacted.get("messageType") == "SMS" and counts and len(samples) < 3:
            samples.append(body)
    for row in results:
        if row["event_id"]:
            row["outcome"] = await state.status(row["event_id"]) or "pending"
            row["pii"] = pii.get(row["event_id"], {})
    reports = await audit.verify()
    elapsed = time.monotonic() - started
    server.should_exit = True
    await serve_task
    await runner.stop()
    outcomes = await state.outcomes()
    await pool.aclose()
    return {"results": results, "forged_signature_status": bad.status_code, "quiet": quiet_ok,
            "audit": reports, "elapsed_s": elapsed, "samples": samples, "outcomes": outcomes, "tenants": len(tenants)}


async def _ready_counts(pool: Any, settings: Settings) -> list[tuple[str, dict[str, int], dict[str, Any]]]:
    """What downstream consumers see on the ready stream: event id, PII counts, redacted event."""
    out = []
    for _id, fields in await pool.xrange(settings.key("ready")):
        f = {k.decode(): v for k, v in fields.items()}
        out.append((f["event_id"].decode(), orjson.loads(f["counts"]), orjson.loads(f["event"])))
    return out


def print_report(data: dict[str, Any]) -> bool:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 130)
    table = Table(title="ghl-intake demo: every webhook through ingress → dedup → rate → redact → persist → audit")
    for col in ("#", "webhook", "payload type", "HTTP", "outcome", "PII entities found"):
        table.add_column(col)
    for i, row in enumerate(data["results"], 1):
        pii = ", ".join(f"{k}×{v}" for k, v in sorted(row.get("pii", {}).items())) or "-"
        table.add_row(str(i), row["name"], row["type"], str(row["http"]), row.get("outcome", "-"), pii)
    console.print(table)
    if data.get("samples"):
        console.print("what the assistant sees (redacted SMS from the ready stream):")
        for body in data["samples"]:
            console.print(f"  {body}", markup=False, highlight=False)
    o = data["outcomes"]
    console.print(f"outcomes: processed={o['processed']} duplicate={o['duplicate']} deferred={o['deferred']} "
                  f"dead_lettered={o['dead_lettered']}  (forged signature answered {data['forged_signature_status']})")
    ok = all(r.ok for r in data["audit"])
    records = sum(r.records for r in data["audit"])
    signed = sum(1 for r in data["audit"] if r.signed)
    console.print(f"audit verify: {'OK' if ok else 'BROKEN'} — {len(data['audit'])} chains, {records} records, "
                  f"{signed} chains with valid signed checkpoints")
    for r in data["audit"]:
        if not r.ok:
            console.print(f"  chain {r.tenant}: first bad record {r.first_bad_seq}: {r.reason}")
    console.print(f"{len(data['results'])} webhooks, {data['tenants']} tenants, all terminal: {data['quiet']}, "
                  f"in {data['elapsed_s']:.1f} s")
    return ok and data["quiet"] and all(r.get("outcome") in {"processed", "duplicate"} for r in data["results"])


def cmd_demo(args: argparse.Namespace) -> int:
    import logging

    if not args.verbose:  # the table is the output; per-job log lines would bury it
        for name in ("arq", "httpx", "ghl_intake.worker", "presidio-analyzer"):
            logging.getLogger(name).setLevel(logging.WARNING)
    settings = Settings.from_env()
    filled = keys.apply_dev_keys(settings)
    if filled:
        warn("demo: using ephemeral keys for " + ", ".join(filled))
    own_prefix = bool(settings.redis_url) and not os.environ.get("INTAKE_KEY_PREFIX")
    if own_prefix:  # never mix demo tenants and ephemeral-key data into a deployment's `intake:` keys
        settings.key_prefix = f"intake-demo-{uuid.uuid4().hex[:8]}"
    if settings.redis_url:
        warn(f"demo: using the Redis at REDIS_URL with key prefix {settings.key_prefix!r}"
             + (" (removed at the end; --keep keeps it)" if own_prefix else ""))
    else:
        warn("demo: no REDIS_URL, running on an in-memory Redis (fakeredis)")
    data = asyncio.run(run_demo(settings))
    ok = print_report(data)
    if own_prefix and not args.keep:
        ids = {row["event_id"] for row in data["results"] if row.get("event_id")}
        asyncio.run(_remove_demo_keys(settings, ids))
    return 0 if ok else 1


async def _remove_demo_keys(settings: Settings, event_ids: set[str]) -> None:
    """Everything the demo wrote: its prefix, and arq's own (unprefixed) job and result keys of its events."""
    from redis.asyncio import Redis

    r = Redis.from_url(settings.redis_url)
    doomed: list[bytes] = []

    def ours(key: bytes) -> bool:  # arq:job:{stage}:{event_id}[:...], arq:result:..., arq:retry:...
        if key.startswith(settings.key_prefix.encode() + b":"):
            return True
        parts = key.decode("utf-8", "replace").split(":")
        return len(parts) >= 4 and parts[0] == "arq" and parts[3] in event_ids

    try:
        from pipeline.models import STAGES

        for stage in STAGES:  # jobs still queued, such as the audit worker's next cron tick
            for job_id in await r.zrange(settings.key("q", stage), 0, -1):
                doomed.append(b"arq:job:" + job_id)
        for pattern in (f"{settings.key_prefix}:*", "arq:*"):
            async for key in r.scan_iter(match=pattern, count=1000):
                if ours(key):
                    doomed.append(key)
        for i in range(0, len(doomed), 1000):
            await r.delete(*doomed[i:i + 1000])
    finally:
        await r.aclose()


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on GHL fixtures and lead messages, print the outcome")
    p.add_argument("--verbose", action="store_true", help="show per-job worker and HTTP log lines")
    p.add_argument("--keep", action="store_true",
                   help="with REDIS_URL and no INTAKE_KEY_PREFIX: keep the demo's keys (own prefix) afterwards")
    p.set_defaults(func=cmd_demo)
