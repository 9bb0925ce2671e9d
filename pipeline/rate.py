"""Tenant rate accounting: per-minute and per-hour windows, tier limits, deferral not dropping.

The store runs an atomic check-and-count (Lua) over the window keys this module names; this
module decides what the answer means and when a deferred event should come back.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ghl_intake.settings import TIERS


@dataclass(frozen=True)
class Windows:
    minute: int  # window index: epoch seconds // 60
    hour: int  # epoch seconds // 3600
    per_minute: int
    per_hour: int


@dataclass(frozen=True)
class Decision:
    allowed: bool
    defer_s: float = 0.0
    window: str = ""  # "minute" or "hour" when deferred


def windows(tier: str, now: float) -> Windows:
    per_minute, per_hour = TIERS.get(tier, TIERS["starter"])
    return Windows(minute=int(now // 60), hour=int(now // 3600), per_minute=per_minute, per_hour=per_hour)


def decide(result: int, now: float, rng: random.Random | None = None) -> Decision:
    """Interpret the store's answer: 1 counted now, 0 counted before (re-run), -1 minute full, -2 hour full.

    A deferred event comes back after the full window ends, spread over the next window's first
    half so that a backlog does not all arrive in the same second.
    """
    if result in (0, 1):
        return Decision(allowed=True)
    r = rng or random
    if result == -1:
        wait = 60 - (now % 60)
        return Decision(allowed=False, defer_s=wait + r.uniform(0.05, 30.0), window="minute")
    if result == -2:
        wait = 3600 - (now % 3600)
        return Decision(allowed=False, defer_s=wait + r.uniform(0.05, 1800.0), window="hour")
    raise ValueError(f"unexpected rate result {result}")
