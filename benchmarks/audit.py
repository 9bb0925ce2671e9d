"""Audit trail throughput on real Redis: appends/s with 1, 4 and 8 concurrent writers on one tenant and
spread over 50 tenants, and verification speed (records/s).

    .venv/bin/python -m benchmarks.audit [--url redis://127.0.0.1:6379/0] [--appends 4000] [--mode both]

``--mode async``: writers are coroutines in one process, each with its own AuditStore and its own
Redis connection. ``--mode procs``: writers are separate processes (how the audit workers really run).
Uses its own key prefix (``bench-audit-<random>``) and deletes its keys at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.asyncio import Redis

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeline.audit import verify_chain, verify_export_lines  # noqa: E402
from store.audit import AuditStore  # noqa: E402

KEY = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)


DEDICATED = False  # --dedicated: AuditStore(dedicated_connection=True)


async def _writer(url: str, prefix: str, w: int, n: int, tenants: int, sign: bool) -> int:
    r = Redis.from_url(url)
    store = AuditStore(r, prefix=prefix, signing_key=KEY if sign else None, checkpoint_every=100,
                       dedicated_connection=DEDICATED)
    try:
        for i in range(n):
            await store.append(f"loc-{(w * 7 + i) % tenants:03d}", event_id=f"e-{w}-{i}", stage="persist",
                               outcome="processed", contact="0a1b2c3d4e5f", counts={"PHONE_NUMBER": 1, "EMAIL": 2},
                               detail={"tier": "starter"})
        return store.contention_retries
    finally:
        await store.aclose()
        await r.aclose()


def _proc_main(args: tuple[str, str, int, int, int, bool, Any, Any, Any]) -> None:
    url, prefix, w, n, tenants, sign, q, ready, go = args
    ready.put(w)
    go.wait()  # process start-up is not part of the measurement
    q.put(asyncio.run(_writer(url, prefix, w, n, tenants, sign)))


async def _cleanup(url: str, prefix: str) -> None:
    r = Redis.from_url(url)
    batch: list[bytes] = []
    async for k in r.scan_iter(match=f"{prefix}:*", count=5000):
        batch.append(k)
        if len(batch) >= 1000:
            await r.delete(*batch)
            batch = []
    if batch:
        await r.delete(*batch)
    await r.aclose()


def run_scenario(url: str, writers: int, tenants: int, total: int, mode: str, sign: bool) -> tuple[float, int]:
    prefix = f"bench-audit-{uuid.uuid4().hex[:10]}"
    per = total // writers
    try:
        t0 = time.perf_counter()
        if mode == "async":
            async def go() -> list[int]:
                return await asyncio.gather(*(_writer(url, prefix, w, per, tenants, sign) for w in range(writers)))

            retries = sum(asyncio.run(go()))
        else:
            ctx = mp.get_context("fork")
            q, ready, start = ctx.Queue(), ctx.Queue(), ctx.Event()
            procs = [ctx.Process(target=_proc_main, args=((url, prefix, w, per, tenants, sign, q, ready, start),))
                     for w in range(writers)]
            for p in procs:
                p.start()
            for _ in procs:
                ready.get()
            t0 = time.perf_counter()
            start.set()
            retries = sum(q.get() for _ in procs)
            for p in procs:
                p.join()
        elapsed = time.perf_counter() - t0

        async def check() -> None:
            r = Redis.from_url(url)
            store = AuditStore(r, prefix=prefix, signing_key=KEY if sign else None)
            reports = await store.verify()
            await r.aclose()
            assert all(x.ok for x in reports), [x for x in reports if not x.ok]
            assert sum(x.records for x in reports) == per * writers

        asyncio.run(check())
        return per * writers / elapsed, retries
    finally:
        asyncio.run(_cleanup(url, prefix))


def run_verify(url: str, records: int) -> tuple[float, float, float, float]:
    """(verify from Redis, pure verify, export to JSONL with fsync, verify the export files) in records/s."""
    prefix = f"bench-audit-{uuid.uuid4().hex[:10]}"
    export = Path(tempfile.mkdtemp(prefix="bench-audit-export-"))

    async def go() -> tuple[float, float, float, float]:
        r = Redis.from_url(url)
        store = AuditStore(r, prefix=prefix, signing_key=KEY, checkpoint_every=100, export_dir=export)
        try:
            sem = asyncio.Semaphore(8)

            async def one(i: int) -> None:
                async with sem:
                    await store.append("loc-verify", event_id=f"v-{i}", stage="persist", outcome="processed",
                                       counts={"n": i})

            for start in range(0, records, 2000):
                await asyncio.gather(*(one(i) for i in range(start, min(records, start + 2000))))
            t0 = time.perf_counter()
            [rep] = await store.verify("loc-verify")
            t_store = time.perf_counter() - t0
            assert rep.ok and rep.records == records, rep
            lines = await store._log_lines("loc-verify")
            ckpts = await r.lrange(store.key("ckpt", "loc-verify"), 0, -1)
            t0 = time.perf_counter()
            rep = verify_chain("loc-verify", lines, ckpts, [KEY.public_key()])
            t_pure = time.perf_counter() - t0
            assert rep.ok
            t0 = time.perf_counter()
            written = await store.export_pending(max_lines=records)
            t_export = time.perf_counter() - t0
            assert written >= records
            t0 = time.perf_counter()
            flines = [ln for f in sorted(export.glob("audit_*.jsonl")) for ln in f.read_bytes().splitlines()]  # noqa: ASYNC240
            reports = verify_export_lines(flines, [KEY.public_key()])
            t_file = time.perf_counter() - t0
            assert all(x.ok for x in reports) and sum(x.records for x in reports) == records
            return records / t_store, records / t_pure, records / t_export, records / t_file
        finally:
            await r.aclose()
            await _cleanup(url, prefix)
            shutil.rmtree(export, ignore_errors=True)

    return asyncio.run(go())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--appends", type=int, default=4000, help="appends per scenario")
    ap.add_argument("--verify-records", type=int, default=50_000)
    ap.add_argument("--mode", choices=("async", "procs", "both"), default="both")
    ap.add_argument("--no-sign", action="store_true", help="without the signing key (no checkpoints)")
    ap.add_argument("--dedicated", action="store_true",
                    help="each writer's AuditStore sends appends over a dedicated connection")
    args = ap.parse_args(argv)
    global DEDICATED
    DEDICATED = args.dedicated
    sign = not args.no_sign
    print(f"audit benchmark: {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {args.url}, {args.appends} appends per scenario, "
          f"checkpoints {'every 100 (signed)' if sign else 'off'}, "
          f"{'dedicated connection' if args.dedicated else 'connection pool'}")
    modes = ("async", "procs") if args.mode == "both" else (args.mode,)
    print(f"{'mode':<6} {'writers':>7} {'tenants':>7} {'appends/s':>10} {'CAS retries':>12}")
    for mode in modes:
        for tenants in (1, 50):
            for writers in (1, 4, 8):
                rate, retries = run_scenario(args.url, writers, tenants, args.appends, mode, sign)
                print(f"{mode:<6} {writers:>7} {tenants:>7} {rate:>10.0f} {retries:>12}", flush=True)
    store_rate, pure_rate, export_rate, file_rate = run_verify(args.url, args.verify_records)
    print(f"verify {args.verify_records} records: {store_rate:,.0f} records/s from Redis (read + check), "
          f"{pure_rate:,.0f} records/s pure (pipeline.audit.verify_chain)")
    print(f"export {args.verify_records} records to JSONL (fsync): {export_rate:,.0f} records/s; "
          f"verify the export files with the public key: {file_rate:,.0f} records/s")
    print("reproduce: .venv/bin/python -m benchmarks.audit " + " ".join(argv if argv is not None else sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
