"""``ghl-intake``: the operator's command line. Each command group lives in ghl_intake/commands/."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

COMMAND_MODULES = ("service", "keys", "dlq", "stats", "audit", "redact", "demo", "users", "tenants", "gdpr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ghl-intake", description="Secure front door for GoHighLevel webhooks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"ghl_intake.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"ghl_intake.commands.{name}":
                continue
            raise
        module.register(sub)
    return parser


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def main(argv: list[str] | None = None) -> int:
    level = os.environ.get("INTAKE_LOG_LEVEL", "").strip().upper() or "INFO"
    if level not in LOG_LEVELS:
        print(f"ghl-intake: INTAKE_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {level!r}", file=sys.stderr)
        return 2
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from ghl_intake.settings import SettingsError

        if isinstance(exc, SettingsError):
            print(f"ghl-intake: {exc}", file=sys.stderr)
            return 2
        import redis.exceptions

        if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            print(f"ghl-intake: Redis is not reachable (REDIS_URL): {exc}", file=sys.stderr)
            return 3
        raise


if __name__ == "__main__":
    sys.exit(main())
