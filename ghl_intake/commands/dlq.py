"""``dlq list|show|replay|purge``: inspect, reveal, replay and purge dead letters (see ghl_intake/ops.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ghl_intake import keys, ops
from ghl_intake.embedded import make_pool
from ghl_intake.settings import Settings, SettingsError
from store.dlq import as_dict


def _settings() -> Settings:
    s = Settings.from_env()
    if not s.redis_url:
        raise SettingsError("dlq commands need REDIS_URL")
    return s


def parse_since(text: str | None, now: float | None = None) -> float | None:
    """``--since``: unix seconds, ISO-8601, or an age like ``30m``, ``2h``, ``7d``."""
    if not text:
        return None
    t = time.time() if now is None else now
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if m:
        return t - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise SettingsError(f"--since {text!r}: use 30m, 2h, 7d, unix seconds or ISO-8601")
        return value
    from datetime import UTC, datetime

    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SettingsError(f"--since {text!r}: use 30m, 2h, 7d, unix seconds or ISO-8601") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _filters(args: argparse.Namespace, state: str | None) -> ops.Filters:
    return ops.Filters(stage=args.stage, tenant=args.tenant, reason=args.reason, since=parse_since(args.since),
                       state=state)


def _run(fn: Callable[[Any, Settings, Any], Awaitable[Any]]) -> Any:
    settings = _settings()
    km = keys.load(settings)

    async def go() -> Any:
        pool = make_pool(settings)
        try:
            return await fn(pool, settings, km)
        finally:
            await pool.aclose()

    return asyncio.run(go())


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else "-"


def cmd_list(args: argparse.Namespace) -> int:
    entries = _run(lambda pool, s, km: ops.list_dead_letters(pool, s, km.keyring, _filters(
        args, None if args.all else "dead"), limit=args.limit))
    if args.json:
        print(json.dumps([as_dict(e) for e in entries]))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"dead letters ({len(entries)})")
    table.add_column("id", no_wrap=True)
    for col in ("stage", "tenant", "event", "reason", "error", "tries", "state", "replays", "updated (UTC)"):
        table.add_column(col)
    for e in entries:
        table.add_row(e.id, e.stage, e.tenant, e.event_id[:12], e.reason, e.error[:60], str(e.attempts), e.state,
                      str(e.replays), _when(e.updated_at))
    Console().print(table)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    if args.reveal:
        data = _run(lambda pool, s, km: ops.reveal(pool, s, km.keyring, args.id))
    else:
        data = _run(lambda pool, s, km: ops.show(pool, s, km.keyring, args.id, km.pseudonym_key))
    if data is None:
        print(f"{args.id}: no such dead letter", file=sys.stderr)
        return 1
    if args.reveal:
        print("ghl-intake: revealed payload (this access is recorded in the audit trail)", file=sys.stderr)
    print(json.dumps(data, indent=2, default=str))
    return 0


def _body_file(name: str) -> bytes:
    """``--body-file``: the corrected raw body, under the same cap as the ingress."""
    cap = Settings.from_env().max_body_bytes
    try:
        with open(name, "rb") as f:
            body = f.read(cap + 1)
    except OSError as exc:
        raise SettingsError(f"--body-file {name!r}: cannot read it: {exc.strerror or type(exc).__name__}") from None
    if len(body) > cap:
        raise SettingsError(f"--body-file {name!r} is larger than INTAKE_MAX_BODY_BYTES ({cap} bytes)")
    return body


def cmd_replay(args: argparse.Namespace) -> int:
    if bool(args.id) == bool(args.all):
        raise SettingsError("dlq replay: give one ID or --all [filters]")
    body = _body_file(args.body_file) if args.body_file else None
    if args.id:
        res = _run(lambda pool, s, km: ops.replay(pool, s, km.keyring, args.id, body_override=body,
                                                  dry_run=args.dry_run))
        print(f"{res.dlq_id}: {res.message}")
        return 0 if (res.replayed or res.replayable) else 1
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=False) as progress:
        task = progress.add_task("replay", total=None)

        def step(done: int, total: int, _res: ops.ReplayResult) -> None:
            progress.update(task, completed=done, total=total)

        report = _run(lambda pool, s, km: ops.replay_all(pool, s, km.keyring, _filters(args, "dead"),
                                                         dry_run=args.dry_run, progress=step))
    verb = "would replay" if args.dry_run else "replayed"
    print(f"{verb} {report.total if args.dry_run else report.replayed} of {report.total} dead letters"
          + (f", {report.skipped} skipped" if report.skipped and not args.dry_run else ""))
    if args.dry_run:
        for r in report.results:
            print(f"  {r.dlq_id} {r.stage} {r.event_id} -> {r.job_id}")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    if not args.yes:
        print("dlq purge deletes dead letters for good; add --yes to confirm", file=sys.stderr)
        return 2
    n = _run(lambda pool, s, km: ops.purge(pool, s, km.keyring, _filters(args, None if args.all_states else "dead")))
    print(f"purged {n} dead letters")
    return 0


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", help="only entries of this stage")
    p.add_argument("--tenant", help="only entries of this tenant (location id)")
    p.add_argument("--reason", help="permanent | retries_exhausted | an error class name")
    p.add_argument("--since", help="updated since: 30m, 2h, 7d, unix seconds or ISO-8601")


def register(sub: Any) -> None:
    p = sub.add_parser("dlq", help="dead letters: list, show, replay, purge")
    ds = p.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    lp = ds.add_parser("list", help="list dead letters")
    _add_filters(lp)
    lp.add_argument("--all", action="store_true", help="include replayed entries")
    lp.add_argument("--limit", type=int, default=1000)
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func=cmd_list)
    sp = ds.add_parser("show", help="one dead letter, redacted (--reveal decrypts, audited)")
    sp.add_argument("id")
    sp.add_argument("--reveal", action="store_true", help="decrypt the payload (recorded in the audit trail)")
    sp.set_defaults(func=cmd_show)
    rp = ds.add_parser("replay", help="re-enqueue dead letters at the stage that failed")
    rp.add_argument("id", nargs="?")
    rp.add_argument("--all", action="store_true", help="every dead entry matching the filters")
    _add_filters(rp)
    rp.add_argument("--dry-run", action="store_true", help="list what would be replayed, change nothing")
    rp.add_argument("--body-file", help="dedup-stage entries: replace the stored body with this corrected file")
    rp.set_defaults(func=cmd_replay)
    pp = ds.add_parser("purge", help="delete dead letters matching the filters (audited)")
    _add_filters(pp)
    pp.add_argument("--all-states", action="store_true", help="also purge replayed entries")
    pp.add_argument("--yes", action="store_true", help="confirm")
    pp.set_defaults(func=cmd_purge)
