"""Encrypted per-(tenant, contact) context with optimistic compare-and-set.

Key ``{prefix}:ctx:{tenant}:{contact}`` is a hash ``{v: version, blob: sealed context}``. The blob is
sealed under the contact's own data key (``store.crypto``, format v2, AAD = context/tenant/contact),
so destroying that key (GDPR erasure) makes every copy of the context unreadable.

A writer reads (v, blob), merges in Python, and writes only if ``v`` is unchanged *and* the
contact's data key is still the one it sealed with (Lua); on conflict it re-reads and merges again,
so concurrent persist workers never lose each other's updates, and a writer holding a cached key
that an erasure just destroyed cannot resurrect data under it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from pipeline.persist import Context, decode_context, encode_context
from store.crypto import EnvelopeCrypto, _q, contact_scope
from store.keyring import Keyring

# KEYS[1]=context KEYS[2]=contact data key record; ARGV: expected v, blob, ttl, data key id.
# 1 written, 0 version changed, -1 data key changed or destroyed (refresh it and retry).
# The contact's data key lives one day longer than its context (both refreshed on every write).
_CAS_LUA = """
if redis.call('HGET', KEYS[2], 'id') ~= ARGV[4] then return -1 end
local v = redis.call('HGET', KEYS[1], 'v') or '0'
if v ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', tostring(tonumber(ARGV[1]) + 1), 'blob', ARGV[2])
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl + 86400)
end
return 1
"""

KIND = "context"


class ContextConflict(Exception):
    """Too many concurrent writers on one contact; the job is retried."""


class ContextStore:
    def __init__(self, redis: Redis, keyring_or_crypto: Keyring | EnvelopeCrypto, *, prefix: str = "intake",
                 ttl_s: int = 90 * 86400, max_cas_tries: int = 50) -> None:
        self.r = redis
        self._r: Any = redis
        self.crypto = (keyring_or_crypto if isinstance(keyring_or_crypto, EnvelopeCrypto)
                       else EnvelopeCrypto(redis, keyring_or_crypto, prefix=prefix))
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.max_cas_tries = max_cas_tries
        self.cas_conflicts = 0  # lost compare-and-sets seen by this instance (benchmark)
        self._cas = redis.register_script(_CAS_LUA)

    def key(self, tenant: str, contact: str) -> str:
        return f"{self.prefix}:ctx:{_q(tenant)}:{_q(contact)}"

    async def _read(self, tenant: str, contact: str) -> tuple[str, Context]:
        raw = await self._r.hmget(self.key(tenant, contact), ["v", "blob"])
        v, blob = raw[0], raw[1]
        version = (v.decode() if isinstance(v, bytes) else v) or "0"
        if not blob:
            return version, Context(tenant=tenant, contact=contact)
        return version, decode_context(await self.crypto.open_for(tenant, contact, KIND, blob))

    async def get(self, tenant: str, contact: str) -> Context | None:
        version, ctx = await self._read(tenant, contact)
        return None if version == "0" else ctx

    async def update(self, tenant: str, contact: str, change: Callable[[Context], bool]) -> bool:
        """Apply ``change`` (returns True if it changed anything) under compare-and-set."""
        scope = contact_scope(tenant, contact)
        for attempt in range(self.max_cas_tries):
            version, ctx = await self._read(tenant, contact)
            if not change(ctx):
                return False
            dk = await self.crypto.data_key(scope)
            assert dk is not None
            blob = self.crypto.seal_with(dk, encode_context(ctx), _context_aad(tenant, contact))
            res = int(await self._cas(keys=[self.key(tenant, contact), self.crypto.record_key(scope)],
                                      args=[version, blob, self.ttl_s, dk.key_id]))
            if res == 1:
                return True
            self.cas_conflicts += 1
            if res == -1:
                self.crypto.forget(scope)
            await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise ContextConflict(f"context CAS lost {self.max_cas_tries} times")

    async def delete(self, tenant: str, contact: str) -> bool:
        return bool(await self._r.delete(self.key(tenant, contact)))


def _context_aad(tenant: str, contact: str) -> bytes:
    from store.crypto import data_aad

    return data_aad(KIND, tenant, contact)
