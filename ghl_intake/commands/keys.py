"""``keys generate``: fresh key settings as an env file."""

from __future__ import annotations

import argparse
from typing import Any

from ghl_intake.keys import generate_env


def cmd_generate(args: argparse.Namespace) -> int:
    for name, value in generate_env(args.key_id).items():
        print(f"{name}={value}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("keys", help="key material")
    ks = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    g = ks.add_parser("generate", help="print fresh values for every key setting (NAME=value lines)")
    g.add_argument("--key-id", default="k1", help="id of the master key (default k1)")
    g.set_defaults(func=cmd_generate)
