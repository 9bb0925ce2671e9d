"""``users add|passwd|disable|enable|list|token``: console users and their API tokens.

Every change is audited on the system chain (who ran the command, from which host).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ghl_intake import argtypes
from ghl_intake.operator import audit_operator
from ghl_intake.runtime import redis_from_settings
from ghl_intake.settings import Settings
from store.users import UserError, UserStore, parse_tenants, validate_password


def _run(fn: Callable[[UserStore, Settings, Any], Awaitable[int]]) -> int:
    from store.audit import load_signing_key

    settings = Settings.from_env()
    load_signing_key(settings)  # a malformed audit key fails here, before any change that it would audit

    async def go() -> int:
        redis = redis_from_settings(settings)
        try:
            return await fn(UserStore(redis, prefix=settings.key_prefix), settings, redis)
        finally:
            await redis.aclose()

    try:
        return asyncio.run(go())
    except UserError as exc:
        print(f"ghl-intake users: {exc}", file=sys.stderr)
        return 1


def _password(args: argparse.Namespace) -> str:
    if args.password:
        return str(args.password)
    if not sys.stdin.isatty():  # piped: one line on stdin
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise UserError("no password given (use --password, a terminal, or one line on stdin)")
        return line
    first = getpass.getpass("password: ")
    validate_password(first)
    if getpass.getpass("again: ") != first:
        raise UserError("the passwords differ")
    return first


def cmd_add(args: argparse.Namespace) -> int:
    async def go(users: UserStore, settings: Settings, redis: Any) -> int:
        tenants = parse_tenants(args.tenants)
        pw = _password(args)
        user = await users.add(args.name, args.role, tenants, pw)
        await audit_operator(redis, settings, "user_add", {"user": user.name, "role": user.role,
                                                   "tenants": ",".join(user.tenants)})
        print(f"added {user.name}: role {user.role}, tenants {','.join(user.tenants)}")
        return 0

    return _run(go)


def cmd_passwd(args: argparse.Namespace) -> int:
    async def go(users: UserStore, settings: Settings, redis: Any) -> int:
        if await users.get(args.name) is None:
            raise UserError(f"no user {args.name!r}")
        await users.set_password(args.name, _password(args))
        await audit_operator(redis, settings, "user_passwd", {"user": args.name})
        print(f"password of {args.name} changed; their open sessions are ended")
        return 0

    return _run(go)


def cmd_disable(args: argparse.Namespace, disabled: bool = True) -> int:
    async def go(users: UserStore, settings: Settings, redis: Any) -> int:
        await users.set_disabled(args.name, disabled)
        await audit_operator(redis, settings, "user_disable" if disabled else "user_enable", {"user": args.name})
        print(f"{args.name} {'disabled; sessions and API tokens no longer work' if disabled else 'enabled'}")
        return 0

    return _run(go)


def cmd_list(args: argparse.Namespace) -> int:
    async def go(users: UserStore, settings: Settings, redis: Any) -> int:
        rows = await users.list()
        if args.json:
            print(json.dumps([{"name": u.name, "role": u.role, "tenants": list(u.tenants), "disabled": u.disabled}
                              for u in rows]))
            return 0
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"console users ({len(rows)})")
        for col in ("name", "role", "tenants", "state", "created"):
            table.add_column(col)
        for u in rows:
            table.add_row(u.name, u.role, ",".join(u.tenants), "disabled" if u.disabled else "active",
                          time.strftime("%Y-%m-%d %H:%M", time.gmtime(u.created_at)))
        Console().print(table)
        return 0

    return _run(go)


def cmd_token(args: argparse.Namespace) -> int:
    async def go(users: UserStore, settings: Settings, redis: Any) -> int:
        if args.revoke_all:
            if await users.get(args.name) is None:
                raise UserError(f"no user {args.name!r}")
            n = await users.revoke_tokens(args.name)
            await audit_operator(redis, settings, "user_tokens_revoked", {"user": args.name, "count": str(n)})
            print(f"revoked {n} API token(s) of {args.name}")
            return 0
        token = await users.new_token(args.name)
        await audit_operator(redis, settings, "user_token", {"user": args.name})
        print(f"new API token for {args.name} (shown once; send as 'Authorization: Bearer <token>'):")
        print(token)
        return 0

    return _run(go)


def cmd_console(args: argparse.Namespace) -> int:
    """The console and /api/v1 alone, on their own port (``INTAKE_CONSOLE_PORT``)."""
    from ghl_intake.commands.service import settings_for_service

    settings = settings_for_service(args)
    if not settings.redis_url:
        from ghl_intake.settings import SettingsError

        raise SettingsError("console needs REDIS_URL (users and sessions live in the deployment's Redis)")
    port = args.port or settings.console_port or 8001

    async def serve() -> None:
        import uvicorn

        from console.app import create_console_app, make_deps
        from ghl_intake import keys
        from ghl_intake.embedded import make_pool

        pool = make_pool(settings)
        km = keys.load(settings)
        app = create_console_app(make_deps(settings, pool, km.keyring, km.pseudonym_key))
        config = uvicorn.Config(app, host=args.host, port=port, log_level="info", access_log=False,
                                lifespan="off", proxy_headers=True)
        try:
            await uvicorn.Server(config).serve()
        finally:
            await pool.aclose()

    asyncio.run(serve())
    return 0


def register(sub: Any) -> None:
    c = sub.add_parser("console", help="serve the operator console and /api/v1 on their own port (needs REDIS_URL)")
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--port", type=argtypes.port, default=0, help="default: INTAKE_CONSOLE_PORT, else 8001")
    c.add_argument("--dev", action="store_true", help="start with ephemeral keys when key settings are missing")
    c.set_defaults(func=cmd_console)
    p = sub.add_parser("users", help="console users and API tokens (needs REDIS_URL)")
    us = p.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    a = us.add_parser("add", help="add a user")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=("admin", "operator", "analyst"))
    a.add_argument("--tenants", required=True, help="comma-separated tenant ids, or '*' for all")
    a.add_argument("--password", help="prompted for when left out (or read as one line from stdin)")
    a.set_defaults(func=cmd_add)
    pw = us.add_parser("passwd", help="set a user's password (ends their sessions)")
    pw.add_argument("name")
    pw.add_argument("--password")
    pw.set_defaults(func=cmd_passwd)
    d = us.add_parser("disable", help="disable a user (sessions and tokens stop working)")
    d.add_argument("name")
    d.set_defaults(func=cmd_disable)
    e = us.add_parser("enable", help="enable a disabled user")
    e.add_argument("name")
    e.set_defaults(func=lambda args: cmd_disable(args, disabled=False))
    ls = us.add_parser("list", help="list users")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    t = us.add_parser("token", help="print a new API token for a user (as the last word of the last line)")
    t.add_argument("name")
    t.add_argument("--revoke-all", action="store_true", help="revoke every API token of the user instead")
    t.set_defaults(func=cmd_token)
