"""Pure audit functions: canonical bytes, hashing, chain + checkpoint verification, mutation property."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.audit import (
    AuditRecord,
    Checkpoint,
    build_record,
    checkpoint_signature_ok,
    decode_line,
    decode_record,
    export_filename,
    genesis_hash,
    key_id,
    make_checkpoint,
    public_key_from_pem,
    record_hash_ok,
    verify_chain,
    verify_export_lines,
)
from store.audit import public_key_pem

TENANT = "loc-Pure1"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUB = KEY.public_key()
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
N = 1000
EVERY = 100


def _ts(i: int) -> str:
    return f"2026-12-03T10:{(i // 60) % 60:02d}:{i % 60:02d}.{i:06d}Z"


def build_chain(n: int = N, every: int = EVERY, tenant: str = TENANT) -> tuple[list[bytes], list[bytes]]:
    lines: list[bytes] = []
    ckpts: list[bytes] = []
    prev = genesis_hash(tenant)
    for seq in range(1, n + 1):
        rec, line = build_record(
            tenant, seq, prev, event_id=f"ev-{seq // 3}", stage=("dedup", "rate", "redact")[seq % 3],
            outcome="processed", contact=f"{seq:012x}", counts={"EMAIL": seq % 4, "PHONE": 1},
            detail={"tier": "starter"}, ts=_ts(seq),
        )
        lines.append(line)
        prev = rec.hash
        if seq % every == 0:
            ckpts.append(make_checkpoint(tenant, seq, rec.hash, KEY, ts=_ts(seq))[1])
    return lines, ckpts


CHAIN, CKPTS = build_chain()
HASHES = [decode_record(x).hash for x in CHAIN]


# ---------------------------------------------------------------------------------------------- unit


def test_record_bytes_are_canonical_and_hash_is_over_them() -> None:
    rec, line = build_record(TENANT, 1, genesis_hash(TENANT), event_id="e1", stage="dedup", outcome="processed",
                             counts={"b": 2, "a": 1}, detail={"z": "1", "k": "2"}, ts="2026-12-03T00:00:00.000000Z")
    assert b" " not in line and b"\n" not in line
    obj = json.loads(line)
    body = {k: v for k, v in obj.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert line == canonical[:-1] + b',"hash":"' + obj["hash"].encode() + b'"}'
    assert hashlib.sha256(canonical).hexdigest() == rec.hash == obj["hash"]
    assert list(obj["counts"]) == ["a", "b"]
    assert obj["prev"] == genesis_hash(TENANT) and obj["seq"] == 1 and obj["type"] == "rec"
    assert record_hash_ok(line) == (True, rec.hash)
    assert decode_record(line) == rec


def test_genesis_binds_tenant() -> None:
    assert genesis_hash("a") != genesis_hash("b")
    lines, _ = build_chain(5, 5, tenant="a")
    rep = verify_chain("b", lines)
    assert not rep.ok and rep.first_bad_seq == 1


def test_intact_chain_verifies_signed() -> None:
    rep = verify_chain(TENANT, CHAIN, CKPTS, [PUB])
    assert rep.ok and rep.signed and rep.records == N and rep.first_bad_seq is None
    assert rep.latest_checkpoint_seq == N and rep.checkpoints == N // EVERY


def test_no_checkpoints_is_unsigned() -> None:
    rep = verify_chain(TENANT, CHAIN[:10])
    assert rep.ok and not rep.signed and "unsigned" in rep.reason


def test_checkpoints_without_public_key_are_compared_not_signature_checked() -> None:
    rep = verify_chain(TENANT, CHAIN, CKPTS)
    assert rep.ok and not rep.signed and "not checked" in rep.reason


def test_empty_chain_ok() -> None:
    rep = verify_chain(TENANT, [])
    assert rep.ok and rep.records == 0


def test_changed_record_named() -> None:
    lines = list(CHAIN)
    lines[41] = lines[41].replace(b'"outcome":"processed"', b'"outcome":"duplicate"')
    rep = verify_chain(TENANT, lines, CKPTS, [PUB])
    assert not rep.ok and rep.first_bad_seq == 42 and "changed" in rep.reason


def test_deleted_record_named() -> None:
    lines = CHAIN[:9] + CHAIN[10:]
    rep = verify_chain(TENANT, lines, CKPTS, [PUB])
    assert not rep.ok and rep.first_bad_seq == 10 and "missing" in rep.reason


def test_reordered_named() -> None:
    lines = list(CHAIN)
    lines[5], lines[6] = lines[6], lines[5]
    rep = verify_chain(TENANT, lines, CKPTS, [PUB])
    assert not rep.ok and rep.first_bad_seq == 6


def test_truncated_tail_against_checkpoint() -> None:
    rep = verify_chain(TENANT, CHAIN[:950], CKPTS, [PUB])
    assert not rep.ok and rep.first_bad_seq == 951 and "truncated" in rep.reason


def test_tail_after_latest_checkpoint_is_reported() -> None:
    rep = verify_chain(TENANT, CHAIN[:950], CKPTS[:9], [PUB])
    assert rep.ok and "50 newest records after the latest checkpoint" in rep.reason


def _rewrite_from(lines: list[bytes], start: int, outcome: str = "dead_lettered") -> list[bytes]:
    """Rewrite records start.. (0-based) consistently, recomputing every hash (attacker without key)."""
    out = list(lines[:start])
    prev = decode_record(out[-1]).hash if out else genesis_hash(TENANT)
    for line in lines[start:]:
        r = decode_record(line)
        nr, nl = build_record(TENANT, r.seq, prev, event_id=r.event_id, stage=r.stage, outcome=outcome,
                              actor=r.actor, contact=r.contact, counts=r.counts, detail=r.detail, ts=r.ts)
        out.append(nl)
        prev = nr.hash
    return out


def test_rewritten_chain_fails_checkpoint() -> None:
    lines = _rewrite_from(CHAIN, 500)
    assert verify_chain(TENANT, lines).ok  # internally consistent ...
    rep = verify_chain(TENANT, lines, CKPTS, [PUB])  # ... but not what was signed
    assert not rep.ok and rep.first_bad_seq == 501 and "rewritten" in rep.reason


def test_forged_head_fails_signature() -> None:
    lines = _rewrite_from(CHAIN, 0)
    forged = [make_checkpoint(TENANT, s, decode_record(lines[s - 1]).hash, OTHER_KEY, ts=_ts(s))[1]
              for s in range(EVERY, N + 1, EVERY)]
    rep = verify_chain(TENANT, lines, forged, [PUB])
    assert not rep.ok and "unknown key" in rep.reason
    # same key id, signature not matching the new head
    tampered = []
    for c in CKPTS:
        ck = decode_line(c)
        assert isinstance(ck, Checkpoint)
        tampered.append(Checkpoint(tenant=ck.tenant, seq=ck.seq, head=decode_record(lines[ck.seq - 1]).hash,
                                   ts=ck.ts, key=ck.key, sig=ck.sig))
    rep = verify_chain(TENANT, lines, tampered, [PUB])
    assert not rep.ok and "invalid signature" in rep.reason and rep.first_bad_seq == EVERY


def test_checkpoint_signature_helpers() -> None:
    ck, line = make_checkpoint(TENANT, 3, "ab" * 32, KEY, ts="2026-12-03T00:00:00.000000Z")
    assert checkpoint_signature_ok(ck, [PUB]) == (True, "")
    assert checkpoint_signature_ok(ck, [OTHER_KEY.public_key()])[0] is False
    assert ck.key == key_id(PUB)
    assert decode_line(line) == ck
    unsigned, _ = make_checkpoint(TENANT, 3, "ab" * 32, None)
    assert unsigned.sig == "" and checkpoint_signature_ok(unsigned, [PUB]) == (False, "unsigned")


def test_public_key_pem_roundtrip() -> None:
    pem = public_key_pem(KEY)
    assert "PUBLIC KEY" in pem and "PRIVATE" not in pem
    assert key_id(public_key_from_pem(pem)) == key_id(PUB)


def test_export_lines_any_order_with_duplicates_and_partial_day() -> None:
    lines = CHAIN + CKPTS
    shuffled = list(reversed(lines)) + lines[:50]  # out of order, some lines twice
    [rep] = verify_export_lines(shuffled, [PUB])
    assert rep.ok and rep.signed and rep.records == N
    # one "day": records 301..600 plus the checkpoints written that day
    day = CHAIN[300:600] + CKPTS[2:6]
    assert not verify_export_lines(day, [PUB])[0].ok  # a full verification needs seq 1
    [rep] = verify_export_lines(day, [PUB], partial=True)
    assert rep.ok and rep.first_seq == 301 and "seq 301..600" in rep.reason
    # a conflicting second copy of a record is a break
    evil = CHAIN[7].replace(b'"outcome":"processed"', b'"outcome":"duplicate"')
    [rep] = verify_export_lines([*lines, evil], [PUB])
    assert not rep.ok and rep.first_bad_seq == 8


def test_export_filename() -> None:
    assert export_filename("2026-12-03T23:59:59.999999Z") == "audit_20261203.jsonl"


# ---------------------------------------------------------------------------------------------- property

KINDS = ("flip", "change", "change_rehash", "delete", "insert", "duplicate", "reorder", "truncate",
         "rewrite", "forge_head", "resign_other")


def mutate(draw: Callable[..., Any]) -> tuple[str, list[bytes], Sequence[bytes | Checkpoint], int, int]:
    """(kind, lines, checkpoints, lo, hi): a mutated chain and the range the first bad seq must fall in."""
    kind = draw(st.sampled_from(KINDS))
    lines = list(CHAIN)
    ckpts = list(CKPTS)
    if kind == "flip":  # any single byte of any record changed
        k = draw(st.integers(0, N - 1))
        pos = draw(st.integers(0, len(lines[k]) - 1))
        delta = draw(st.integers(1, 255))
        b = bytearray(lines[k])
        b[pos] = (b[pos] + delta) % 256
        lines[k] = bytes(b)
        return kind, lines, ckpts, k + 1, k + 1
    if kind in ("change", "change_rehash"):
        k = draw(st.integers(0, N - 1))
        r = decode_record(lines[k])
        field = draw(st.sampled_from(["outcome", "stage", "actor", "contact", "counts", "detail", "ts", "event_id"]))
        val = draw(st.text(alphabet="abcdefXYZ0123", min_size=1, max_size=8))
        kw: dict[str, object] = {"event_id": r.event_id, "stage": r.stage, "outcome": r.outcome,
                                 "actor": r.actor, "contact": r.contact, "counts": dict(r.counts),
                                 "detail": dict(r.detail), "ts": r.ts}
        if field == "counts":
            kw["counts"] = {**r.counts, "EMAIL": r.counts.get("EMAIL", 0) + 1 + len(val)}
        elif field == "detail":
            kw["detail"] = {**r.detail, "tier": "x" + val}
        else:
            kw[field] = str(kw[field]) + "~" + val
        nr, nl = build_record(TENANT, r.seq, r.prev, **kw)  # type: ignore[arg-type]
        if kind == "change":  # content changed, old hash kept
            nl = nl[:-66] + r.hash.encode() + b'"}'
            lines[k] = nl
            return kind, lines, ckpts, k + 1, k + 1
        lines[k] = nl  # hash recomputed: the next link (or the checkpoint at the tail) breaks
        return kind, lines, ckpts, (k // EVERY) * EVERY + 1, k + 2
    if kind == "delete":
        k = draw(st.integers(0, N - 1))
        count = draw(st.integers(1, 5))
        del lines[k:k + count]
        return kind, lines, ckpts, k + 1, k + 1
    if kind == "insert":  # a well-formed forged record linked to its predecessor
        k = draw(st.integers(0, N - 1))
        prev = HASHES[k - 1] if k > 0 else genesis_hash(TENANT)
        _, nl = build_record(TENANT, k + 1, prev, event_id="forged", stage="persist", outcome="processed",
                             ts=_ts(k + 1))
        lines.insert(k, nl)  # the checkpoint at or after it may be what catches it first
        return kind, lines, ckpts, (k // EVERY) * EVERY + 1, k + 2
    if kind == "duplicate":  # an existing record copied to another place
        k = draw(st.integers(0, N - 1))
        j = draw(st.integers(0, N - 1))
        lines.insert(j, lines[k])
        return kind, lines, ckpts, 1, N + 1
    if kind == "reorder":
        i = draw(st.integers(0, N - 2))
        j = draw(st.integers(i + 1, min(N - 1, i + draw(st.integers(1, 50)))))
        lines[i], lines[j] = lines[j], lines[i]
        return kind, lines, ckpts, i + 1, i + 1
    if kind == "truncate":
        keep = draw(st.integers(0, N - 1))
        return kind, lines[:keep], ckpts, keep + 1, keep + 1
    k = draw(st.integers(0, N - 1))
    lines = _rewrite_from(lines, k, outcome=draw(st.sampled_from(["deferred", "dead_lettered", "x"])))
    if kind == "rewrite":  # whole tail rewritten consistently, checkpoints left alone
        return kind, lines, ckpts, (k // EVERY) * EVERY + 1, k + 1
    # the attacker also replaces the checkpoints: with the old signatures (forge_head) or their own key
    new: list[Checkpoint] = []
    for c in ckpts:
        ck = decode_line(c)
        assert isinstance(ck, Checkpoint)
        head = decode_record(lines[ck.seq - 1]).hash
        if kind == "forge_head":
            new.append(Checkpoint(tenant=ck.tenant, seq=ck.seq, head=head, ts=ck.ts, key=ck.key, sig=ck.sig))
        else:
            new.append(make_checkpoint(TENANT, ck.seq, head, OTHER_KEY, ts=ck.ts)[0])
    return kind, lines, new, 1, N


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_every_mutation_is_detected(data: st.DataObject) -> None:
    kind, lines, ckpts, lo, hi = mutate(data.draw)
    rep = verify_chain(TENANT, lines, ckpts, [PUB])
    assert not rep.ok, (kind, rep.reason)
    assert rep.first_bad_seq is not None and lo <= rep.first_bad_seq <= hi, (kind, lo, hi, rep.first_bad_seq, rep.reason)


def test_record_model_rejects_unknown_fields() -> None:
    _, line = build_record(TENANT, 1, genesis_hash(TENANT), event_id="e", stage="s", outcome="o")
    with pytest.raises(ValueError):
        decode_record(line[:-1] + b',"extra":1}')
    assert isinstance(decode_line(line), AuditRecord)
