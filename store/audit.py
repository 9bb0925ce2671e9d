"""Audit trail, the Redis side: per-tenant hash chains appended by a Lua compare-and-set.

Key layout (``P`` = ``{prefix}:audit``)::

    P:log:{tenant}        LIST    record lines, record seq n at index n-1
    P:head:{tenant}       HASH    seq, hash of the newest record (the chain head; absent = empty chain)
    P:idem:{tenant}       HASH    "event_id\\x1fstage\\x1foutcome" -> seq   (idempotency of appends)
    P:ev:{event_id}       LIST    "tenant\\x1fseq" per record of that event (history index)
    P:ckpt:{tenant}       LIST    signed checkpoint lines, in the order they were written
    P:tenants             SET     every tenant with a chain
    P:last                HASH    tenant -> unix time of the last append (health page)
    P:tick                STRING  short lock so that one of several workers' ``tick()`` checkpoints
    P:xcur                HASH    export cursor: "rec:{tenant}" / "ckpt:{tenant}" -> entries exported
    P:xlock               STRING  one exporter at a time (``export_pending``)

The record's hash is computed in Python (Redis Lua has no SHA-256); the Lua script only checks that
the head is still the one the hash was computed against, then pushes the record, moves the head and
records the idempotency key, all in one atomic step. On a head mismatch it returns the current head
and the caller rebuilds the record on top of it and tries again: no fork, no gap, no duplicate, with
any number of writers. See ``docs/audit.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from redis.asyncio import Redis

from pipeline.audit import (
    SYSTEM_TENANT,
    AuditRecord,
    ChainReport,
    Checkpoint,
    build_record,
    decode_checkpoint,
    decode_record,
    export_filename,
    genesis_hash,
    iso_now,
    make_checkpoint,
    parse_iso,
    verify_chain,
)

__all__ = [
    "SYSTEM_TENANT",
    "AuditContentionError",
    "AuditRecord",
    "AuditStore",
    "ChainReport",
    "Checkpoint",
    "load_signing_key",
    "public_key_pem",
]

# KEYS: 1 log, 2 head, 3 idem, 4 event index, 5 tenants set, 6 last-append hash
# ARGV: 1 expected head seq, 2 expected head hash ('' = empty chain), 3 record line, 4 record hash,
#       5 idempotency field, 6 tenant, 7 now (unix seconds), 8 event index entry
_APPEND_LUA = """
local done = redis.call('HGET', KEYS[3], ARGV[5])
if done then return {0, done, ''} end
local head = redis.call('HMGET', KEYS[2], 'seq', 'hash')
local seq = head[1] or '0'
local hash = head[2] or ''
if seq ~= ARGV[1] or hash ~= ARGV[2] then return {2, seq, hash} end
local new = tonumber(seq) + 1
redis.call('RPUSH', KEYS[1], ARGV[3])
redis.call('HSET', KEYS[2], 'seq', tostring(new), 'hash', ARGV[4])
redis.call('HSET', KEYS[3], ARGV[5], tostring(new))
redis.call('RPUSH', KEYS[4], ARGV[8])
redis.call('SADD', KEYS[5], ARGV[6])
redis.call('HSET', KEYS[6], ARGV[6], ARGV[7])
return {1, tostring(new), ARGV[4]}
"""

_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_MAX_ATTEMPTS = 500
_PAGE = 10_000


class AuditContentionError(RuntimeError):
    """An append lost the compare-and-set too many times in a row."""


def load_signing_key(settings: Any) -> Ed25519PrivateKey | None:
    """The audit signing key from ``INTAKE_AUDIT_SIGNING_KEY`` (base64 of 32 raw bytes), or None."""
    from ghl_intake.settings import b64key

    raw = getattr(settings, "audit_signing_key", "") or ""
    if not raw.strip():
        return None
    return Ed25519PrivateKey.from_private_bytes(b64key("INTAKE_AUDIT_SIGNING_KEY", raw))


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """PEM (SubjectPublicKeyInfo) of the public half: what the auditor gets."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def _text(v: bytes | str) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else v


def _line(v: bytes | str) -> bytes:
    return v.encode("utf-8") if isinstance(v, str) else v


def write_export(directory: Path, batch: Sequence[tuple[str, bytes]]) -> None:
    """Append lines to their day files in ``directory`` (O_APPEND, one write per file, fsync)."""
    directory.mkdir(parents=True, exist_ok=True)
    by_file: dict[str, list[bytes]] = {}
    for name, line in batch:
        by_file.setdefault(name, []).append(line + b"\n")
    created = False
    for name, chunks in by_file.items():
        path = directory / name
        created = created or not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            view = memoryview(b"".join(chunks))
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
    if created:  # make the new directory entry durable too
        with contextlib.suppress(OSError):
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


class AuditStore:
    """Append-only, hash-chained, per-tenant audit trail in Redis, with signed checkpoints."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "intake",
        signing_key: Ed25519PrivateKey | None = None,
        export_dir: Path | None = None,
        checkpoint_every: int = 100,
        checkpoint_interval_s: float = 300.0,
        dedicated_connection: bool = False,
    ) -> None:
        """``dedicated_connection``: send appends over one connection of ``redis``'s pool held by
        this store (redis-py's single-connection client), skipping the pool's per-command
        connection check; about twice the appends/s of one process. Call :meth:`aclose` at shutdown.
        """
        self.redis = redis
        self._r: Any = redis  # redis-py's async stubs type commands as Awaitable | value
        self.prefix = prefix
        self.signing_key = signing_key
        self.public_keys: list[Ed25519PublicKey] = [signing_key.public_key()] if signing_key else []
        self.export_dir = Path(export_dir) if export_dir else None
        self.checkpoint_every = int(checkpoint_every)
        self.checkpoint_interval_s = float(checkpoint_interval_s)
        self._fast: Any = None
        if dedicated_connection:
            self._fast = Redis(connection_pool=redis.connection_pool, single_connection_client=True)
        self._append_script = (self._fast or redis).register_script(_APPEND_LUA)
        self._heads: dict[str, tuple[int, str]] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # one append per tenant at a time in this process
        self.contention_retries = 0  # CAS losses seen by this instance (metrics/benchmark)

    async def aclose(self) -> None:
        """Give the dedicated connection back (the caller still owns and closes ``redis``)."""
        if self._fast is not None:
            fast, self._fast = self._fast, None
            self._append_script = self.redis.register_script(_APPEND_LUA)
            await fast.aclose()

    # ------------------------------------------------------------------------------------------ keys

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, "audit", *parts))

    def _keys(self, tenant: str, event_id: str) -> list[str]:
        return [
            self.key("log", tenant),
            self.key("head", tenant),
            self.key("idem", tenant),
            self.key("ev", event_id),
            self.key("tenants"),
            self.key("last"),
        ]

    # ------------------------------------------------------------------------------------------ append

    async def append(
        self,
        tenant: str,
        *,
        event_id: str,
        stage: str,
        outcome: str,
        actor: str = "pipeline",
        contact: str | None = None,
        counts: dict[str, int] | None = None,
        detail: dict[str, str] | None = None,
    ) -> int:
        """Append one record and return its seq; a repeat of (event_id, stage, outcome) returns the first seq.

        ``contact`` must already be a pseudonym and ``detail`` must hold no personal data.
        """
        if not tenant or not event_id or not stage or not outcome:
            raise ValueError("tenant, event_id, stage and outcome must be non-empty")
        counts = dict(counts or {})
        detail = dict(detail or {})
        for k, c in counts.items():
            if not isinstance(k, str) or not isinstance(c, int) or isinstance(c, bool):
                raise TypeError("counts must map str to int")
        for k, d in detail.items():
            if not isinstance(k, str) or not isinstance(d, str):
                raise TypeError("detail must map str to str")
        lock = self._locks.get(tenant)
        if lock is None:
            lock = self._locks[tenant] = asyncio.Lock()
        # Concurrent appends to one tenant inside this process take turns: the cached head stays
        # fresh and they do not fight each other's compare-and-set. Other processes still race (CAS).
        async with lock:
            return await self._append_locked(tenant, event_id, stage, outcome, actor, contact, counts, detail)

    async def _append_locked(
        self, tenant: str, event_id: str, stage: str, outcome: str, actor: str, contact: str | None,
        counts: dict[str, int], detail: dict[str, str],
    ) -> int:
        keys = self._keys(tenant, event_id)
        idem = f"{event_id}\x1f{stage}\x1f{outcome}"
        head_seq, head_hash = self._heads.get(tenant, (-1, ""))
        if head_seq < 0:
            raw = await self._r.hmget(self.key("head", tenant), ["seq", "hash"])
            head_seq = int(raw[0]) if raw[0] is not None else 0
            head_hash = _text(raw[1]) if raw[1] is not None else ""
        for attempt in range(_MAX_ATTEMPTS):
            seq = head_seq + 1
            prev = head_hash if head_seq > 0 else genesis_hash(tenant)
            rec, line = build_record(
                tenant, seq, prev, event_id=event_id, stage=stage, outcome=outcome, actor=actor,
                contact=contact, counts=counts, detail=detail,
            )
            res = await self._append_script(
                keys=keys,
                args=[str(head_seq), head_hash, line, rec.hash, idem, tenant, repr(time.time()), f"{tenant}\x1f{seq}"],
            )
            code = int(res[0])
            if code == 1:
                self._heads[tenant] = (seq, rec.hash)
                await self._after_append(tenant, rec, line)
                return seq
            if code == 0:
                return int(res[1])
            head_seq, head_hash = int(res[1]), _text(res[2])
            self.contention_retries += 1
            if attempt >= 8:  # heavy contention: back off a little so someone wins
                await asyncio.sleep(random.uniform(0, 0.002 * min(attempt, 50)))
        raise AuditContentionError(f"audit append for tenant {tenant!r} lost the head {_MAX_ATTEMPTS} times")

    async def _after_append(self, tenant: str, rec: AuditRecord, line: bytes) -> None:
        # exactly one writer gets each seq, so exactly one writes the count-based checkpoint
        if self.signing_key is not None and self.checkpoint_every > 0 and rec.seq % self.checkpoint_every == 0:
            await self._write_checkpoint(tenant, rec.seq, rec.hash)

    # ------------------------------------------------------------------------------------------ export

    async def export_pending(self, *, max_lines: int = 50_000) -> int:
        """Copy records and checkpoints not yet exported from Redis to the day files (fsync).

        Catch-up from a cursor kept in Redis (``P:xcur``), so the export has no gaps even when a
        worker dies mid-way (a line written twice is harmless: identical copies are ignored by the
        verifier). Checkpoints are read before records, so a file never holds a checkpoint whose
        record is not there yet. One exporter at a time (``P:xlock``). Returns lines written.
        """
        if self.export_dir is None:
            return 0
        token = uuid.uuid4().hex
        if not await self._r.set(self.key("xlock"), token, nx=True, px=60_000):
            return 0
        try:
            cursor = {_text(k): int(v) for k, v in (await self._r.hgetall(self.key("xcur"))).items()}
            batch: list[tuple[str, bytes]] = []
            moved: dict[str, int] = {}
            fallback = export_filename(iso_now())
            for t in await self.tenants():
                cdone = cursor.get(f"ckpt:{t}", 0)
                craw = await self._r.lrange(self.key("ckpt", t), cdone, cdone + max_lines - 1)
                rdone = cursor.get(f"rec:{t}", 0)
                rraw = await self._r.lrange(self.key("log", t), rdone, rdone + max_lines - 1)
                for raw in rraw:
                    line = _line(raw)
                    try:
                        batch.append((export_filename(decode_record(line).ts), line))
                    except ValueError:  # damaged in Redis: export as is, the verifier will flag it
                        batch.append((fallback, line))
                for raw in craw:
                    line = _line(raw)
                    try:
                        batch.append((export_filename(decode_checkpoint(line).ts), line))
                    except ValueError:
                        batch.append((fallback, line))
                if rraw:
                    moved[f"rec:{t}"] = rdone + len(rraw)
                if craw:
                    moved[f"ckpt:{t}"] = cdone + len(craw)
            if batch:
                assert self.export_dir is not None
                await asyncio.to_thread(write_export, self.export_dir, batch)
                await self._r.hset(self.key("xcur"), mapping=moved)
            return len(batch)
        finally:
            await self._release(self.key("xlock"), token)

    async def _release(self, key: str, token: str) -> None:
        await self._r.eval(_RELEASE_LUA, 1, key, token)

    async def export(self, tenant: str, since: str | None = None, until: str | None = None) -> list[bytes]:
        """Record and checkpoint lines of ``tenant`` with ``since <= ts < until`` (ISO-8601)."""
        lo = parse_iso(since) if since else None
        hi = parse_iso(until) if until else None

        def keep(ts: str) -> bool:
            t = parse_iso(ts)
            return (lo is None or t >= lo) and (hi is None or t < hi)

        out: list[bytes] = []
        for line in await self._log_lines(tenant):
            try:
                rec = decode_record(line)
            except ValueError:
                out.append(line)  # keep damaged lines visible to whoever verifies the export
                continue
            if keep(rec.ts):
                out.append(line)
        for raw in await self._r.lrange(self.key("ckpt", tenant), 0, -1):
            cline = _line(raw)
            try:
                if keep(decode_checkpoint(cline).ts):
                    out.append(cline)
            except ValueError:
                out.append(cline)
        return out

    # ------------------------------------------------------------------------------------------ checkpoints

    async def _head(self, tenant: str) -> tuple[int, str]:
        raw = await self._r.hmget(self.key("head", tenant), ["seq", "hash"])
        return (int(raw[0]) if raw[0] is not None else 0, _text(raw[1]) if raw[1] is not None else "")

    async def _write_checkpoint(self, tenant: str, seq: int, head: str) -> Checkpoint | None:
        if self.signing_key is None:
            return None
        ckpt, cline = make_checkpoint(tenant, seq, head, self.signing_key)
        await self._r.rpush(self.key("ckpt", tenant), cline)
        return ckpt

    async def checkpoint(self, tenant: str | None = None) -> list[Checkpoint]:
        """Force a signed checkpoint of each (or one) non-empty chain now. No signing key: none."""
        if self.signing_key is None:
            return []
        out: list[Checkpoint] = []
        for t in [tenant] if tenant is not None else await self.tenants():
            seq, head = await self._head(t)
            if seq == 0:
                continue
            ck = await self._write_checkpoint(t, seq, head)
            if ck is not None:
                out.append(ck)
        return out

    async def tick(self, now: float | None = None) -> list[Checkpoint]:
        """Cron hook for the audit worker (call it every few seconds).

        Checkpoints every non-empty chain whose latest checkpoint is older than
        ``checkpoint_interval_s``, whether new records came in (time-based checkpoint) or not
        (heartbeat); one of several workers does so per couple of seconds (short Redis lock). Then,
        with an export directory, copies what is new to the JSONL files (:meth:`export_pending`).
        Returns the checkpoints written.
        """
        out = await self._tick_checkpoints(now)
        if self.export_dir is not None:
            await self.export_pending()
        return out

    async def _tick_checkpoints(self, now: float | None) -> list[Checkpoint]:
        if self.signing_key is None:
            return []
        now = time.time() if now is None else now
        got = await self._r.set(self.key("tick"), iso_now(now), nx=True, px=2000)
        if not got:
            return []
        tenants = await self.tenants()
        if not tenants:
            return []
        pipe = self._r.pipeline(transaction=False)
        for t in tenants:
            pipe.hmget(self.key("head", t), ["seq", "hash"])
            pipe.lindex(self.key("ckpt", t), -1)
        res = await pipe.execute()
        out: list[Checkpoint] = []
        for i, t in enumerate(tenants):
            head_raw, last_raw = res[2 * i], res[2 * i + 1]
            if head_raw[0] is None:
                continue
            seq, head = int(head_raw[0]), _text(head_raw[1])
            if seq == 0:
                continue
            if last_raw is not None:
                try:
                    last_ts = parse_iso(decode_checkpoint(_line(last_raw)).ts).timestamp()
                except ValueError:
                    last_ts = 0.0
                if now - last_ts < self.checkpoint_interval_s:
                    continue
            ck = await self._write_checkpoint(t, seq, head)
            if ck is not None:
                out.append(ck)
        return out

    # ------------------------------------------------------------------------------------------ reads

    async def tenants(self) -> list[str]:
        members = await self._r.smembers(self.key("tenants"))
        last = await self._r.hkeys(self.key("last"))
        return sorted({_text(m) for m in members} | {_text(m) for m in last})

    async def _log_lines(self, tenant: str, start: int = 0, end: int = -1) -> list[bytes]:
        if start == 0 and end == -1:
            out: list[bytes] = []
            pos = 0
            while True:
                chunk = await self._r.lrange(self.key("log", tenant), pos, pos + _PAGE - 1)
                out.extend(_line(c) for c in chunk)
                if len(chunk) < _PAGE:
                    return out
                pos += _PAGE
        return [_line(c) for c in await self._r.lrange(self.key("log", tenant), start, end)]

    async def records(self, tenant: str, start: int = 0, end: int = -1) -> list[AuditRecord]:
        """Records by list index (``LRANGE`` semantics; record seq n is index n-1)."""
        return [decode_record(line) for line in await self._log_lines(tenant, start, end)]

    async def history(self, event_id: str) -> list[AuditRecord]:
        """Every record of one event across stages and chains, in append order."""
        entries = await self._r.lrange(self.key("ev", event_id), 0, -1)
        refs: list[tuple[str, int]] = []
        for e in entries:
            tenant, _, seq_s = _text(e).rpartition("\x1f")
            if tenant and seq_s.isdigit():
                refs.append((tenant, int(seq_s)))
        if not refs:
            return []
        pipe = self._r.pipeline(transaction=False)
        for tenant, seq in refs:
            pipe.lindex(self.key("log", tenant), seq - 1)
        out: list[AuditRecord] = []
        for raw in await pipe.execute():
            if raw is None:
                continue
            try:
                rec = decode_record(_line(raw))
            except ValueError:
                continue
            if rec.event_id == event_id:
                out.append(rec)
        return out

    async def last_append(self) -> dict[str, float]:
        raw = await self._r.hgetall(self.key("last"))
        return {_text(k): float(_text(v)) for k, v in raw.items()}

    # ------------------------------------------------------------------------------------------ verify

    async def verify(
        self, tenant: str | None = None, *, public_keys: Sequence[Ed25519PublicKey] | None = None
    ) -> list[ChainReport]:
        """Verify every chain (or one): hashes, links, seq, the head key and the signed checkpoints."""
        keys = list(public_keys) if public_keys is not None else self.public_keys
        out: list[ChainReport] = []
        for t in [tenant] if tenant is not None else await self.tenants():
            lines = await self._log_lines(t)
            ckpts = [_line(c) for c in await self._r.lrange(self.key("ckpt", t), 0, -1)]
            rep = verify_chain(t, lines, ckpts, keys)
            if rep.ok:
                seq, head = await self._head(t)
                last_hash = decode_record(lines[-1]).hash if lines else ""
                if seq != rep.records or head != last_hash:
                    rep = ChainReport(
                        t, False, rep.records, min(seq, rep.records) + 1,
                        f"chain head says seq {seq} but the chain ends at seq {rep.records} "
                        "(tail truncated or head rewritten)",
                        rep.checkpoints, rep.signed, rep.first_seq, rep.latest_checkpoint_seq,
                    )
            out.append(rep)
        return out
