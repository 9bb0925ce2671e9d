"""``tenants add|show|list|set-tier|remove|rotate-secret|revoke-secret|set-credentials|import``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from ghl_intake import keys
from ghl_intake.operator import audit_operator
from ghl_intake.settings import Settings
from store.tenants import CREDENTIALS, SCHEMES, TIERS, Tenant, TenantRegistry

T = TypeVar("T")


def _run(fn: Callable[[TenantRegistry, Settings, Any], Awaitable[T]]) -> T:
    from ghl_intake.runtime import redis_from_settings

    settings = Settings.from_env()
    redis = redis_from_settings(settings)
    crypto = keys.envelope_crypto(settings, redis)

    async def go() -> T:
        try:
            return await fn(TenantRegistry(redis, crypto, prefix=settings.key_prefix,
                                           default_tier=settings.default_tier), settings, redis)
        finally:
            await redis.aclose()

    try:
        return asyncio.run(go())
    except (ValueError, FileNotFoundError) as exc:
        from ghl_intake.settings import SettingsError

        if isinstance(exc, SettingsError):
            raise
        print(f"ghl-intake tenants: {exc}", file=sys.stderr)
        return 2  # type: ignore[return-value]


def mask(value: str) -> str:
    """``****wxyz`` (length hidden beyond the last four characters); short values fully masked."""
    return "****" + value[-4:] if len(value) >= 12 else "****"


def _tenant_dict(t: Tenant, creds: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": t.id, "tier": t.tier, "created_at": t.created_at,
                           "secrets": [{"id": s.id, "scheme": s.scheme, "created_at": s.created_at} for s in t.secrets],
                           "credentials": sorted(t.credentials)}
    if creds is not None:
        out["credentials"] = {k: (v if k == "ghl_calendar_id" else mask(v)) for k, v in sorted(creds.items())}
    return out


def cmd_add(args: argparse.Namespace) -> int:
    async def go(reg: TenantRegistry, s: Settings, redis: Any) -> int:
        new = await reg.add(args.location, tier=args.tier)
        t = await reg.get(args.location)
        tier = t.tier if t else args.tier
        how = "added" if new else ("exists, tier set" if args.tier else "exists, tier unchanged")
        print(f"tenant {args.location}: {how} (tier {tier})")
        for scheme in SCHEMES:
            if getattr(args, scheme):
                sid, value = await reg.add_secret(args.location, scheme)
                print(f"  {scheme} secret {sid}: {value}")
        if any(getattr(args, sc) for sc in SCHEMES):
            print("  (secret values are shown once; store them in the sender now)", file=sys.stderr)
        await audit_operator(redis, s, "tenant_add", {"tenant": args.location, "tier": tier})
        return 0

    return _run(go)


def cmd_show(args: argparse.Namespace) -> int:
    async def go(reg: TenantRegistry, s: Settings, redis: Any) -> int:
        t = await reg.get(args.location)
        if t is None:
            print(f"no tenant {args.location!r}", file=sys.stderr)
            return 1
        d = _tenant_dict(t, await reg.credentials(args.location))
        if args.json:
            print(json.dumps(d))
            return 0
        print(f"tenant {t.id}  tier {t.tier}")
        for sec in d["secrets"]:
            print(f"  secret {sec['id']}  {sec['scheme']:<8}  value ****")
        for name, v in d["credentials"].items():
            print(f"  {name}: {v}")
        return 0

    return _run(go)


def cmd_list(args: argparse.Namespace) -> int:
    async def go(reg: TenantRegistry, s: Settings, redis: Any) -> int:
        ts = await reg.list()
        if args.json:
            print(json.dumps([_tenant_dict(t) for t in ts]))
            return 0
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"tenants ({len(ts)})")
        for col in ("location", "tier", "secrets", "credentials"):
            table.add_column(col)
        for t in ts:
            secs = ", ".join(f"{x.scheme}:{x.id}" for x in t.secrets) or "-"
            table.add_row(t.id, t.tier, secs, ", ".join(sorted(t.credentials)) or "-")
        Console().print(table)
        return 0

    return _run(go)


def cmd_set_tier(args: argparse.Namespace) -> int:
    async def go(reg: TenantRegistry, s: Settings, redis: Any) -> int:
        try:
            await reg.set_tier(args.location, args.tier)
        except KeyError:
            print(f"no tenant {args.location!r}", file=sys.stderr)
            return 1
        await audit_operator(redis, s, "tenant_set_tier", {"tenant": args.location, "tier": args.tier})
        print(f"tenant {args.location}: tier {args.tier}")
        return 0

    return _run(go)


def cmd_remove(args: argparse.Namespace) -> int:
    async def go(reg: TenantRegistry, s: Settings, redis: Any) -> int:
        ok = await reg.remove(args.location)
        if ok:
            await audit_operator(redis, s, "tenant_remove", {"tenant": args.location})
        print(f"tenant {args.location}: {'removed' if ok else 'not found'}")
        return 0 if ok else 1

    return _run(go)


def cmd_rotate_secret(args: argparse.Namespace) -> int:
    async def go(reg: TenantRegistry, s: Settings, redis: Any) -> int:
        try:
            sid, value = await reg.rotate_secret(args.location, args.scheme)
        except KeyError:
            print(f"no tenant {args.location!r}", file=sys.stderr)
            return 1
        await audit_operator(redis, s, "tenant_secret_add", {"tenant": args.location, "scheme": args.scheme,
                                                             "secret_id": sid})
        print(f"{args.scheme} secret {sid}: {value}")
        print("(shown once; older secrets stay active until `tenants revoke-secret`)", file=sys.stderr)
        return 0

    return _run(go)


def cmd_revoke_secret(args: argparse.Namespace) -> int:
    async def go(reg: TenantRegistry, s: Settings, redis: Any) -> int:
        ok = await reg.revoke_secret(args.location, args.secret_id)
        if ok:
            await audit_operator(redis, s, "tenant_secret_revoke", {"tenant": args.location,
                                                                    "secret_id": args.secret_id})
        print(f"secret {args.secret_id}: {'revoked' if ok else 'not found'}")
        return 0 if ok else 1

    return _run(go)


def cmd_set_credentials(args: argparse.Namespace) -> int:
    """Values come from environment variables (never from argv, which other users can read)."""
    values: dict[str, str | None] = {}
    for name in CREDENTIALS:
        env_name = getattr(args, f"{name}_env")
        values[name] = os.environ.get(env_name) if env_name else None
        if env_name and values[name] is None:
            print(f"environment variable {env_name} is not set", file=sys.stderr)
            return 2

    async def go(reg: TenantRegistry, s: Settings, redis: Any) -> int:
        try:
            changed = await reg.set_credentials(args.location, **values)
        except KeyError:
            print(f"no tenant {args.location!r}", file=sys.stderr)
            return 1
        await audit_operator(redis, s, "tenant_credentials", {"tenant": args.location, "names": ",".join(changed)})
        print(f"tenant {args.location}: credentials set: {', '.join(changed) or 'none'}")
        return 0

    return _run(go)


def cmd_import(args: argparse.Namespace) -> int:
    from store.tenants import import_dir

    async def go(reg: TenantRegistry, s: Settings, redis: Any) -> int:
        report = await import_dir(reg, Path(args.dir), fernet_key=s.tenant_encryption_key or None,
                                  dry_run=args.dry_run, tier=args.tier)
        if not args.dry_run and report.imported:
            await audit_operator(redis, s, "tenants_import", {"files": str(len(report.files)),
                                                              "imported": str(report.imported)})
        if args.json:
            print(json.dumps([f.__dict__ for f in report.files]))
        else:
            for f in report.files:
                print(f"{f.status:<10} {f.file}  {f.detail}")
            done = "would be imported" if args.dry_run else "imported"
            print(f"{len(report.files)} files: {report.imported} {done}, {report.unchanged} unchanged, "
                  f"{report.failed} skipped{' (dry run: nothing written)' if args.dry_run else ''}")
        return 1 if report.failed else 0

    return _run(go)


def register(sub: Any) -> None:
    p = sub.add_parser("tenants", help="tenant registry: tiers, webhook secrets, credentials")
    ts = p.add_subparsers(dest="tenants_command", metavar="ACTION", required=True)
    a = ts.add_parser("add", help="register a location (tenant); optionally generate webhook secrets")
    a.add_argument("location")
    a.add_argument("--tier", choices=TIERS, default=None,
                   help="default: INTAKE_DEFAULT_TIER for a new tenant; an existing tenant keeps its tier")
    for scheme, what in (("token", "static token header"), ("hmac", "HMAC-SHA256 X-Webhook-Signature"),
                         ("standard", "Standard Webhooks whsec_")):
        a.add_argument(f"--{scheme}", action="store_true", help=f"generate a {what} secret (printed once)")
    a.set_defaults(func=cmd_add)
    s = ts.add_parser("show", help="one tenant, secrets and credentials masked")
    s.add_argument("location")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show)
    ls = ts.add_parser("list", help="every tenant")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    st = ts.add_parser("set-tier", help="change a tenant's tier")
    st.add_argument("location")
    st.add_argument("tier", choices=TIERS)
    st.set_defaults(func=cmd_set_tier)
    rm = ts.add_parser("remove", help="remove a tenant with its secrets, credentials and tenant data key")
    rm.add_argument("location")
    rm.set_defaults(func=cmd_remove)
    rs = ts.add_parser("rotate-secret", help="add a new webhook secret (old ones stay active until revoked)")
    rs.add_argument("location")
    rs.add_argument("--scheme", choices=SCHEMES, required=True)
    rs.set_defaults(func=cmd_rotate_secret)
    rv = ts.add_parser("revoke-secret", help="revoke one webhook secret by id")
    rv.add_argument("location")
    rv.add_argument("secret_id")
    rv.set_defaults(func=cmd_revoke_secret)
    sc = ts.add_parser("set-credentials", help="store downstream credentials, read from environment variables")
    sc.add_argument("location")
    for name in CREDENTIALS:
        sc.add_argument(f"--{name.replace('_', '-')}-env", dest=f"{name}_env", metavar="VAR",
                        help=f"environment variable holding {name} ('' value deletes it)")
    sc.set_defaults(func=cmd_set_credentials)
    im = ts.add_parser("import", help="import DIR/{location_id}.json files of the system this replaces")
    im.add_argument("dir")
    im.add_argument("--dry-run", action="store_true", help="report what would change, write nothing")
    im.add_argument("--tier", choices=TIERS, default=None,
                    help="tier of newly created tenants (default: they follow INTAKE_DEFAULT_TIER)")
    im.add_argument("--json", action="store_true")
    im.set_defaults(func=cmd_import)
