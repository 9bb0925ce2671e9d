"""``stats``: queue depths and outcome counts."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from ghl_intake.embedded import make_pool
from ghl_intake.ops import stats
from ghl_intake.settings import Settings


def cmd_stats(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if not settings.redis_url:
        from ghl_intake.settings import SettingsError

        raise SettingsError("stats needs REDIS_URL")

    async def go() -> dict[str, Any]:
        pool = make_pool(settings)
        try:
            return await stats(pool, settings)
        finally:
            await pool.aclose()

    data = asyncio.run(go())
    if args.json:
        print(json.dumps(data))
    else:
        print("queues:   " + "  ".join(f"{k}={v}" for k, v in data["queues"].items()))
        print("outcomes: " + "  ".join(f"{k}={v}" for k, v in data["outcomes"].items()))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("stats", help="queue depths and outcome counts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stats)
