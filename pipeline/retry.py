"""Retry policy: which errors are transient, and how long to back off."""

from __future__ import annotations

import asyncio
import random


class TransientError(Exception):
    """Worth retrying: the cause is outside the event (Redis unreachable, timeouts)."""


class PermanentError(Exception):
    """Retrying will not help: undecryptable, unparseable, invalid tenant."""


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TransientError | asyncio.TimeoutError | TimeoutError | ConnectionError | OSError):
        return True
    # redis-py's errors without importing redis here: ConnectionError/TimeoutError/BusyLoading/ReadOnly/OOM
    name = type(exc).__name__
    module = type(exc).__module__
    if module.startswith("redis"):
        return name in {"ConnectionError", "TimeoutError", "BusyLoadingError", "ReadOnlyError",
                        "OutOfMemoryError", "TryAgainError", "ClusterDownError", "MasterDownError"}
    return False


def backoff_s(attempt: int, base_s: float, cap_s: float = 300.0, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform(base, base * 2**(attempt-1)), capped."""
    r = rng or random
    high = min(cap_s, base_s * (2 ** max(0, attempt - 1)))
    return r.uniform(min(base_s, high), high)
