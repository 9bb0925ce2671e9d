"""Dead-letter store: failed jobs kept encrypted with stage, reason and attempts, for replay.

One entry per (event, stage): ``{prefix}:dlq:{id}`` hash, indexed by time in ``{prefix}:dlq:idx``.
The job payload is sealed (AAD binds it to the entry id); the reason is an error class and a
message written by our code, never payload values.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from store.keyring import Keyring, aad

KIND = "dlq"

# KEYS[1]=entry KEYS[2]=index; ARGV: id, stage, event_id, tenant, reason, error, job blob, now
_WRITE_LUA = """
local existed = redis.call('EXISTS', KEYS[1])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'stage', ARGV[2], 'event_id', ARGV[3], 'tenant', ARGV[4],
  'reason', ARGV[5], 'error', ARGV[6], 'job', ARGV[7], 'updated_at', ARGV[8], 'state', 'dead')
redis.call('HINCRBY', KEYS[1], 'attempts', tonumber(ARGV[9]))
if existed == 0 then redis.call('HSET', KEYS[1], 'created_at', ARGV[8]) end
redis.call('ZADD', KEYS[2], ARGV[8], ARGV[1])
return existed
"""

# KEYS[1]=entry; ARGV[1]=now. Marks an entry replayed once; returns the replay number or 0.
_CLAIM_REPLAY_LUA = """
if redis.call('HGET', KEYS[1], 'state') ~= 'dead' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'replayed', 'replayed_at', ARGV[1])
return redis.call('HINCRBY', KEYS[1], 'replays', 1)
"""


@dataclass
class DeadLetter:
    id: str
    stage: str
    event_id: str
    tenant: str
    reason: str  # "permanent" or "retries_exhausted"
    error: str
    attempts: int
    state: str  # "dead" or "replayed"
    created_at: float
    updated_at: float
    replays: int


def entry_id(event_id: str, stage: str) -> str:
    return hashlib.sha256(f"{event_id}\x1f{stage}".encode()).hexdigest()[:16]


def _s(v: bytes | str | None) -> str:
    if v is None:
        return ""
    return v.decode() if isinstance(v, bytes) else v


class DeadLetterStore:
    def __init__(self, redis: Redis, keyring: Keyring, *, prefix: str = "intake") -> None:
        self.r = redis
        self.keyring = keyring
        self.prefix = prefix
        self._write = redis.register_script(_WRITE_LUA)
        self._claim = redis.register_script(_CLAIM_REPLAY_LUA)

    def key(self, dlq_id: str) -> str:
        return f"{self.prefix}:dlq:{dlq_id}"

    @property
    def index(self) -> str:
        return f"{self.prefix}:dlq:idx"

    async def write(self, *, stage: str, event_id: str, tenant: str, reason: str, error: str, job: bytes,
                    attempts: int = 1) -> str:
        dlq_id = entry_id(event_id, stage)
        blob = self.keyring.seal(job, aad(KIND, dlq_id))
        await self._write(keys=[self.key(dlq_id), self.index],
                          args=[dlq_id, stage, event_id, tenant, reason, error[:500], blob, time.time(), attempts])
        return dlq_id

    async def get(self, dlq_id: str) -> DeadLetter | None:
        raw = await self.r.hgetall(self.key(dlq_id))
        if not raw:
            return None
        d = {_s(k): v for k, v in raw.items()}
        return DeadLetter(
            id=_s(d.get("id")), stage=_s(d.get("stage")), event_id=_s(d.get("event_id")),
            tenant=_s(d.get("tenant")), reason=_s(d.get("reason")), error=_s(d.get("error")),
            attempts=int(d.get("attempts") or 0), state=_s(d.get("state")),
            created_at=float(d.get("created_at") or 0), updated_at=float(d.get("updated_at") or 0),
            replays=int(d.get("replays") or 0),
        )

    async def job(self, dlq_id: str) -> bytes:
        blob = await self.r.hget(self.key(dlq_id), "job")
        if blob is None:
            raise KeyError(dlq_id)
        return self.keyring.open(blob, aad(KIND, dlq_id))

    async def list(self, *, state: str | None = "dead", stage: str | None = None, tenant: str | None = None,
                   since: float | None = None, limit: int = 1000) -> list[DeadLetter]:
        ids = await self.r.zrangebyscore(self.index, since if since is not None else "-inf", "+inf")
        out: list[DeadLetter] = []
        for raw_id in ids:
            dl = await self.get(_s(raw_id))
            if dl is None:
                continue
            if state and dl.state != state:
                continue
            if stage and dl.stage != stage:
                continue
            if tenant and dl.tenant != tenant:
                continue
            out.append(dl)
            if len(out) >= limit:
                break
        return out

    async def claim_replay(self, dlq_id: str) -> int:
        """Mark the entry replayed; 0 when it is not dead (already replayed, or unknown)."""
        return int(await self._claim(keys=[self.key(dlq_id)], args=[time.time()]))

    async def depth(self) -> int:
        n = 0
        for dl in await self.list(limit=10**9):
            n += dl.state == "dead"
        return n

    async def purge(self, dlq_id: str) -> bool:
        removed = await self.r.delete(self.key(dlq_id))
        await self.r.zrem(self.index, dlq_id)
        return bool(removed)
