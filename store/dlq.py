"""Dead-letter store: failed jobs kept encrypted with stage, reason and attempts, for replay.

One entry per (event, stage): ``{prefix}:dlq:{id}`` hash, indexed by time in ``{prefix}:dlq:idx``.
The job payload is sealed (AAD binds it to the entry id); the reason is an error class and a
message written by our code, never payload values. Entries have no TTL: they stay until an
operator purges them (with Redis AOF on, they survive restarts).

States: ``dead`` (waiting for an operator), ``replayed`` (re-enqueued; if it fails again the same
entry becomes ``dead`` again with ``replays`` kept, so the next replay gets a new job id).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis

from store.keyring import Keyring, aad

KIND = "dlq"

# KEYS[1]=entry KEYS[2]=index; ARGV: id, stage, event_id, tenant, reason, error, job blob, now, tries of
# this run, run (job) id. 'attempts' sums the tries of every run (a replay is a new run); a re-run of
# the same dead-lettering (worker killed after writing) does not count twice.
_WRITE_LUA = """
local existed = redis.call('EXISTS', KEYS[1])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'stage', ARGV[2], 'event_id', ARGV[3], 'tenant', ARGV[4],
  'reason', ARGV[5], 'error', ARGV[6], 'job', ARGV[7], 'updated_at', ARGV[8], 'state', 'dead')
local tries = tonumber(ARGV[9])
local prev = tonumber(redis.call('HGET', KEYS[1], 'tries:' .. ARGV[10]) or '0')
if tries > prev then
  redis.call('HSET', KEYS[1], 'tries:' .. ARGV[10], tostring(tries))
  redis.call('HINCRBY', KEYS[1], 'attempts', tries - prev)
end
if existed == 0 then redis.call('HSET', KEYS[1], 'created_at', ARGV[8]) end
redis.call('ZADD', KEYS[2], ARGV[8], ARGV[1])
return existed
"""

# KEYS[1]=entry; ARGV[1]=now, ARGV[2]=replay number the caller enqueued. Marks a dead entry
# replayed once per dead-lettering; returns the replay number, or 0 (not dead / someone else did).
_CLAIM_REPLAY_LUA = """
if redis.call('HGET', KEYS[1], 'state') ~= 'dead' then return 0 end
local n = tonumber(redis.call('HGET', KEYS[1], 'replays') or '0') + 1
if n ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'state', 'replayed', 'replayed_at', ARGV[1], 'replays', tostring(n))
return n
"""

_FIELDS = ("id", "stage", "event_id", "tenant", "reason", "error", "attempts", "state", "created_at",
           "updated_at", "replays")


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


ENTRY_ID_CHARS = frozenset("0123456789abcdef")


def is_entry_id(dlq_id: str) -> bool:
    """The shape ``entry_id`` makes (16 lower-case hex): anything else, ``idx`` included, names no entry."""
    return len(dlq_id) == 16 and ENTRY_ID_CHARS.issuperset(dlq_id)


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
                    attempts: int = 1, run_id: str = "") -> str:
        dlq_id = entry_id(event_id, stage)
        blob = self.keyring.seal(job, aad(KIND, dlq_id))
        await self._write(keys=[self.key(dlq_id), self.index],
                          args=[dlq_id, stage, event_id, tenant, reason, error[:500], blob, time.time(), attempts,
                                run_id or f"{stage}:{event_id}"])
        return dlq_id

    @staticmethod
    def _entry(values: list[Any]) -> DeadLetter | None:
        d = dict(zip(_FIELDS, values, strict=True))
        if not d.get("id"):
            return None
        return DeadLetter(
            id=_s(d.get("id")), stage=_s(d.get("stage")), event_id=_s(d.get("event_id")),
            tenant=_s(d.get("tenant")), reason=_s(d.get("reason")), error=_s(d.get("error")),
            attempts=int(d.get("attempts") or 0), state=_s(d.get("state")),
            created_at=float(d.get("created_at") or 0), updated_at=float(d.get("updated_at") or 0),
            replays=int(d.get("replays") or 0),
        )

    async def get(self, dlq_id: str) -> DeadLetter | None:
        if not is_entry_id(dlq_id):
            return None
        r: Any = self.r
        return self._entry(await r.hmget(self.key(dlq_id), list(_FIELDS)))

    async def job(self, dlq_id: str) -> bytes:
        if not is_entry_id(dlq_id):
            raise KeyError(dlq_id)
        r: Any = self.r
        blob = await r.hget(self.key(dlq_id), "job")
        if blob is None:
            raise KeyError(dlq_id)
        return self.keyring.open(blob, aad(KIND, dlq_id))

    async def list(self, *, state: str | None = "dead", stage: str | None = None, tenant: str | None = None,
                   reason: str | None = None, since: float | None = None, limit: int = 1000,
                   page: int = 500) -> list[DeadLetter]:
        """Entries updated at or after ``since``, oldest first, filtered; read in pipelined pages."""
        r: Any = self.r
        ids = await r.zrangebyscore(self.index, since if since is not None else "-inf", "+inf")
        out: list[DeadLetter] = []
        for start in range(0, len(ids), page):
            chunk = ids[start:start + page]
            async with r.pipeline(transaction=False) as pipe:
                for raw_id in chunk:
                    pipe.hmget(self.key(_s(raw_id)), list(_FIELDS))
                rows = await pipe.execute()
            for values in rows:
                dl = self._entry(values)
                if dl is None:
                    continue
                if (state and dl.state != state) or (stage and dl.stage != stage) or \
                        (tenant and dl.tenant != tenant) or (reason and reason not in (dl.reason, dl.error.split(":")[0])):
                    continue
                out.append(dl)
                if len(out) >= limit:
                    return out
        return out

    async def claim_replay(self, dlq_id: str, n: int) -> int:
        """Mark the entry replayed as replay number ``n``; 0 when it is not dead or ``n`` is stale."""
        if not is_entry_id(dlq_id):
            return 0
        r: Any = self._claim
        return int(await r(keys=[self.key(dlq_id)], args=[time.time(), n]))

    async def depth(self) -> int:
        return len(await self.list(limit=10**9))

    async def counts(self) -> dict[str, dict[str, int]]:
        """Dead (not yet replayed) entries by stage and by reason."""
        by_stage: dict[str, int] = {}
        by_reason: dict[str, int] = {}
        for dl in await self.list(limit=10**9):
            by_stage[dl.stage] = by_stage.get(dl.stage, 0) + 1
            by_reason[dl.reason] = by_reason.get(dl.reason, 0) + 1
        return {"by_stage": by_stage, "by_reason": by_reason}

    async def purge(self, dlq_id: str) -> bool:
        if not is_entry_id(dlq_id):  # never the index key itself
            return False
        r: Any = self.r
        async with r.pipeline(transaction=True) as pipe:
            pipe.delete(self.key(dlq_id))
            pipe.zrem(self.index, dlq_id)
            removed, _ = await pipe.execute()
        return bool(removed)


def as_dict(dl: DeadLetter) -> dict[str, Any]:
    return asdict(dl)
