"""``dlq list|replay``: inspect and replay dead letters."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from ghl_intake import keys
from ghl_intake.embedded import make_pool
from ghl_intake.ops import replay
from ghl_intake.settings import Settings, SettingsError
from store.dlq import DeadLetterStore


def _settings() -> Settings:
    s = Settings.from_env()
    if not s.redis_url:
        raise SettingsError("dlq commands need REDIS_URL")
    return s


def cmd_list(args: argparse.Namespace) -> int:
    settings = _settings()
    km = keys.load(settings)

    async def go() -> list[Any]:
        pool = make_pool(settings)
        try:
            return await DeadLetterStore(pool, km.keyring, prefix=settings.key_prefix).list(
                state=None if args.all else "dead", stage=args.stage, tenant=args.tenant)
        finally:
            await pool.aclose()

    entries = asyncio.run(go())
    if args.json:
        print(json.dumps([e.__dict__ for e in entries]))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"dead letters ({len(entries)})")
    for col in ("id", "stage", "tenant", "event", "reason", "error", "attempts", "state", "updated"):
        table.add_column(col)
    for e in entries:
        table.add_row(e.id, e.stage, e.tenant, e.event_id[:12], e.reason, e.error[:60], str(e.attempts), e.state,
                      time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.updated_at)))
    Console().print(table)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    settings = _settings()
    km = keys.load(settings)
    body = Path(args.body_file).read_bytes() if args.body_file else None

    async def go() -> int:
        pool = make_pool(settings)
        try:
            res = await replay(pool, settings, km.keyring, args.id, body_override=body)
            print(f"{res.dlq_id}: {res.message}")
            return 0 if res.replayed else 1
        finally:
            await pool.aclose()

    return asyncio.run(go())


def register(sub: Any) -> None:
    p = sub.add_parser("dlq", help="dead letters")
    ds = p.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    lp = ds.add_parser("list", help="list dead letters")
    lp.add_argument("--stage")
    lp.add_argument("--tenant")
    lp.add_argument("--all", action="store_true", help="include replayed entries")
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func=cmd_list)
    rp = ds.add_parser("replay", help="re-enqueue one dead letter at the stage that failed")
    rp.add_argument("id")
    rp.add_argument("--body-file", help="dedup-stage entries: replace the stored body with this corrected file")
    rp.set_defaults(func=cmd_replay)


