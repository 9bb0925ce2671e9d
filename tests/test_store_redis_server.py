"""A private ``redis-server`` for tests that need its RDB file (backups, dumps at rest).

``PrivateRedis`` starts ``redis-server --port <free> --save '' --dir <tmp>``; ``save()`` writes the
RDB (``SAVE``) and returns its bytes; ``from_dump()`` starts a second server from a copy of a dump,
as an operator restoring a backup would.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from redis import Redis as SyncRedis

from tests.test_reliability_support import free_port


class PrivateRedis:
    def __init__(self, directory: Path, dbfilename: str = "dump.rdb", *, compression: bool = True) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server binary not installed")
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dbfilename = dbfilename
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--dbfilename", dbfilename, "--logfile", str(self.dir / "redis.log"),
             "--rdbcompression", "yes" if compression else "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with SyncRedis(port=self.port, socket_connect_timeout=0.2) as r:
                    if r.ping():
                        # wait until a dump given at start is loaded
                        while r.info("persistence").get("loading"):
                            time.sleep(0.02)
                        break
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start (see {self.dir / 'redis.log'})") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def save(self) -> bytes:
        with SyncRedis(port=self.port) as r:
            r.save()
        return (self.dir / self.dbfilename).read_bytes()

    @classmethod
    def from_dump(cls, dump: bytes, directory: Path) -> PrivateRedis:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "dump.rdb").write_bytes(dump)
        return cls(directory)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_private_redis_save_and_restore(tmp_path: Path) -> None:
    a = PrivateRedis(tmp_path / "a")
    try:
        with SyncRedis.from_url(a.url) as r:
            r.set("k", b"v")
        dump = a.save()
        assert b"k" in dump
    finally:
        a.stop()
    b = PrivateRedis.from_dump(dump, tmp_path / "b")
    try:
        with SyncRedis.from_url(b.url) as r:
            assert r.get("k") == b"v"
    finally:
        b.stop()
