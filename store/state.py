"""Redis state of the pipeline: dedup claims, rate counters, event outcomes, ready stream.

Each write that must happen once per event is one Lua script that checks a marker and writes in
the same atomic step, so a stage re-run (arq runs jobs at least once) has no second effect.
"""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis

from ghl_intake.settings import Settings
from pipeline.rate import Windows

# KEYS[1]=minute counter KEYS[2]=hour counter KEYS[3]=per-event marker
# ARGV: per_minute, per_hour, marker ttl. Returns 1 counted, 0 counted before, -1/-2 window full.
_RATE_LUA = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local m = tonumber(redis.call('GET', KEYS[1]) or '0')
local h = tonumber(redis.call('GET', KEYS[2]) or '0')
if m >= tonumber(ARGV[1]) then return -1 end
if h >= tonumber(ARGV[2]) then return -2 end
redis.call('INCR', KEYS[1]); redis.call('EXPIRE', KEYS[1], 120)
redis.call('INCR', KEYS[2]); redis.call('EXPIRE', KEYS[2], 7200)
redis.call('SET', KEYS[3], '1', 'EX', tonumber(ARGV[3]))
return 1
"""

# Terminal outcome of an event. KEYS[1]=event status hash KEYS[2]=outcome counters
# ARGV[1]=outcome ARGV[2]=ttl. 'deferred' is a flag, not terminal. A dead-lettered event that is
# later processed moves from one counter to the other; processed/duplicate are final.
_OUTCOME_LUA = """
local new = ARGV[1]
if new == 'deferred' then
  if redis.call('HSETNX', KEYS[1], 'deferred', '1') == 1 then
    redis.call('HINCRBY', KEYS[2], 'deferred', 1)
  end
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
local old = redis.call('HGET', KEYS[1], 'status')
if old == new then return 0 end
if old == 'processed' or old == 'duplicate' then return 0 end
if old == 'dead_lettered' then redis.call('HINCRBY', KEYS[2], 'dead_lettered', -1) end
redis.call('HSET', KEYS[1], 'status', new)
redis.call('HINCRBY', KEYS[2], new, 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

# KEYS[1]=marker KEYS[2]=stream; ARGV[1]=ttl ARGV[2]=maxlen ARGV[3..]=field/value pairs
_XADD_ONCE_LUA = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) == false then return 0 end
local args = {'XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*'}
for i = 3, #ARGV do args[#args + 1] = ARGV[i] end
redis.call(unpack(args))
return 1
"""


class PipelineState:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.r: Any = redis
        self.s = settings
        self._rate = redis.register_script(_RATE_LUA)
        self._outcome = redis.register_script(_OUTCOME_LUA)
        self._xadd = redis.register_script(_XADD_ONCE_LUA)

    # dedup -------------------------------------------------------------------------------
    def dedup_key(self, tenant: str, key: str) -> str:
        return self.s.key("dedup", tenant, key)

    async def claim(self, tenant: str, key: str, event_id: str) -> str | None:
        """Claim the dedup key for ``event_id``; returns None when claimed now, else the holder."""
        k = self.dedup_key(tenant, key)
        if await self.r.set(k, event_id, nx=True, ex=self.s.dedup_ttl_s):
            return None
        holder = await self.r.get(k)
        if holder is None:  # expired between the two calls: claim again
            return None if await self.r.set(k, event_id, nx=True, ex=self.s.dedup_ttl_s) else "?"
        return holder.decode() if isinstance(holder, bytes) else str(holder)

    # rate --------------------------------------------------------------------------------
    async def tier(self, tenant: str) -> str:
        raw = await self.r.hget(self.s.key("tenant", tenant), "tier")
        if raw:
            return raw.decode() if isinstance(raw, bytes) else str(raw)
        return self.s.default_tier

    async def count(self, tenant: str, event_id: str, w: Windows) -> int:
        keys = [
            self.s.key("rate", tenant, "m", str(w.minute)),
            self.s.key("rate", tenant, "h", str(w.hour)),
            self.s.key("rate", "counted", event_id),
        ]
        return int(await self._rate(keys=keys, args=[w.per_minute, w.per_hour, 2 * 3600]))

    async def usage(self, tenant: str, now: float | None = None) -> tuple[int, int]:
        t = time.time() if now is None else now
        m = await self.r.get(self.s.key("rate", tenant, "m", str(int(t // 60))))
        h = await self.r.get(self.s.key("rate", tenant, "h", str(int(t // 3600))))
        return int(m or 0), int(h or 0)

    # outcomes ----------------------------------------------------------------------------
    def event_key(self, event_id: str) -> str:
        return self.s.key("ev", event_id)

    async def outcome(self, event_id: str, outcome: str) -> bool:
        keys = [self.event_key(event_id), self.s.key("outcomes")]
        return bool(await self._outcome(keys=keys, args=[outcome, self.s.event_ttl_s]))

    async def status(self, event_id: str) -> str | None:
        raw = await self.r.hget(self.event_key(event_id), "status")
        return raw.decode() if isinstance(raw, bytes) else raw

    async def outcomes(self) -> dict[str, int]:
        raw = await self.r.hgetall(self.s.key("outcomes"))
        out = {"processed": 0, "duplicate": 0, "deferred": 0, "dead_lettered": 0}
        for k, v in raw.items():
            out[k.decode() if isinstance(k, bytes) else k] = int(v)
        return out

    # ready stream ------------------------------------------------------------------------
    async def publish_ready(self, event_id: str, fields: dict[str, bytes | str]) -> bool:
        flat: list[bytes | str | int] = [self.s.event_ttl_s, self.s.ready_stream_maxlen]
        for k, v in fields.items():
            flat += [k, v]
        keys = [self.s.key("ready", "mark", event_id), self.s.key("ready")]
        return bool(await self._xadd(keys=keys, args=flat))
