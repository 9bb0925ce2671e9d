"""``redact``: redact text (or, with ``--event``, a GHL JSON payload) read from stdin.

Same code path as the redact worker (``pipeline.redact.Redactor``). Output is JSON and never carries
the original values: ``{"redacted": ..., "findings": [{"type", "start", "end", "score"}]}`` for
text, ``{"redacted": <event>, "counts": {...}}`` with ``--event``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


def cmd_redact(args: argparse.Namespace) -> int:
    from pipeline.redact import RedactionError, build_redactor_from_env

    try:
        raw = sys.stdin.buffer.read() if args.input is None else open(args.input, "rb").read()
    except OSError as exc:
        print(f"error: cannot read {args.input!r}: {exc.strerror or type(exc).__name__}", file=sys.stderr)
        return 2
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        print(f"error: input is not UTF-8 text (byte {exc.start})", file=sys.stderr)
        return 2
    redactor = build_redactor_from_env()
    tenant = args.tenant
    try:
        if args.event:
            try:
                event = json.loads(text, parse_constant=_no_constant)
            except json.JSONDecodeError as exc:
                print(f"error: stdin is not JSON: {exc.msg} at line {exc.lineno}", file=sys.stderr)
                return 2
            if not isinstance(event, dict):
                print("error: a GHL payload must be a JSON object", file=sys.stderr)
                return 2
            redacted, counts = redactor.redact_event(tenant, event)
            out: dict[str, Any] = {"redacted": redacted, "counts": counts}
        else:
            res = redactor.redact_text(tenant, text)
            out = {
                "redacted": res.redacted,
                "findings": [{"type": f.type, "start": f.start, "end": f.end, "score": f.score} for f in res.findings],
            }
    except RedactionError as exc:
        print(f"error: redaction failed, nothing printed: {exc}", file=sys.stderr)
        return 1
    json.dump(out, sys.stdout, ensure_ascii=False, indent=2 if args.pretty else None)
    sys.stdout.write("\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "redact",
        help="redact PII from text or a GHL payload on stdin (prints JSON, never the original values)",
        description="Reads stdin. Settings: PII_SPACY_MODEL, PII_MAX_FIELD_CHARS, PII_PSEUDONYM_KEY (base64; "
        "absent: an ephemeral key, said on stderr).",
    )
    p.add_argument("--event", action="store_true", help="stdin is a GHL webhook JSON payload")
    p.add_argument("--tenant", default="cli", help="tenant (location id) the pseudonyms are bound to")
    p.add_argument("--input", default=None, help=argparse.SUPPRESS)
    p.add_argument("--pretty", action="store_true", help="indent the JSON output")
    p.set_defaults(func=cmd_redact)
