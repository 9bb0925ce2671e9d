"""``gdpr export|erase --tenant T --contact C``: a data subject's data out, or destroyed; both audited."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from ghl_intake import keys
from ghl_intake.operator import audit_operator
from ghl_intake.settings import Settings, SettingsError
from store.gdpr import Gdpr
from store.tenants import validate_tenant


def _write_private(path: Path, text: str) -> None:
    """Create the export file readable by its owner only (it holds personal data)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _run(args: argparse.Namespace, erase: bool) -> int:
    from ghl_intake.runtime import redis_from_settings

    settings = Settings.from_env()
    out = getattr(args, "out", None)
    if out and (Path(out).is_dir() or not Path(out).parent.is_dir()):
        raise SettingsError(f"--out {out!r}: give a file in an existing directory")
    try:
        validate_tenant(args.tenant)
    except ValueError as exc:
        print(f"ghl-intake gdpr: {exc}", file=sys.stderr)
        return 2
    if not args.contact or len(args.contact) > 128:
        print("ghl-intake gdpr: --contact must be 1..128 characters", file=sys.stderr)
        return 2
    km = keys.load(settings)
    redis = redis_from_settings(settings)
    gdpr = Gdpr(redis, keys.envelope_crypto(settings, redis, km.keyring), pseudonym_key=km.pseudonym_key,
                prefix=settings.key_prefix)
    extra = {"requested_by": args.requested_by} if args.requested_by else {}

    async def go() -> int:
        try:
            pseudo = (await gdpr.find(args.tenant, args.contact, decrypt=False)).pseudonym
            if erase:
                counts = await gdpr.erase(args.tenant, args.contact)
                await audit_operator(redis, settings, "gdpr_erase", extra, tenant=args.tenant, contact=pseudo,
                                     counts=counts)
                print(json.dumps({"tenant": args.tenant, "pseudonym": pseudo, "erased": counts}))
                return 0
            data = await gdpr.export(args.tenant, args.contact)
            await audit_operator(redis, settings, "gdpr_export", extra, tenant=args.tenant, contact=pseudo,
                                 counts={"audit_records": len(data["audit_records"]),
                                         "dead_letters": len(data["dead_letters"]),
                                         "context_entries": len((data["context"] or {}).get("entries", []))})
            text = json.dumps(data, indent=2, default=str)
            if args.out:
                _write_private(Path(args.out), text + "\n")
                print(f"exported to {args.out}", file=sys.stderr)
            else:
                print(text)
            return 0
        finally:
            await redis.aclose()

    return asyncio.run(go())


def cmd_export(args: argparse.Namespace) -> int:
    return _run(args, erase=False)


def cmd_erase(args: argparse.Namespace) -> int:
    if not args.yes:
        print("ghl-intake gdpr erase: destroys the contact's data for good; add --yes to confirm", file=sys.stderr)
        return 2
    return _run(args, erase=True)


def register(sub: Any) -> None:
    p = sub.add_parser("gdpr", help="export or erase everything held about one contact")
    gs = p.add_subparsers(dest="gdpr_command", metavar="ACTION", required=True)
    for name, fn, what in (("export", cmd_export, "print everything held about the contact as JSON"),
                           ("erase", cmd_erase, "destroy the contact's data key and data (audited)")):
        a = gs.add_parser(name, help=what)
        a.add_argument("--tenant", required=True, help="location id")
        a.add_argument("--contact", required=True, help="GHL contact id")
        a.add_argument("--requested-by", default="",
                       help="who asked (a ticket or request id; no personal data: it goes into the audit trail)")
        if name == "export":
            a.add_argument("--out", help="write the JSON to this file (mode 0600) instead of stdout")
        else:
            a.add_argument("--yes", action="store_true", help="confirm the erasure")
        a.set_defaults(func=fn)
