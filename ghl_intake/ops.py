"""Operator actions shared by the CLI (and later the console/API): replay, stats."""

from __future__ import annotations

from dataclasses import dataclass

from arq.connections import ArqRedis

from ghl_intake.settings import Settings
from pipeline.models import Envelope, pack, unpack
from pipeline.stages import envelope_aad
from store.dlq import DeadLetterStore
from store.keyring import Keyring
from store.state import PipelineState
from workers.base import enqueue, queue_name


@dataclass
class ReplayResult:
    dlq_id: str
    replayed: bool
    stage: str = ""
    event_id: str = ""
    message: str = ""


async def replay(pool: ArqRedis, settings: Settings, keyring: Keyring, dlq_id: str, *,
                 body_override: bytes | None = None) -> ReplayResult:
    """Re-enqueue a dead letter at the stage that failed; once per dead-lettering.

    ``body_override`` (dedup-stage entries only) replaces the stored body with an operator's
    corrected copy, sealed under the same event id; the caller audits who did it.
    """
    dlq = DeadLetterStore(pool, keyring, prefix=settings.key_prefix)
    entry = await dlq.get(dlq_id)
    if entry is None:
        return ReplayResult(dlq_id, False, message="no such dead letter")
    if body_override is not None and entry.stage != "dedup":
        return ReplayResult(dlq_id, False, entry.stage, entry.event_id,
                            "a corrected body can only replace a dedup-stage entry")
    payload = await dlq.job(dlq_id)
    n = await dlq.claim_replay(dlq_id)
    if n == 0:
        return ReplayResult(dlq_id, False, entry.stage, entry.event_id, f"not replayable (state {entry.state})")
    if body_override is not None:
        env = unpack(payload, Envelope)
        payload = pack(Envelope(event_id=env.event_id, received_at=env.received_at, scheme=env.scheme + "+corrected",
                                client=env.client, body=keyring.seal(body_override, envelope_aad(env.event_id)),
                                tenant_hint=env.tenant_hint))
    await enqueue(pool, settings, entry.stage, payload, f"{entry.stage}:{entry.event_id}:r{n}")
    return ReplayResult(dlq_id, True, entry.stage, entry.event_id, f"replay #{n} enqueued")


async def stats(pool: ArqRedis, settings: Settings) -> dict[str, dict[str, int]]:
    from pipeline.models import STAGES

    queues = {s: int(await pool.zcard(queue_name(settings, s))) for s in STAGES}
    outcomes = await PipelineState(pool, settings).outcomes()
    return {"queues": queues, "outcomes": outcomes}
