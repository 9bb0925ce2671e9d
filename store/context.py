"""Encrypted per-(tenant, contact) context with optimistic compare-and-set.

Key ``{prefix}:ctx:{tenant}:{contact}`` is a hash ``{v: version, blob: sealed context}``. A writer
reads (v, blob), merges in Python, and writes only if ``v`` is unchanged (Lua); on conflict it
re-reads and merges again, so concurrent persist workers never lose each other's updates.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from redis.asyncio import Redis

from pipeline.persist import Context, decode_context, encode_context
from store.keyring import Keyring, aad

_CAS_LUA = """
local v = redis.call('HGET', KEYS[1], 'v') or '0'
if v ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', tostring(tonumber(ARGV[1]) + 1), 'blob', ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""

KIND = "context"


class ContextConflict(Exception):
    """Too many concurrent writers on one contact; the job is retried."""


class ContextStore:
    def __init__(self, redis: Redis, keyring: Keyring, *, prefix: str = "intake", ttl_s: int = 90 * 86400,
                 max_cas_tries: int = 50) -> None:
        self.r = redis
        self.keyring = keyring
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.max_cas_tries = max_cas_tries
        self._cas = redis.register_script(_CAS_LUA)

    def key(self, tenant: str, contact: str) -> str:
        return f"{self.prefix}:ctx:{tenant}:{contact}"

    def _aad(self, tenant: str, contact: str) -> bytes:
        return aad(KIND, tenant, contact)

    async def _read(self, tenant: str, contact: str) -> tuple[str, Context]:
        raw = await self.r.hmget(self.key(tenant, contact), ["v", "blob"])
        v, blob = raw[0], raw[1]
        version = (v.decode() if isinstance(v, bytes) else v) or "0"
        if not blob:
            return version, Context(tenant=tenant, contact=contact)
        return version, decode_context(self.keyring.open(blob, self._aad(tenant, contact)))

    async def get(self, tenant: str, contact: str) -> Context | None:
        version, ctx = await self._read(tenant, contact)
        return None if version == "0" else ctx

    async def update(self, tenant: str, contact: str, change: Callable[[Context], bool]) -> bool:
        """Apply ``change`` (returns True if it changed anything) under compare-and-set."""
        for attempt in range(self.max_cas_tries):
            version, ctx = await self._read(tenant, contact)
            if not change(ctx):
                return False
            blob = self.keyring.seal(encode_context(ctx), self._aad(tenant, contact))
            if await self._cas(keys=[self.key(tenant, contact)], args=[version, blob, self.ttl_s]):
                return True
            await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise ContextConflict(f"context CAS lost {self.max_cas_tries} times")
