"""The stage logic in pipeline/ driven directly, with plain in-memory ports (no arq, no Redis)."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from pipeline import parse, persist, rate
from pipeline.models import Envelope, StageJob, pack, unpack
from pipeline.pseudonym import placeholder, pseudonym, pseudonymize_id
from pipeline.retry import PermanentError, backoff_s, is_transient
from pipeline.stages import Deps, dedup, envelope_aad, persist_event, rate_limit, stage_aad
from store.keyring import DecryptError, Keyring, aad

FIXTURES = Path(__file__).parent / "fixtures" / "ghl"


class MemState:
    """Same contract as store.state.PipelineState, in a dict."""

    def __init__(self, tier: str = "starter") -> None:
        self.claims: dict[tuple[str, str], str] = {}
        self.counted: set[str] = set()
        self.windows: dict[tuple[str, str, int], int] = {}
        self.ready: dict[str, dict[str, bytes | str]] = {}
        self._tier = tier

    async def claim(self, tenant: str, key: str, event_id: str) -> str | None:
        holder = self.claims.setdefault((tenant, key), event_id)
        return None if holder == event_id else holder

    async def tier(self, tenant: str) -> str:
        return self._tier

    async def count(self, tenant: str, event_id: str, w: rate.Windows) -> int:
        if event_id in self.counted:
            return 0
        m = self.windows.get((tenant, "m", w.minute), 0)
        h = self.windows.get((tenant, "h", w.hour), 0)
        if m >= w.per_minute:
            return -1
        if h >= w.per_hour:
            return -2
        self.windows[(tenant, "m", w.minute)] = m + 1
        self.windows[(tenant, "h", w.hour)] = h + 1
        self.counted.add(event_id)
        return 1

    async def publish_ready(self, event_id: str, fields: dict[str, bytes | str]) -> bool:
        if event_id in self.ready:
            return False
        self.ready[event_id] = fields
        return True


class MemContexts:
    def __init__(self) -> None:
        self.ctx: dict[tuple[str, str], persist.Context] = {}

    async def update(self, tenant: str, contact: str, change: Callable[[persist.Context], bool]) -> bool:
        c = self.ctx.setdefault((tenant, contact), persist.Context(tenant=tenant, contact=contact))
        return change(c)


@pytest.fixture
def deps() -> Deps:
    return Deps(sealer=Keyring([("k1", os.urandom(32))]), pseudonym_key=os.urandom(32), state=MemState(),
                contexts=MemContexts(), context_max_items=5, clock=lambda: 1_700_000_000.0)


def envelope(deps: Deps, body: bytes, event_id: str = "e1", hint: str = "") -> Envelope:
    return Envelope(event_id=event_id, received_at=1.0, scheme="test", client="127.0.0.1",
                    body=deps.sealer.seal(body, envelope_aad(event_id)), tenant_hint=hint)


# parse -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_every_fixture_parses_with_a_tenant(path: Path) -> None:
    meta, obj = parse.event_meta(path.read_bytes())
    assert meta.tenant and meta.tenant != "_unknown", path.name
    assert meta.event_type
    assert meta.dedup_key.startswith(("w:", "h:"))


def test_missing_or_odd_type_flows_as_unknown_or_raw() -> None:
    meta, _ = parse.event_meta(b'{"locationId": "loc1", "contactId": "c1"}')
    assert meta.event_type == "Unknown"
    meta, _ = parse.event_meta(b'{"locationId": "loc1", "type": 5}')
    assert meta.event_type == "Unknown"
    # a type GHL does not document is routed as Unknown: free text from the payload never reaches the
    # audit chain (the event's own `type` field flows on and is redacted with the rest)
    meta, obj = parse.event_meta(b'{"locationId": "loc1", "type": "Brand<New>Event"}')
    assert meta.event_type == "Unknown" and obj["type"] == "Brand<New>Event"
    meta, _ = parse.event_meta(b'{"locationId": "loc1", "type": "Quinta Marbleworth 212-555-0142"}')
    assert meta.event_type == "Unknown"
    for path in sorted(FIXTURES.glob("*.json")):  # every documented event name is known
        name = path.stem.split("__")[0]
        assert name == "WorkflowWebhook" or name in parse.KNOWN_EVENT_TYPES, name


def test_a_routing_field_of_the_wrong_type_does_not_lose_the_others() -> None:
    for odd in ('"type": 7', '"contactId": {}', '"webhookId": {"a": 1}', '"companyId": []'):
        meta, _ = parse.event_meta(('{"locationId": "LocGamma03", "contactId": "c9", "webhookId": "w-1", '
                                    + odd + "}").encode())
        assert meta.tenant == "LocGamma03", odd
    meta, _ = parse.event_meta(b'{"locationId": "LocGamma03", "type": 7, "contactId": "c9", "webhookId": "w-1"}')
    assert (meta.contact, meta.dedup_key, meta.event_type) == ("c9", "w:w-1", "Unknown")


def test_events_without_a_trusted_location_do_not_share_webhook_ids() -> None:
    a, _ = parse.event_meta(b'{"locationId": "../one", "webhookId": "w-same", "body": "one"}')
    b, _ = parse.event_meta(b'{"locationId": "../two", "webhookId": "w-same", "body": "two"}')
    assert a.tenant == b.tenant == "_unknown" and a.dedup_key != b.dedup_key
    again, _ = parse.event_meta(b'{"locationId": "../one", "webhookId": "w-same", "body": "one"}')
    assert again.dedup_key == a.dedup_key  # the same payload sent again is still a duplicate


@pytest.mark.parametrize("depth", [65, 300, 2000, 100_000])
def test_deeply_nested_bodies_are_a_clear_parse_error(depth: int) -> None:
    body = b'{"locationId": "loc1", "x": ' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(parse.ParseError, match="nests deeper than 64 levels"):
        parse.event_meta(body)
    ok = b'{"locationId": "loc1", "x": ' + b"[" * 60 + b"]" * 60 + b"}"
    assert parse.event_meta(ok)[0].tenant == "loc1"


def test_workflow_payload_routes_by_location_object_and_hashes() -> None:
    body = (FIXTURES / "WorkflowWebhook__appointment_trigger.json").read_bytes()
    meta, _ = parse.event_meta(body)
    assert meta.shape == "workflow"
    assert meta.tenant == "jfjNQcRLiD0GRtYG7lxI"
    assert meta.contact == "dCU1fwDXOEU4EzHJgpCU"
    assert meta.dedup_key.startswith("h:")
    # the same payload re-sent with a new volatile timestamp keeps its key; a real change does not
    obj = json.loads(body)
    assert parse.event_meta(orjson.dumps({**obj, "timestamp": "2026-01-01T00:00:00Z"}))[0].dedup_key == meta.dedup_key
    assert parse.event_meta(orjson.dumps({**obj, "tags": "hot"}))[0].dedup_key != meta.dedup_key


def test_webhook_id_is_the_dedup_key() -> None:
    meta, _ = parse.event_meta(b'{"locationId":"loc1","webhookId":"abc-123","timestamp":"x"}')
    assert meta.dedup_key == "w:abc-123"


@pytest.mark.parametrize("body", [b"not json", b"[1,2]", b'"str"', b"", b"{", b"\xff\xfe"])
def test_non_object_bodies_are_parse_errors(body: bytes) -> None:
    with pytest.raises(parse.ParseError):
        parse.event_meta(body)


def test_tenant_endpoint_hint_must_match_payload() -> None:
    assert parse.event_meta(b'{"type":"X"}', "locA")[0].tenant == "locA"
    with pytest.raises(parse.ParseError):
        parse.event_meta(b'{"locationId":"locB"}', "locA")


# dedup -----------------------------------------------------------------------------------------

async def test_dedup_new_then_duplicate_and_rerun_is_not_duplicate(deps: Deps) -> None:
    body = b'{"type":"ContactCreate","locationId":"loc1","contactId":"c1","webhookId":"w1"}'
    h1 = await dedup(envelope(deps, body, "e1"), deps)
    assert h1.next_stage == "rate" and h1.job_id == "rate:e1" and h1.outcome is None
    again = await dedup(envelope(deps, body, "e1"), deps)  # arq re-runs the same job
    assert again.next_stage == "rate" and again.job_id == "rate:e1"
    dup = await dedup(envelope(deps, body, "e2"), deps)  # GHL retry: a new event, same webhookId
    assert dup.outcome == "duplicate" and dup.next_stage is None
    assert [a.outcome for a in dup.audits] == ["duplicate"]
    job = unpack(h1.job, StageJob)
    assert deps.sealer.open(job.data, stage_aad("raw", "loc1", "e1")) == body


async def test_dedup_unparseable_and_undecryptable_are_permanent(deps: Deps) -> None:
    with pytest.raises(PermanentError, match="not JSON"):
        await dedup(envelope(deps, b"<xml/>"), deps)
    env = envelope(deps, b"{}")
    forged = Envelope(event_id="other", received_at=1, scheme="t", client="c", body=env.body)
    with pytest.raises(PermanentError, match="does not decrypt"):
        await dedup(forged, deps)


# rate ------------------------------------------------------------------------------------------

def stage_job(deps: Deps, event_id: str, tenant: str = "loc1") -> StageJob:
    return StageJob(event_id=event_id, tenant=tenant, contact="c1", event_type="InboundMessage",
                    received_at=1.0, data=deps.sealer.seal(b"{}", stage_aad("raw", tenant, event_id)))


async def test_rate_counts_once_and_defers_over_budget(deps: Deps) -> None:
    per_minute = rate.TIERS["starter"][0]
    for i in range(per_minute):
        h = await rate_limit(stage_job(deps, f"e{i}"), deps)
        assert h.next_stage == "redact"
    # re-running a counted event does not count it again
    assert (await rate_limit(stage_job(deps, "e0"), deps)).next_stage == "redact"
    over = await rate_limit(stage_job(deps, "late"), deps)
    assert over.next_stage == "rate" and over.outcome == "deferred" and over.job_id == "rate:late:d1"
    assert 0 < over.defer_s <= 91
    again = await rate_limit(unpack(over.job, StageJob), deps)
    assert again.job_id == "rate:late:d2"
    # another tenant is unaffected
    assert (await rate_limit(stage_job(deps, "x", tenant="loc2"), deps)).next_stage == "redact"


def test_rate_decision_windows() -> None:
    rng = random.Random(1)
    assert rate.decide(1, 100.0).allowed and rate.decide(0, 100.0).allowed
    d = rate.decide(-1, 125.0, rng)
    assert not d.allowed and d.window == "minute" and 55 <= d.defer_s <= 85
    d = rate.decide(-2, 3600 * 5 + 10, rng)
    assert d.window == "hour" and 3590 <= d.defer_s <= 3590 + 1800
    w = rate.windows("enterprise", 7200.0)
    assert (w.per_minute, w.per_hour, w.minute, w.hour) == (300, 20_000, 120, 2)
    with pytest.raises(ValueError):
        rate.decide(7, 0.0)


# persist ---------------------------------------------------------------------------------------

async def test_persist_appends_once_and_trims(deps: Deps) -> None:
    contexts = deps.contexts
    assert isinstance(contexts, MemContexts)
    for i in range(8):
        red = orjson.dumps({"type": "InboundMessage", "body": f"msg {i}", "secret": "dropped"})
        job = StageJob(event_id=f"e{i}", tenant="loc1", contact="c1", event_type="InboundMessage",
                       received_at=float(i), data=deps.sealer.seal(red, stage_aad("redacted", "loc1", f"e{i}")))
        h = await persist_event(job, deps)
        assert h.outcome == "processed"
        await persist_event(job, deps)  # re-run: no second append, no second ready entry
    ctx = contexts.ctx[("loc1", "c1")]
    assert [e.event_id for e in ctx.entries] == ["e3", "e4", "e5", "e6", "e7"]
    assert all("secret" not in e.fields for e in ctx.entries)
    # an event trimmed out of the window is still remembered as merged
    old = persist.entry_from_event("e0", "X", 0.0, {}, {})
    assert persist.merge(ctx, old, 5) is False
    assert len(deps.state.ready) == 8  # type: ignore[attr-defined]


def test_context_codec_roundtrip() -> None:
    ctx = persist.Context(tenant="t", contact="c")
    persist.merge(ctx, persist.entry_from_event("e", "T", 1.0, {"body": "<PERSON:ab>"}, {"PERSON": 1}), 3)
    assert persist.decode_context(persist.encode_context(ctx)) == ctx


# crypto, pseudonyms, retry ---------------------------------------------------------------------

def test_keyring_binds_associated_data_and_rotates() -> None:
    old, new = os.urandom(32), os.urandom(32)
    k1 = Keyring([("k1", old)])
    blob = k1.seal(b"hello", aad("context", "locA", "c1"))
    both = Keyring([("k2", new), ("k1", old)])
    assert both.open(blob, aad("context", "locA", "c1")) == b"hello"
    assert both.key_id_of(both.seal(b"x", b"")) == "k2"
    with pytest.raises(DecryptError):
        both.open(blob, aad("context", "locB", "c1"))  # copied to another tenant
    with pytest.raises(DecryptError):
        Keyring([("k2", new)]).open(blob, aad("context", "locA", "c1"))
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(DecryptError):
        k1.open(tampered, aad("context", "locA", "c1"))


def test_pseudonyms_are_stable_within_a_tenant_only() -> None:
    key = os.urandom(32)
    assert placeholder(key, "t1", "PHONE_NUMBER", "(512) 555-0147") == placeholder(key, "t1", "PHONE_NUMBER", "512.555.0147")
    assert pseudonym(key, "t1", "EMAIL_ADDRESS", "A@Example.org") == pseudonym(key, "t1", "EMAIL_ADDRESS", "a@example.org")
    assert pseudonym(key, "t1", "PERSON", "Dana") != pseudonym(key, "t2", "PERSON", "Dana")
    assert pseudonymize_id(key, "t1", "c1") != pseudonymize_id(os.urandom(32), "t1", "c1")


def test_retry_classification_and_backoff() -> None:
    import redis.exceptions

    assert is_transient(redis.exceptions.ConnectionError()) and is_transient(TimeoutError())
    assert not is_transient(PermanentError("x")) and not is_transient(ValueError())
    rng = random.Random(3)
    delays = [backoff_s(n, 0.5, cap_s=10, rng=rng) for n in range(1, 12)]
    assert all(0.5 <= d <= 10 for d in delays)
    assert max(delays[6:]) > max(delays[:2])


def test_job_payloads_are_msgpack_not_pickle() -> None:
    from workers.base import job_deserializer, job_serializer

    env = Envelope(event_id="e", received_at=1.0, scheme="s", client="c", body=b"\x00\x01")
    data = job_serializer({"t": 1, "f": "dedup", "a": [pack(env)], "k": {}, "et": 1})
    assert not data.startswith(b"\x80")  # pickle protocol marker
    assert unpack(job_deserializer(data)["a"][0], Envelope) == env
    import pickle

    with pytest.raises(Exception):  # noqa: B017 - a pickle is not a job
        job_deserializer(pickle.dumps({"f": "dedup"}))
