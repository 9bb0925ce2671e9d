"""``keys generate|status|rotate``: key settings, master key usage, online re-wrapping of data keys."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

from ghl_intake import argtypes
from ghl_intake.keys import envelope_crypto, generate_env
from ghl_intake.operator import audit_operator

if TYPE_CHECKING:
    from store.crypto import EnvelopeCrypto


def cmd_generate(args: argparse.Namespace) -> int:
    from ghl_intake.settings import SettingsError, parse_master_keys

    env = generate_env(args.key_id)
    try:
        parse_master_keys(env["INTAKE_MASTER_KEYS"])  # the same rule every command applies when it loads it
    except SettingsError:
        raise SettingsError("--key-id must be 1-32 letters, digits, '-' or '_'") from None
    for name, value in env.items():
        print(f"{name}={value}")
    return 0


def _crypto_run(fn: Any) -> int:
    from ghl_intake.runtime import redis_from_settings
    from ghl_intake.settings import Settings

    settings = Settings.from_env()
    redis = redis_from_settings(settings)
    crypto = envelope_crypto(settings, redis)

    async def go() -> int:
        try:
            return int(await fn(crypto, settings, redis))
        finally:
            await redis.aclose()

    return asyncio.run(go())


def cmd_status(args: argparse.Namespace) -> int:
    async def go(crypto: EnvelopeCrypto, settings: Any, redis: Any) -> int:
        counts = await crypto.status()
        dead = await crypto.master_blob_counts()
        marker = {k.decode(): v.decode() for k, v in (await redis.hgetall(crypto.rotation_key)).items()}
        ids = list(dict.fromkeys([*crypto.keyring.key_ids, *counts, *dead]))
        rows: list[dict[str, Any]] = []
        for kid in ids:
            role = ("primary" if kid == crypto.keyring.primary else
                    "decrypt-only" if crypto.keyring.has(kid) else "MISSING from INTAKE_MASTER_KEYS")
            rows.append({"key_id": kid, "role": role, "data_keys": counts.get(kid, 0), "dead_letters": dead.get(kid, 0)})
        unknown = [r for r in rows if r["role"].startswith("MISSING") and (r["data_keys"] or r["dead_letters"])]
        if args.json:
            print(json.dumps({"keys": rows, "rotation": marker}))
        else:
            from rich.console import Console
            from rich.table import Table

            table = Table(title="master keys")
            for col in ("key id", "role", "data keys wrapped", "dead letters sealed"):
                table.add_column(col)
            for r in rows:
                table.add_row(r["key_id"], r["role"], str(r["data_keys"]), str(r["dead_letters"]))
            console = Console()
            console.print(table)
            if marker:
                console.print(f"last rotation: target {marker.get('target')} state {marker.get('state')} "
                              f"({marker.get('done', '0')} data keys visited)")
            old = [r for r in rows if r["role"] != "primary" and (r["data_keys"] or r["dead_letters"])]
            if old:
                console.print("some data is still wrapped by older keys: run `ghl-intake keys rotate` "
                              "before removing them")
            else:
                console.print("every data key is wrapped by the primary key; older keys can be removed")
        return 1 if unknown else 0

    return _crypto_run(go)


def cmd_rotate(args: argparse.Namespace) -> int:
    async def go(crypto: EnvelopeCrypto, settings: Any, redis: Any) -> int:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        primary = crypto.keyring.primary
        await audit_operator(redis, settings, "keys_rotate", {"target": primary, "phase": "start"})
        with Progress(TextColumn("re-wrapping data keys under " + primary), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), disable=args.quiet) as progress:
            task = progress.add_task("rotate", total=None)

            def report(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            res = await crypto.rotate(batch=args.batch, progress=report)
        await audit_operator(redis, settings, "keys_rotate",
                             {"target": primary, "phase": "done" if res.complete else "incomplete",
                              "rewrapped": str(res.rewrapped), "already": str(res.already),
                              "dead_letters": str(res.dead_letters_resealed)})
        print(f"rotation to {primary}: {res.rewrapped} data keys re-wrapped, {res.already} already on {primary}, "
              f"{res.gone} gone meanwhile, {res.dead_letters_resealed} dead letters re-sealed"
              f"{' (resumed)' if res.resumed else ''}")
        if not res.complete:
            print(f"not complete: still wrapped by {res.remaining}; a process with an old INTAKE_MASTER_KEYS is "
                  "still creating keys? restart it and run again", file=sys.stderr)
            return 1
        print("done: older master keys can now be removed from INTAKE_MASTER_KEYS (after queues drain)")
        return 0

    return _crypto_run(go)


def register(sub: Any) -> None:
    p = sub.add_parser("keys", help="key material")
    ks = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    g = ks.add_parser("generate", help="print fresh values for every key setting (NAME=value lines)")
    g.add_argument("--key-id", default="k1", help="id of the master key (default k1)")
    g.set_defaults(func=cmd_generate)
    st = ks.add_parser("status", help="master key ids and how many data keys / dead letters each wraps")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
    r = ks.add_parser("rotate", help="re-wrap every data key under the primary master key (resumable, online)")
    r.add_argument("--batch", type=argtypes.positive_int, default=500, help="data keys per step (progress marker saved per step)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_rotate)


