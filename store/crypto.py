"""Envelope encryption: master keys wrap random per-tenant and per-contact data keys; data keys seal data.

Key hierarchy::

    INTAKE_MASTER_KEYS  (env; "k2:<b64>,k1:<b64>", first = primary, others decrypt only)
      └─ wraps ─► data key record  {prefix}:dk:{scope}   HASH id, mk, w, created
                   scope = "t:{tenant}"             tenant data key (secrets, credentials)
                         = "c:{tenant}:{contact}"   contact data key (conversation context)
                   w = Keyring.seal(32 random bytes, aad("dk", scope, id), key_id=mk)   (format v1)
      └─ seals directly (sync path) ─► envelopes, stage data, dead letters (format v1)

Every data key record is listed in the set ``{prefix}:dk:idx`` (rotation and ``keys status``
walk it). Destroying a contact's record makes everything sealed under it unreadable for good,
which is what GDPR erasure relies on.

Blob format (version 2, data sealed under a data key)::

    b"\\x02" | len(key_id) (1 byte) | key_id (ascii) | nonce (12 bytes) | AES-GCM ciphertext+tag

with associated data ``aad("v2", kind, tenant, contact)`` (contact "" for tenant-scope data), so a
blob copied to another tenant, contact or record kind fails to decrypt even before the key lookup.

Rotation (``rotate``) re-wraps each record's data key under the primary master key with a Lua
compare-and-set; the data key itself never changes, so no data is re-encrypted and workers keep
working throughout (their cached data keys stay valid). Progress is kept in
``{prefix}:keys:rotation`` so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from redis.asyncio import Redis

from store.keyring import NONCE_BYTES, DecryptError, Keyring, aad

FORMAT_V2 = 2
DATA_KEY_BYTES = 32

# KEYS[1]=record KEYS[2]=index; ARGV: id, mk, wrapped, created, scope. Returns {id, mk, w} stored.
_CREATE_LUA = """
local cur = redis.call('HMGET', KEYS[1], 'id', 'mk', 'w')
if cur[1] then return cur end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'mk', ARGV[2], 'w', ARGV[3], 'created', ARGV[4])
redis.call('SADD', KEYS[2], ARGV[5])
return {ARGV[1], ARGV[2], ARGV[3]}
"""

# KEYS[1]=record; ARGV: expected id, expected wrapped, new mk, new wrapped.
# 1 re-wrapped, 0 record gone (destroyed or expired), -1 changed meanwhile (read again).
_REWRAP_LUA = """
local cur = redis.call('HMGET', KEYS[1], 'id', 'w')
if not cur[1] then return 0 end
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then return -1 end
redis.call('HSET', KEYS[1], 'mk', ARGV[3], 'w', ARGV[4])
return 1
"""


def _q(part: str) -> str:
    """A key component with ':' (and '%') escaped, so scopes and keys are unambiguous."""
    return quote(part, safe="")


def tenant_scope(tenant: str) -> str:
    return f"t:{_q(tenant)}"


def contact_scope(tenant: str, contact: str) -> str:
    return f"c:{_q(tenant)}:{_q(contact)}"


def data_aad(kind: str, tenant: str, contact: str = "") -> bytes:
    return aad("v2", kind, tenant, contact)


def blob_key_id(blob: bytes) -> str:
    """Data key id named by a v2 blob."""
    if len(blob) < 2 or blob[0] != FORMAT_V2:
        raise DecryptError("unknown blob format")
    n = blob[1]
    if len(blob) < 2 + n + NONCE_BYTES + 16:
        raise DecryptError("blob too short")
    return blob[2 : 2 + n].decode("ascii", "replace")


def _s(v: bytes | str | None) -> str:
    if v is None:
        return ""
    return v.decode() if isinstance(v, bytes) else v


@dataclass
class DataKey:
    scope: str
    key_id: str
    aead: AESGCM
    expires: float


@dataclass
class RotateResult:
    primary: str
    scanned: int = 0
    rewrapped: int = 0
    already: int = 0
    gone: int = 0
    dead_letters_resealed: int = 0
    resumed: bool = False
    remaining: dict[str, int] = field(default_factory=dict)  # master key id -> records not yet on primary

    @property
    def complete(self) -> bool:
        return not self.remaining


class EnvelopeCrypto:
    """Data keys wrapped by the master keyring, cached in process (LRU bound + TTL).

    ``seal``/``open`` (sync) seal under the master keyring directly, for data with no tenant yet
    (ingress envelopes, stage data, dead letters); ``seal_for``/``open_for`` (async) seal under
    the tenant's or contact's data key.
    """

    def __init__(self, redis: Redis, keyring: Keyring, *, prefix: str = "intake", cache_size: int = 10_000,
                 cache_ttl_s: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.r = redis
        self._r: Any = redis
        self.keyring = keyring
        self.prefix = prefix
        self.cache_size = max(0, int(cache_size))
        self.cache_ttl_s = float(cache_ttl_s)
        self.clock = clock
        self._cache: OrderedDict[str, DataKey] = OrderedDict()
        self._create = redis.register_script(_CREATE_LUA)
        self._rewrap = redis.register_script(_REWRAP_LUA)

    # ------------------------------------------------------------------ master (sync) path
    def seal(self, plaintext: bytes, associated: bytes, key_id: str | None = None) -> bytes:
        return self.keyring.seal(plaintext, associated, key_id)

    def open(self, blob: bytes, associated: bytes) -> bytes:
        return self.keyring.open(blob, associated)

    # ------------------------------------------------------------------ keys
    def record_key(self, scope: str) -> str:
        return f"{self.prefix}:dk:{scope}"

    @property
    def index_key(self) -> str:
        return f"{self.prefix}:dk:idx"

    @property
    def rotation_key(self) -> str:
        return f"{self.prefix}:keys:rotation"

    # ------------------------------------------------------------------ data keys
    def _wrap_aad(self, scope: str, key_id: str) -> bytes:
        return aad("dk", scope, key_id)

    def _unwrap(self, scope: str, key_id: str, wrapped: bytes) -> AESGCM:
        material = self.keyring.open(wrapped, self._wrap_aad(scope, key_id))
        return AESGCM(material)

    def _cached(self, scope: str) -> DataKey | None:
        dk = self._cache.get(scope)
        if dk is None:
            return None
        if dk.expires <= self.clock():
            del self._cache[scope]
            return None
        self._cache.move_to_end(scope)
        return dk

    def _remember(self, dk: DataKey) -> DataKey:
        if self.cache_size:
            self._cache[dk.scope] = dk
            self._cache.move_to_end(dk.scope)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return dk

    def forget(self, scope: str | None = None) -> None:
        """Drop one cached data key (or all of them)."""
        if scope is None:
            self._cache.clear()
        else:
            self._cache.pop(scope, None)

    async def data_key(self, scope: str, *, create: bool = True, fresh: bool = False) -> DataKey | None:
        """The data key of ``scope`` (created on first use when ``create``); None when absent."""
        if not fresh:
            hit = self._cached(scope)
            if hit is not None:
                return hit
        raw = await self._r.hmget(self.record_key(scope), ["id", "mk", "w"])
        if raw[0] is None:
            if not create:
                self.forget(scope)
                return None
            key_id = "d" + os.urandom(8).hex()
            material = AESGCM.generate_key(bit_length=256)
            wrapped = self.keyring.seal(material, self._wrap_aad(scope, key_id))
            raw = await self._create(keys=[self.record_key(scope), self.index_key],
                                     args=[key_id, self.keyring.primary, wrapped, repr(time.time()), scope])
        key_id = _s(raw[0])
        wrapped_b = raw[2] if isinstance(raw[2], bytes) else str(raw[2]).encode()
        aead = self._unwrap(scope, key_id, wrapped_b)
        return self._remember(DataKey(scope, key_id, aead, self.clock() + self.cache_ttl_s))

    async def _key_for_blob(self, scope: str, key_id: str) -> AESGCM:
        dk = self._cached(scope)
        if dk is None or dk.key_id != key_id:
            dk = await self.data_key(scope, create=False, fresh=True)
        if dk is None or dk.key_id != key_id:
            raise DecryptError("the data key of this blob no longer exists (destroyed)")
        return dk.aead

    # ------------------------------------------------------------------ sealing under data keys
    @staticmethod
    def seal_with(dk: DataKey, plaintext: bytes, associated: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        kid = dk.key_id.encode("ascii")
        return bytes((FORMAT_V2, len(kid))) + kid + nonce + dk.aead.encrypt(nonce, plaintext, associated)

    async def seal_for(self, tenant: str, contact: str | None, kind: str, plaintext: bytes) -> bytes:
        scope = contact_scope(tenant, contact) if contact else tenant_scope(tenant)
        dk = await self.data_key(scope)
        assert dk is not None
        return self.seal_with(dk, plaintext, data_aad(kind, tenant, contact or ""))

    async def open_for(self, tenant: str, contact: str | None, kind: str, blob: bytes) -> bytes:
        scope = contact_scope(tenant, contact) if contact else tenant_scope(tenant)
        key_id = blob_key_id(blob)
        aead = await self._key_for_blob(scope, key_id)
        n = blob[1]
        nonce = blob[2 + n : 2 + n + NONCE_BYTES]
        try:
            return aead.decrypt(nonce, blob[2 + n + NONCE_BYTES :], data_aad(kind, tenant, contact or ""))
        except InvalidTag as exc:
            raise DecryptError("authentication failed (wrong key, wrong binding or tampered)") from exc

    # ------------------------------------------------------------------ destruction
    async def destroy(self, scope: str) -> bool:
        """Delete a data key record: everything sealed under it becomes unreadable for good."""
        self.forget(scope)
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(self.record_key(scope))
        pipe.srem(self.index_key, scope)
        res = await pipe.execute()
        return bool(res[0])

    # ------------------------------------------------------------------ status and rotation
    async def _scan_scopes(self, cursor: int, count: int) -> tuple[int, list[str]]:
        nxt, members = await self._r.sscan(self.index_key, cursor=cursor, count=count)
        return int(nxt), sorted({_s(m) for m in members})

    async def status(self) -> dict[str, int]:
        """Number of data keys wrapped by each master key id (ids in the keyring listed even at 0)."""
        counts: dict[str, int] = dict.fromkeys(self.keyring.key_ids, 0)
        cursor = 0
        while True:
            cursor, scopes = await self._scan_scopes(cursor, 1000)
            if scopes:
                pipe = self._r.pipeline(transaction=False)
                for sc in scopes:
                    pipe.hget(self.record_key(sc), "mk")
                stale = []
                for sc, mk in zip(scopes, await pipe.execute(), strict=True):
                    if mk is None:
                        stale.append(sc)
                        continue
                    counts[_s(mk)] = counts.get(_s(mk), 0) + 1
                if stale:
                    await self._r.srem(self.index_key, *stale)
            if cursor == 0:
                return counts

    async def _rewrap_one(self, scope: str, primary: str) -> str:
        for _ in range(20):
            raw = await self._r.hmget(self.record_key(scope), ["id", "mk", "w"])
            if raw[0] is None:
                await self._r.srem(self.index_key, scope)
                return "gone"
            key_id, mk = _s(raw[0]), _s(raw[1])
            if mk == primary:
                return "already"
            wrapped = raw[2] if isinstance(raw[2], bytes) else str(raw[2]).encode()
            material = self.keyring.open(wrapped, self._wrap_aad(scope, key_id))
            new = self.keyring.seal(material, self._wrap_aad(scope, key_id), primary)
            res = int(await self._rewrap(keys=[self.record_key(scope)], args=[key_id, wrapped, primary, new]))
            if res == 1:
                return "rewrapped"
            if res == 0:
                await self._r.srem(self.index_key, scope)
                return "gone"
        raise RuntimeError(f"data key {scope} kept changing during re-wrap")

    async def rotate(self, *, batch: int = 200, progress: Callable[[int, int], Awaitable[None] | None] | None = None,
                     max_batches: int | None = None, reseal_dead_letters: bool = True) -> RotateResult:
        """Re-wrap every data key under the primary master key; resumable (marker in Redis).

        ``progress(done, total)`` is called after each batch. ``max_batches`` stops early (the
        marker keeps the cursor; tests use it to simulate an interruption).
        """
        primary = self.keyring.primary
        marker = {_s(k): _s(v) for k, v in (await self._r.hgetall(self.rotation_key)).items()}
        res = RotateResult(primary=primary)
        cursor = 0
        done = 0
        if marker.get("target") == primary and marker.get("state") == "running":
            cursor = int(marker.get("cursor") or 0)
            done = int(marker.get("done") or 0)
            res.resumed = True
        else:
            await self._r.hset(self.rotation_key, mapping={"target": primary, "cursor": 0, "done": 0,
                                                           "state": "running", "started_at": repr(time.time())})
        total = int(await self._r.scard(self.index_key))
        batches = 0
        passes = 0
        while True:
            cursor, scopes = await self._scan_scopes(cursor, batch)
            for sc in scopes:
                outcome = await self._rewrap_one(sc, primary)
                res.scanned += 1
                if outcome == "rewrapped":
                    res.rewrapped += 1
                elif outcome == "already":
                    res.already += 1
                else:
                    res.gone += 1
            done += len(scopes)
            await self._r.hset(self.rotation_key, mapping={"cursor": cursor, "done": done})
            batches += 1
            if progress is not None:
                maybe = progress(min(done, total), total)
                if maybe is not None:
                    await maybe
            if cursor == 0:
                counts = await self.status()
                res.remaining = {k: v for k, v in counts.items() if k != primary and v}
                passes += 1
                if res.remaining and passes < 3:  # keys created by stale workers meanwhile: one more pass
                    total = int(await self._r.scard(self.index_key))
                    done = 0
                    continue
                break
            if max_batches is not None and batches >= max_batches:
                return res
        if reseal_dead_letters:
            res.dead_letters_resealed = await self.reseal_dead_letters()
        await self._r.hset(self.rotation_key, mapping={"state": "done" if res.complete else "incomplete",
                                                       "finished_at": repr(time.time())})
        return res

    async def reseal_dead_letters(self) -> int:
        """Re-seal dead-letter job blobs (master key path) under the primary key, compare-and-set."""
        from store.dlq import KIND as DLQ_KIND

        primary = self.keyring.primary
        n = 0
        script = self.r.register_script(
            "if redis.call('HGET', KEYS[1], 'job') ~= ARGV[1] then return 0 end "
            "redis.call('HSET', KEYS[1], 'job', ARGV[2]) return 1")
        for raw_id in await self._r.zrange(f"{self.prefix}:dlq:idx", 0, -1):
            dlq_id = _s(raw_id)
            key = f"{self.prefix}:dlq:{dlq_id}"
            blob = await self._r.hget(key, "job")
            if not blob or self.keyring.key_id_of(blob) == primary:
                continue
            a = aad(DLQ_KIND, dlq_id)
            new = self.keyring.seal(self.keyring.open(blob, a), a, primary)
            n += int(await script(keys=[key], args=[blob, new]))
        return n

    async def master_blob_counts(self) -> dict[str, int]:
        """Dead letters sealed directly under each master key id (they need the key too)."""
        counts: dict[str, int] = {}
        for raw_id in await self._r.zrange(f"{self.prefix}:dlq:idx", 0, -1):
            blob = await self._r.hget(f"{self.prefix}:dlq:{_s(raw_id)}", "job")
            if blob:
                try:
                    kid = self.keyring.key_id_of(blob)
                except DecryptError:
                    kid = "?"
                counts[kid] = counts.get(kid, 0) + 1
        return counts
