"""``run``, ``serve`` and ``worker``: the long-running processes."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from ghl_intake import argtypes, keys
from ghl_intake.runtime import warn
from ghl_intake.settings import Settings, SettingsError
from pipeline.models import STAGES

log = logging.getLogger("ghl_intake")


def settings_for_service(args: argparse.Namespace) -> Settings:
    """Settings from the environment; refuses to start without keys unless ``--dev``."""
    settings = Settings.from_env()
    missing = settings.missing_keys()
    if missing and not args.dev:
        raise SettingsError("refusing to start: missing " + ", ".join(missing) +
                            ". Run `ghl-intake keys generate` and set them, or pass --dev for ephemeral keys.")
    if missing:
        keys.apply_dev_keys(settings)
        warn("!!! --dev: EPHEMERAL KEYS for " + ", ".join(missing) +
             ". Anything encrypted in this run is unreadable after it ends. Never use --dev in production. !!!")
    return settings


async def _serve(settings: Settings, host: str, port: int, with_workers: bool) -> None:
    import uvicorn

    from ghl_intake.embedded import StageRunner, build_app, make_pool

    if not settings.redis_url:
        warn("REDIS_URL is not set: using an in-memory Redis (fakeredis); nothing survives this process.")
    pool = make_pool(settings)
    app = build_app(settings, pool)
    from ingress.app import OpsServer

    ops = OpsServer.start(app)  # /metrics and /health/security on INTAKE_OPS_PORT, when set
    runner = StageRunner(settings, pool) if with_workers else None
    if runner:
        runner.start()
    config = uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    try:
        await server.serve()
    finally:
        if ops:
            await ops.stop()
        if runner:
            await runner.stop()
        await pool.aclose()


def cmd_run(args: argparse.Namespace) -> int:
    settings = settings_for_service(args)
    asyncio.run(_serve(settings, args.host, args.port, with_workers=True))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_for_service(args)
    if not settings.redis_url:
        raise SettingsError("serve needs REDIS_URL (use `ghl-intake run` for the all-in-one process)")
    asyncio.run(_serve(settings, args.host, args.port, with_workers=False))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    settings = settings_for_service(args)
    if not settings.redis_url:
        raise SettingsError("worker needs REDIS_URL (use `ghl-intake run` for the all-in-one process)")
    from arq.worker import Worker

    from workers.stages import worker_kwargs

    kw: dict[str, Any] = worker_kwargs(args.stage, settings)
    worker = Worker(**kw)
    worker.run()
    return 0


def register(sub: Any) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dev", action="store_true", help="start with ephemeral keys when key settings are missing")

    p = sub.add_parser("run", help="ingress and every stage in one process (fakeredis when REDIS_URL is unset)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=argtypes.port, default=8000)
    common(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("serve", help="the ingress only (needs REDIS_URL)")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=argtypes.port, default=8000)
    common(p)
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("worker", help="one stage worker (needs REDIS_URL)")
    p.add_argument("stage", choices=STAGES)
    common(p)
    p.set_defaults(func=cmd_worker)
