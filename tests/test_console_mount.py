"""The console inside the real ingress app, switched off by setting, and on its own port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio
from arq.connections import ArqRedis

from ghl_intake.embedded import build_app, make_pool
from tests.conftest import make_settings
from tests.test_reliability_support import free_port


@pytest_asyncio.fixture
async def pool_settings(real_redis_url: str) -> AsyncIterator[tuple[ArqRedis, Any]]:
    settings = make_settings(real_redis_url)
    pool = make_pool(settings)
    yield pool, settings
    await pool.aclose()


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingress.test")


async def test_console_is_mounted_in_the_ingress(pool_settings: tuple[ArqRedis, Any]) -> None:
    pool, settings = pool_settings
    async with _client(build_app(settings, pool)) as c:
        r = await c.get("/console")
        assert r.status_code == 307 and r.headers["location"] == "/console/"
        assert (await c.get("/console/")).status_code == 303
        assert (await c.get("/console/login")).status_code == 200
        assert (await c.get("/api/v1/stats?tenant=x")).status_code == 401
        assert (await c.get("/healthz")).status_code == 200


async def test_console_can_be_switched_off(pool_settings: tuple[ArqRedis, Any]) -> None:
    pool, settings = pool_settings
    settings.console_enabled = False
    async with _client(build_app(settings, pool)) as c:
        assert (await c.get("/console/login")).status_code == 404
        assert (await c.get("/api/v1/stats")).status_code == 404
    settings.console_enabled = True
    settings.console_port = 8123  # served elsewhere: not by the ingress
    async with _client(build_app(settings, pool)) as c:
        assert (await c.get("/console/login")).status_code == 404


def test_console_command_serves_its_own_port(real_redis_url: str) -> None:
    s = make_settings(real_redis_url)
    port = free_port()
    env = {**os.environ, "REDIS_URL": real_redis_url, "INTAKE_KEY_PREFIX": s.key_prefix,
           "INTAKE_MASTER_KEYS": s.master_keys, "INTAKE_PSEUDONYM_KEY": s.pseudonym_key,
           "INTAKE_AUDIT_SIGNING_KEY": s.audit_signing_key, "INTAKE_CONSOLE_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "ghl_intake.cli", "console"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/", follow_redirects=False, timeout=1)
                status = r.status_code, r.headers.get("location")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert status == (307, "/console/"), (proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else status)
        r = httpx.get(f"http://127.0.0.1:{port}/console/login", timeout=2)
        assert r.status_code == 200 and "Sign in" in r.text
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/me", timeout=2).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
