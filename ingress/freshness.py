"""Replay window: the body's ``timestamp`` must be recent, and not from the future.

Runs only AFTER the signature verified (a forged body is never parsed). The parse is minimal: a
msgspec Struct with the single field ``timestamp``; msgspec skips every other field without
building it. Policy (see docs/ingress.md, "Replay window"):

* ``timestamp`` older than the replay window (default: the dedup TTL, 72 h) -> refused (401,
  "stale timestamp"). Younger replays are caught by dedup, whose key lives at least that long.
* ``timestamp`` more than the future skew (default 300 s) ahead of our clock -> refused (401,
  "timestamp in the future"): a far-future stamp would outlive the dedup key.
* no ``timestamp`` (GHL's documented examples and workflow payloads have none), a body that is not
  a JSON object, or a value we cannot read -> allowed: dedup still applies, and the pipeline
  dead-letters what it cannot parse. Refusing would lose a legitimate event for good (GHL retries
  only 429).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import msgspec

REASON_STALE = "stale timestamp"
REASON_FUTURE = "timestamp in the future"

# Outcome labels for the metric ghl_intake_ingress_body_timestamp_total.
STAMP_OK = "ok"
STAMP_MISSING = "missing"
STAMP_UNREADABLE = "unreadable"
STAMP_STALE = "stale"
STAMP_FUTURE = "future"


class _Stamp(msgspec.Struct):
    timestamp: str | int | float | None = None


_decoder = msgspec.json.Decoder(_Stamp)


@dataclass(frozen=True)
class Freshness:
    state: str  # one of the STAMP_* labels
    reason: str = ""  # non-empty when refused
    age_s: float | None = None


def body_timestamp(body: bytes) -> tuple[str, float | None]:
    """(state, unix seconds) of the body's top-level ``timestamp``; state missing/unreadable/ok."""
    try:
        value = _decoder.decode(body).timestamp
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        # not a JSON object, an odd type, or nested too deeply to skip over: the pipeline
        # dead-letters what it cannot parse, with the reason, where an operator can see it
        return STAMP_MISSING, None
    if value is None:
        return STAMP_MISSING, None
    if isinstance(value, bool):
        return STAMP_UNREADABLE, None
    if isinstance(value, int | float):
        try:
            ts = float(value)
        except OverflowError:  # an integer too large for a float (a 400-digit number)
            return STAMP_UNREADABLE, None
        if ts > 1e11:  # epoch milliseconds
            ts /= 1000.0
        return (STAMP_OK, ts) if 0 < ts < 1e11 else (STAMP_UNREADABLE, None)
    text = value.strip()
    if not text or len(text) > 64:
        return STAMP_UNREADABLE, None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return STAMP_UNREADABLE, None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    try:
        return STAMP_OK, when.timestamp()
    except (OverflowError, OSError, ValueError):
        return STAMP_UNREADABLE, None


def check(body: bytes, *, now: float, window_s: int, future_skew_s: int) -> Freshness:
    state, ts = body_timestamp(body)
    if ts is None:
        return Freshness(state)
    age = now - ts
    if age > window_s:
        return Freshness(STAMP_STALE, REASON_STALE, age)
    if -age > future_skew_s:
        return Freshness(STAMP_FUTURE, REASON_FUTURE, age)
    return Freshness(STAMP_OK, "", age)
