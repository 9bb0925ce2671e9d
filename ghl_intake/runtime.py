"""Process-level wiring: Redis connections (real or in-memory) and key material from settings."""

from __future__ import annotations

import sys
from typing import Any

from redis.asyncio import Redis

from ghl_intake.settings import Settings, SettingsError

# One in-memory server per process, shared by every connection of the embedded mode.
_FAKE_SERVER: Any = None


def fake_server() -> Any:
    global _FAKE_SERVER
    if _FAKE_SERVER is None:
        import fakeredis

        _FAKE_SERVER = fakeredis.FakeServer()
    return _FAKE_SERVER


def redis_from_settings(settings: Settings, *, allow_fake: bool = False) -> Redis:
    """A ``redis.asyncio.Redis`` for ``REDIS_URL``; fakeredis when unset and ``allow_fake``."""
    if settings.redis_url:
        return Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=3)
    if not allow_fake:
        raise SettingsError("REDIS_URL is not set (this command needs the deployment's Redis)")
    import fakeredis

    return fakeredis.FakeAsyncRedis(server=fake_server())


def warn(msg: str) -> None:
    print(f"ghl-intake: {msg}", file=sys.stderr, flush=True)
