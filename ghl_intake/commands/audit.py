"""``audit verify|export|show|checkpoint``: prove the audit trail, export it, read one event's history.

``audit verify --export DIR --pubkey PEM`` is the auditor's procedure: it needs only the exported
JSONL files and the public key (no Redis, no secrets). See docs/audit.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ghl_intake.operator import operator_actor
from ghl_intake.settings import Settings, SettingsError
from pipeline.audit import ChainReport, public_key_from_pem, verify_export_lines
from store.audit import SYSTEM_TENANT, AuditStore, load_signing_key, public_key_pem

_PEM_END = "-----END"


def register(sub: Any) -> None:
    p = sub.add_parser("audit", help="verify, export and inspect the hash-chained audit trail")
    asub = p.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda _args: (p.print_help(), 2)[1])

    v = asub.add_parser("verify", help="recompute every chain and check the signed checkpoints (exit 1 on a break)")
    v.add_argument("--tenant", help="only this tenant's chain")
    v.add_argument("--export", metavar="DIR",
                   help="verify exported audit_YYYYMMDD.jsonl files (a directory, or one file) instead of Redis")
    v.add_argument("--pubkey", metavar="PEM", action="append",
                   help="Ed25519 public key (PEM file or text) the checkpoints must be signed with; repeatable")
    v.add_argument("--partial", action="store_true",
                   help="with --export DIR: the files need not start at seq 1 (older days archived)")
    v.set_defaults(func=cmd_verify)

    e = asub.add_parser("export", help="one tenant's records and checkpoints as JSONL on stdout")
    e.add_argument("--tenant", required=True)
    e.add_argument("--since", metavar="ISO", help="from this time (inclusive), e.g. 2026-12-03 or 2026-12-03T10:00Z")
    e.add_argument("--until", metavar="ISO", help="up to this time (exclusive)")
    e.set_defaults(func=cmd_export)

    s = asub.add_parser("show", help="an event's whole history across stages")
    s.add_argument("--event", required=True, metavar="ID")
    s.add_argument("--json", action="store_true", help="JSONL instead of a table")
    s.set_defaults(func=cmd_show)

    c = asub.add_parser("checkpoint", help="force a signed checkpoint of every chain (or one) now")
    c.add_argument("--tenant")
    c.set_defaults(func=cmd_checkpoint)

    k = asub.add_parser("pubkey", help="print the public key (PEM) of INTAKE_AUDIT_SIGNING_KEY, for auditors")
    k.set_defaults(func=cmd_pubkey)


# ---------------------------------------------------------------------------------------------- helpers


def _settings() -> Settings:
    s = Settings.from_env()
    if not s.redis_url:
        raise SettingsError("audit commands need REDIS_URL (or use `audit verify --export DIR --pubkey PEM`)")
    return s


def _make_store(settings: Settings) -> AuditStore:
    from ghl_intake.runtime import redis_from_settings

    return AuditStore(
        redis_from_settings(settings),
        prefix=settings.key_prefix,
        signing_key=load_signing_key(settings),
        export_dir=Path(settings.audit_export_dir) if settings.audit_export_dir else None,
        checkpoint_every=settings.audit_checkpoint_every,
        checkpoint_interval_s=settings.audit_checkpoint_interval_s,
    )


def load_public_keys(values: Sequence[str] | None) -> list[Ed25519PublicKey]:
    """Public keys from ``--pubkey`` values: each a PEM file path or PEM text (several blocks allowed)."""
    out: list[Ed25519PublicKey] = []
    for value in values or ():
        try:
            text = value if "-----BEGIN" in value else Path(value).read_text()
            blocks = _split_pem(text)
            for block in blocks or [text]:
                out.append(public_key_from_pem(block))
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"--pubkey {value[:80]!r}: cannot read it: {type(exc).__name__}") from None
        except (ValueError, TypeError) as exc:
            raise SettingsError(f"--pubkey {value[:80]!r}: not an Ed25519 public key in PEM: {exc}") from None
    return out


def _split_pem(text: str) -> list[str]:
    """Each ``-----BEGIN ...-----END ...-----`` block of a PEM text, as its own string."""
    out: list[str] = []
    rest = text
    while "-----BEGIN" in rest:
        start = rest.index("-----BEGIN")
        end = rest.find(_PEM_END, start)
        if end < 0:
            break
        stop = rest.find("-----", end + len(_PEM_END))
        if stop < 0:
            break
        out.append(rest[start:stop + 5] + "\n")
        rest = rest[stop + 5:]
    return out


async def _audit_operator(store: AuditStore, action: str, extra: dict[str, str]) -> None:
    actor, detail = operator_actor()
    await store.append(SYSTEM_TENANT, event_id=f"op-{uuid.uuid4().hex}", stage="operator", outcome=action,
                       actor=actor, detail={**detail, **extra})


def _print_reports(reports: Sequence[ChainReport]) -> int:
    bad = 0
    for r in reports:
        if r.ok:
            print(f"OK    {r.tenant}  {r.reason}")
        else:
            bad += 1
            print(f"FAIL  {r.tenant}  first bad seq {r.first_bad_seq}: {r.reason}")
    if not reports:
        print("no audit chains found")
    n = sum(r.records for r in reports)
    print(f"{len(reports)} chains, {n} records, {bad} broken", file=sys.stderr)
    return 1 if bad else 0


# ---------------------------------------------------------------------------------------------- handlers


def _export_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.glob("audit_*.jsonl") if p.is_file())
    return [path] if path.is_file() else []


def cmd_verify(args: argparse.Namespace) -> int:
    pubkeys = load_public_keys(args.pubkey)
    if args.export:
        path = Path(args.export)
        files = _export_files(path)
        if not files or not all(f.exists() for f in files):
            print(f"ghl-intake: no audit export files at {path}", file=sys.stderr)
            return 2
        if not pubkeys:
            key = load_signing_key(Settings.from_env())
            if key is not None:
                pubkeys = [key.public_key()]
            else:
                print("ghl-intake: warning: no --pubkey: checkpoint signatures are not checked", file=sys.stderr)

        def lines() -> Any:
            for f in files:
                with f.open("rb") as fh:
                    yield from fh

        partial = bool(getattr(args, "partial", False)) or not path.is_dir()
        reports = verify_export_lines(lines(), pubkeys, tenant=args.tenant, partial=partial)
        rc = _print_reports(reports)
        if not any(r.records for r in reports):  # an empty export proves nothing
            print(f"ghl-intake: no audit records{f' of tenant {args.tenant}' if args.tenant else ''} in {path}",
                  file=sys.stderr)
            return 1
        return rc

    settings = _settings()

    async def go() -> list[ChainReport]:
        store = _make_store(settings)
        try:
            return await store.verify(args.tenant, public_keys=pubkeys or None)
        finally:
            await store.redis.aclose()

    reports = asyncio.run(go())
    rc = _print_reports(reports)
    if args.tenant and not any(r.records for r in reports):
        print(f"ghl-intake: no audit chain for tenant {args.tenant!r}", file=sys.stderr)
        return 1
    return rc


def cmd_export(args: argparse.Namespace) -> int:
    settings = _settings()

    async def go() -> list[bytes]:
        store = _make_store(settings)
        try:
            lines = await store.export(args.tenant, args.since, args.until)
            await _audit_operator(store, "audit.export", {"tenant": args.tenant, "records": str(len(lines))})
            return lines
        finally:
            await store.redis.aclose()

    try:
        lines = asyncio.run(go())
    except ValueError as exc:  # a bad --since/--until
        print(f"ghl-intake: {exc}", file=sys.stderr)
        return 2
    out = sys.stdout
    for line in lines:
        out.write(line.decode("utf-8") + "\n")
    out.flush()
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    settings = _settings()

    async def go() -> list[Any]:
        store = _make_store(settings)
        try:
            recs = await store.history(args.event)
            await _audit_operator(store, "audit.show", {"event_id": args.event})
            return recs
        finally:
            await store.redis.aclose()

    recs = asyncio.run(go())
    if not recs:
        print(f"no audit records for event {args.event}", file=sys.stderr)
        return 1
    if args.json:
        import msgspec

        for r in recs:
            print(msgspec.json.encode(r).decode())
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"audit history of event {args.event}")
    for col in ("tenant", "seq", "time", "stage", "outcome", "actor", "contact", "counts", "detail"):
        table.add_column(col)
    for r in recs:
        table.add_row(r.tenant, str(r.seq), r.ts, r.stage, r.outcome, r.actor, r.contact or "",
                      ", ".join(f"{k}={v}" for k, v in r.counts.items()),
                      ", ".join(f"{k}={v}" for k, v in r.detail.items()))
    Console(width=200).print(table)
    return 0


def cmd_checkpoint(args: argparse.Namespace) -> int:
    settings = _settings()
    if load_signing_key(settings) is None:
        print("ghl-intake: INTAKE_AUDIT_SIGNING_KEY is not set: checkpoints are disabled", file=sys.stderr)
        return 2

    async def go() -> list[Any]:
        store = _make_store(settings)
        try:
            await _audit_operator(store, "audit.checkpoint", {"tenant": args.tenant or "*"})
            made = await store.checkpoint(args.tenant)
            await store.export_pending()  # no-op without INTAKE_AUDIT_EXPORT_DIR
            return made
        finally:
            await store.redis.aclose()

    for c in asyncio.run(go()):
        print(f"checkpoint {c.tenant} seq {c.seq} head {c.head[:16]}… at {c.ts} (key {c.key})")
    return 0


def cmd_pubkey(args: argparse.Namespace) -> int:
    key = load_signing_key(Settings.from_env())
    if key is None:
        print("ghl-intake: INTAKE_AUDIT_SIGNING_KEY is not set", file=sys.stderr)
        return 2
    sys.stdout.write(public_key_pem(key))
    return 0
