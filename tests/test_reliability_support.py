"""A private ``redis-server`` per test session for the reliability, DLQ and chaos tests.

These tests restart Redis, fill its memory, make it read-only and kill workers; doing that to the
shared server would break everyone else's tests (and their DB flushes would break ours), so each
run gets a server of its own on a free port with its own directory. Without the ``redis-server``
binary the tests fall back to the shared test DB (``real_redis_url``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis as SyncRedis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """``redis-server`` on 127.0.0.1:<free port> in its own directory; optional AOF (fsync always)."""

    def __init__(self, directory: Path | None = None, *, aof: bool = False, port: int | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        self.dir = Path(directory or tempfile.mkdtemp(prefix="intake-redis-"))
        self.port = port or free_port()
        self.aof = aof
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 30.0) -> RedisServer:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", "", "--protected-mode", "no", "--logfile", str(self.dir / "redis.log")]
        if self.aof:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        self.proc = subprocess.Popen([*args, *self.extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:  # e.g. the port was taken meanwhile: say so, at once
                log = self.dir / "redis.log"
                tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
                raise RuntimeError(f"redis-server on port {self.port} exited ({self.proc.returncode}): {tail}")
            try:
                r = SyncRedis(port=self.port, socket_timeout=0.5)
                if r.ping():
                    # wait until the AOF is loaded (LOADING answers raise BusyLoadingError)
                    r.dbsize()
                    r.close()
                    return self
            except Exception:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, *, kill: bool = True) -> None:
        self.stop(kill=kill)
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def have_redis_server() -> bool:
    return shutil.which("redis-server") is not None


@pytest.fixture(scope="session")
def private_redis_server() -> Iterator[RedisServer | None]:
    if not have_redis_server():
        yield None
        return
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def rel_redis_url(request: pytest.FixtureRequest, private_redis_server: RedisServer | None) -> Iterator[str]:
    """A real Redis only this test uses: the private server (flushed after), else the shared test DB."""
    if private_redis_server is None:
        yield request.getfixturevalue("real_redis_url")
        return
    yield private_redis_server.url
    r = SyncRedis.from_url(private_redis_server.url)
    r.flushall()
    r.close()
