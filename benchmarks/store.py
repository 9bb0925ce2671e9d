"""Context store throughput on real Redis: read-modify-write (decrypt, merge, seal, compare-and-set)
per second with 1 and 8 concurrent writers, on one contact (every write contends) and spread over
many contacts.

    .venv/bin/python -m benchmarks.store [--url redis://127.0.0.1:6379/0] [--ops 2000] [--mode both]
                                         [--contacts 500] [--max-items 50]

``--mode async``: writers are coroutines in one process, each with its own ContextStore, data-key
cache and Redis connection. ``--mode procs``: writers are separate processes (how persist workers
really run). Every context is pre-filled to ``--max-items`` entries of ~400 bytes of redacted text, so
each write seals a full-size context (steady state). After each scenario the benchmark checks that no
update was lost (context version == writes). Uses its own key prefix and deletes its keys at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
import uuid
from typing import Any

from redis.asyncio import Redis

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeline.persist import Entry, merge  # noqa: E402
from store.context import ContextStore  # noqa: E402
from store.crypto import EnvelopeCrypto  # noqa: E402
from store.keyring import Keyring  # noqa: E402

MASTER = Keyring([("k1", b"\x07" * 32)])
TEXT = ("Hi, this is <PERSON:3f9a1c2b7d4e>. Saw the 3 bed 2 bath listed at $425,000. Can I see it Saturday at "
        "2pm? Call me at <PHONE_NUMBER:1e0b07a93c2d> or write to <EMAIL_ADDRESS:9c8b7a6d5e4f>. We are "
        "pre-approved and would like to move quickly; my partner works nights so weekends suit us best. ")


def _entry(eid: str, t: float) -> Entry:
    return Entry(event_id=eid, event_type="InboundMessage", received_at=t,
                 fields={"type": "InboundMessage", "body": TEXT, "direction": "inbound", "messageType": "SMS"},
                 counts={"PERSON": 1, "PHONE_NUMBER": 1, "EMAIL_ADDRESS": 1})


def _contact(w: int, i: int, contacts: int) -> str:
    return f"c{(w * 7919 + i) % contacts:05d}" if contacts > 1 else "c00000"


async def _writer(url: str, prefix: str, w: int, n: int, contacts: int, max_items: int) -> tuple[int, list[float]]:
    r = Redis.from_url(url)
    store = ContextStore(r, EnvelopeCrypto(r, MASTER, prefix=prefix), prefix=prefix, max_cas_tries=10_000)
    lat: list[float] = []
    try:
        for i in range(n):
            e = _entry(f"w{w}-{i}", 1e9 + w * 1e6 + i)

            def change(ctx: Any, e: Entry = e) -> bool:
                return merge(ctx, e, max_items)

            t0 = time.perf_counter()
            await store.update("locBench", _contact(w, i, contacts), change)
            lat.append(time.perf_counter() - t0)
        return store.cas_conflicts, lat
    finally:
        await r.aclose()


def _proc_main(args: tuple[Any, ...]) -> None:
    url, prefix, w, n, contacts, max_items, q, ready, go = args
    ready.put(w)
    go.wait()
    q.put(asyncio.run(_writer(url, prefix, w, n, contacts, max_items)))


async def _prefill(url: str, prefix: str, contacts: int, max_items: int) -> None:
    r = Redis.from_url(url)
    store = ContextStore(r, EnvelopeCrypto(r, MASTER, prefix=prefix), prefix=prefix)
    sem = asyncio.Semaphore(32)

    async def one(c: int) -> None:
        async with sem:
            cid = f"c{c:05d}"
            def fill(ctx: Any) -> bool:
                return any([merge(ctx, _entry(f"pre{cid}-{j}", float(j)), max_items) for j in range(max_items)])

            await store.update("locBench", cid, fill)

    await asyncio.gather(*(one(c) for c in range(contacts)))
    await r.aclose()


async def _versions(url: str, prefix: str, contacts: int) -> int:
    r = Redis.from_url(url)
    store = ContextStore(r, MASTER, prefix=prefix)
    total = 0
    for c in range(contacts):
        v = await r.hget(store.key("locBench", f"c{c:05d}"), "v")
        total += int(v or 0)
    await r.aclose()
    return total


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


def run_scenario(url: str, writers: int, contacts: int, total: int, mode: str, max_items: int) -> dict[str, float]:
    prefix = f"bench-store-{uuid.uuid4().hex[:10]}"
    per = total // writers
    try:
        asyncio.run(_prefill(url, prefix, contacts, max_items))
        if mode == "async":
            async def go() -> list[tuple[int, list[float]]]:
                return await asyncio.gather(*(_writer(url, prefix, w, per, contacts, max_items)
                                              for w in range(writers)))

            t0 = time.perf_counter()
            results = asyncio.run(go())
        else:
            ctx = mp.get_context("fork")
            q, ready, start = ctx.Queue(), ctx.Queue(), ctx.Event()
            procs = [ctx.Process(target=_proc_main, args=((url, prefix, w, per, contacts, max_items, q, ready, start),))
                     for w in range(writers)]
            for p in procs:
                p.start()
            for _ in procs:
                ready.get()
            t0 = time.perf_counter()
            start.set()
            results = [q.get() for _ in procs]
            for p in procs:
                p.join()
        elapsed = time.perf_counter() - t0
        writes = asyncio.run(_versions(url, prefix, contacts)) - contacts  # minus the pre-fill write
        assert writes == per * writers, f"lost updates: {per * writers - writes}"
        lat = sorted(x for _, ls in results for x in ls)
        return {"ops_s": per * writers / elapsed, "conflicts_per_op": sum(c for c, _ in results) / (per * writers),
                "p50_ms": statistics.median(lat) * 1000, "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000}
    finally:
        asyncio.run(_cleanup(url, prefix))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--ops", type=int, default=2000, help="writes per scenario")
    ap.add_argument("--contacts", type=int, default=500, help="contacts in the 'many contacts' scenarios")
    ap.add_argument("--max-items", type=int, default=50, help="entries kept per context (INTAKE_CONTEXT_MAX_ITEMS)")
    ap.add_argument("--mode", choices=("async", "procs", "both"), default="both")
    args = ap.parse_args()
    modes = ("async", "procs") if args.mode == "both" else (args.mode,)
    print(f"context read-modify-write on {args.url}  ({platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{args.ops} writes per scenario, contexts pre-filled to {args.max_items} entries)")
    print(f"{'mode':<6} {'writers':>7} {'target':<14} {'RMW/s':>9} {'CAS retries/op':>15} {'p50 ms':>8} {'p99 ms':>8}")
    for mode in modes:
        for contacts in (1, args.contacts):
            for writers in (1, 8):
                res = run_scenario(args.url, writers, contacts, args.ops, mode, args.max_items)
                target = "one contact" if contacts == 1 else f"{contacts} contacts"
                print(f"{mode:<6} {writers:>7} {target:<14} {res['ops_s']:>9.0f} {res['conflicts_per_op']:>15.2f} "
                      f"{res['p50_ms']:>8.2f} {res['p99_ms']:>8.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
