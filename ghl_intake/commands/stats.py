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

    from ghl_intake import keys

    keyring = keys.load(settings).keyring if not settings.missing_keys() else None

    async def go() -> dict[str, Any]:
        pool = make_pool(settings)
        try:
            return await stats(pool, settings, keyring)
        finally:
            await pool.aclose()

    data = asyncio.run(go())
    if args.json:
        print(json.dumps(data))
    else:
        print("queues:   " + "  ".join(f"{k}={v}" for k, v in data["queues"].items()))
        print("outcomes: " + "  ".join(f"{k}={v}" for k, v in data["outcomes"].items()))
        if data.get("backpressure"):
            print("429s:     " + "  ".join(f"{k}={v}" for k, v in data["backpressure"].items()))
        if "dead_letters" in data:
            print(f"dead letters waiting: {data['dead_letters']['dead']}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("stats", help="queue depths and outcome counts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stats)
