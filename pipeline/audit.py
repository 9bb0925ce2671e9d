"""Audit trail, the pure part: record model, canonical bytes, hashing, chain and checkpoint checks.

No Redis and no arq here; ``store/audit.py`` is the Redis side and the CLI reuses these functions to
verify exported files with nothing but the public key.

Record line (what is stored in Redis and written to the JSONL export), one JSON object::

    <canonical body>  with  ,"hash":"<sha256 hex of the canonical body>"  inserted before the final }

The canonical body is the record without ``hash``, encoded by msgspec with keys sorted and no
whitespace (``{"actor":..,"contact":..,"counts":{..},"detail":{..},"event_id":..,"outcome":..,
"prev":..,"seq":..,"stage":..,"tenant":..,"ts":..,"type":"rec","v":1}``). So an auditor recomputes a
record's hash from the exact stored bytes: drop the last member (``,"hash":"…"``, 75 bytes with the
closing brace), put the ``}`` back, SHA-256. ``prev`` of record 1 is :func:`genesis_hash` of the
tenant; ``prev`` of record n is the ``hash`` of record n-1.

A checkpoint signs ``(tenant, seq, head hash, time)`` with Ed25519: the signed bytes are the canonical
body of the checkpoint without ``sig`` (``{"head":..,"key":..,"seq":..,"tenant":..,"ts":..,
"type":"ckpt"}``); ``key`` is :func:`key_id` of the public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

FORMAT_VERSION = 1
SYSTEM_TENANT = "_system"
_GENESIS_DOMAIN = b"ghl-intake/audit/v1/genesis\x00"
_HASH_SUFFIX_LEN = len(b',"hash":"') + 64 + len(b'"}')  # 75
_HASH_PREFIX = b',"hash":"'


class _RecordBody(msgspec.Struct, tag_field="type", tag="rec", kw_only=True):
    seq: int
    ts: str
    tenant: str
    event_id: str
    stage: str
    outcome: str
    actor: str
    contact: str | None
    counts: dict[str, int]
    detail: dict[str, str]
    prev: str
    v: int = FORMAT_VERSION


class AuditRecord(msgspec.Struct, tag_field="type", tag="rec", kw_only=True, frozen=True,
                  forbid_unknown_fields=True):
    """One audit record as stored (``hash`` is over the canonical bytes of all other fields)."""

    seq: int
    ts: str
    tenant: str
    event_id: str
    stage: str
    outcome: str
    actor: str
    contact: str | None
    counts: dict[str, int]
    detail: dict[str, str]
    prev: str
    hash: str
    v: int = FORMAT_VERSION


class _CheckpointBody(msgspec.Struct, tag_field="type", tag="ckpt", kw_only=True):
    tenant: str
    seq: int
    head: str
    ts: str
    key: str


class Checkpoint(msgspec.Struct, tag_field="type", tag="ckpt", kw_only=True, frozen=True,
                 forbid_unknown_fields=True):
    """A signed statement "chain ``tenant`` had ``head`` as hash of record ``seq`` at ``ts``"."""

    tenant: str
    seq: int
    head: str
    ts: str
    key: str  # key_id() of the signing key's public half ("" when unsigned)
    sig: str  # base64 Ed25519 signature over signed_bytes()

    def signed_bytes(self) -> bytes:
        return _ENC.encode(_CheckpointBody(tenant=self.tenant, seq=self.seq, head=self.head, ts=self.ts, key=self.key))


@dataclass(frozen=True)
class ChainReport:
    """Verification result of one chain; ``first_bad_seq`` names the first record that fails."""

    tenant: str
    ok: bool
    records: int
    first_bad_seq: int | None
    reason: str
    checkpoints: int = 0
    signed: bool = False  # at least one checkpoint signature was checked and all passed
    first_seq: int = 1
    latest_checkpoint_seq: int | None = None


class AuditFormatError(ValueError):
    """A line is not a valid audit record or checkpoint."""


_ENC = msgspec.json.Encoder(order="sorted")
_REC_DEC = msgspec.json.Decoder(AuditRecord)
_CKPT_DEC = msgspec.json.Decoder(Checkpoint)
_ANY_DEC = msgspec.json.Decoder(AuditRecord | Checkpoint)


# ---------------------------------------------------------------------------------------------- basics


def genesis_hash(tenant: str) -> str:
    """``prev`` of a chain's first record: bound to the tenant, so a chain cannot move to another."""
    return hashlib.sha256(_GENESIS_DOMAIN + tenant.encode("utf-8")).hexdigest()


def iso_now(now: float | None = None) -> str:
    """UTC time as ISO-8601 with microseconds and ``Z`` (sorts lexicographically)."""
    t = time.time() if now is None else now
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(ts: str) -> datetime:
    """Parse an ISO-8601 time; naive values are taken as UTC."""
    dt = datetime.fromisoformat(ts.strip().replace("Z", "+00:00"))
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def day_of(ts: str) -> str:
    """``YYYYMMDD`` of a record/checkpoint time (the export file it belongs to)."""
    return ts[0:4] + ts[5:7] + ts[8:10]


def export_filename(ts: str) -> str:
    return f"audit_{day_of(ts)}.jsonl"


def key_id(public_key: Ed25519PublicKey) -> str:
    """Short fingerprint of an Ed25519 public key (first 16 hex of SHA-256 of the raw 32 bytes)."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- records


def build_record(
    tenant: str,
    seq: int,
    prev: str,
    *,
    event_id: str,
    stage: str,
    outcome: str,
    actor: str = "pipeline",
    contact: str | None = None,
    counts: dict[str, int] | None = None,
    detail: dict[str, str] | None = None,
    ts: str | None = None,
) -> tuple[AuditRecord, bytes]:
    """The record with sequence number ``seq`` after a record whose hash is ``prev``, and its line."""
    body = _RecordBody(
        seq=seq,
        ts=ts or iso_now(),
        tenant=tenant,
        event_id=event_id,
        stage=stage,
        outcome=outcome,
        actor=actor,
        contact=contact,
        counts=dict(counts or {}),
        detail=dict(detail or {}),
        prev=prev,
    )
    raw = _ENC.encode(body)
    digest = hashlib.sha256(raw).hexdigest()
    line = raw[:-1] + _HASH_PREFIX + digest.encode("ascii") + b'"}'
    rec = AuditRecord(
        seq=body.seq, ts=body.ts, tenant=tenant, event_id=event_id, stage=stage, outcome=outcome,
        actor=actor, contact=contact, counts=body.counts, detail=body.detail, prev=prev, hash=digest,
    )
    return rec, line


def record_hash_ok(line: bytes) -> tuple[bool, str]:
    """Recompute a record line's hash from its exact bytes: (matches, stored hash hex)."""
    if len(line) <= _HASH_SUFFIX_LEN or line[-_HASH_SUFFIX_LEN:-66] != _HASH_PREFIX or line[-2:] != b'"}':
        return False, ""
    stored = line[-66:-2]
    body = line[:-_HASH_SUFFIX_LEN] + b"}"
    return hashlib.sha256(body).hexdigest().encode("ascii") == stored, stored.decode("ascii", "replace")


def decode_record(line: bytes | str) -> AuditRecord:
    """A record from its stored line (no integrity check; see :func:`verify_chain`)."""
    try:
        return _REC_DEC.decode(line)
    except msgspec.DecodeError as exc:
        raise AuditFormatError(f"not an audit record: {exc}") from exc


def decode_checkpoint(line: bytes | str) -> Checkpoint:
    try:
        return _CKPT_DEC.decode(line)
    except msgspec.DecodeError as exc:
        raise AuditFormatError(f"not an audit checkpoint: {exc}") from exc


def decode_line(line: bytes | str) -> AuditRecord | Checkpoint:
    """A record or checkpoint from one JSONL export line."""
    try:
        return _ANY_DEC.decode(line)
    except msgspec.DecodeError as exc:
        raise AuditFormatError(f"not an audit record or checkpoint: {exc}") from exc


def record_to_dict(rec: AuditRecord) -> dict[str, object]:
    return msgspec.to_builtins(rec)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------- checkpoints


def make_checkpoint(
    tenant: str, seq: int, head: str, signing_key: Ed25519PrivateKey | None, *, ts: str | None = None
) -> tuple[Checkpoint, bytes]:
    """A checkpoint over ``(tenant, seq, head, ts)``, signed when a key is given; and its line."""
    kid = key_id(signing_key.public_key()) if signing_key is not None else ""
    body = _CheckpointBody(tenant=tenant, seq=seq, head=head, ts=ts or iso_now(), key=kid)
    signed = _ENC.encode(body)
    sig = base64.b64encode(signing_key.sign(signed)).decode("ascii") if signing_key is not None else ""
    ckpt = Checkpoint(tenant=tenant, seq=seq, head=head, ts=body.ts, key=kid, sig=sig)
    return ckpt, _ENC.encode(ckpt)


def checkpoint_signature_ok(ckpt: Checkpoint, public_keys: Sequence[Ed25519PublicKey]) -> tuple[bool, str]:
    """(valid, reason): the signature checks out with the public key whose id the checkpoint names."""
    if not ckpt.sig:
        return False, "unsigned"
    by_id = {key_id(k): k for k in public_keys}
    pub = by_id.get(ckpt.key)
    if pub is None:
        return False, f"signed by unknown key {ckpt.key!r}"
    try:
        sig = base64.b64decode(ckpt.sig, validate=True)
        pub.verify(sig, ckpt.signed_bytes())
    except (InvalidSignature, binascii.Error, ValueError):
        return False, "invalid signature"
    return True, ""


# ---------------------------------------------------------------------------------------------- verification


def _as_bytes(line: bytes | str | memoryview) -> bytes:
    if isinstance(line, str):
        return line.encode("utf-8")
    return bytes(line)


def verify_chain(
    tenant: str,
    lines: Sequence[bytes | str],
    checkpoints: Iterable[bytes | str | Checkpoint] = (),
    public_keys: Sequence[Ed25519PublicKey] = (),
    *,
    partial: bool = False,
) -> ChainReport:
    """Check one chain: every hash, seq continuity, prev links, and the checkpoints.

    ``lines`` are the stored record lines in chain order. With ``partial`` the chain may start at
    any seq (one day's export); its first ``prev`` is then taken on trust and reported. With
    ``public_keys`` every checkpoint's signature must verify with the key it names; without, the
    checkpoints are still compared with the chain but the report is not ``signed``.

    Detects: a changed record (hash mismatch), a deleted one (seq gap), an inserted or reordered one
    (seq out of order / prev link broken), a tail truncated below a checkpoint, and a rewritten
    chain (head differs from a signed checkpoint; a forged checkpoint fails its signature).
    """
    problems: list[tuple[int, str]] = []
    hashes: list[str] = []
    first_seq = 1
    expected = 1
    prev = genesis_hash(tenant)
    for i, item in enumerate(lines):
        line = _as_bytes(item)
        try:
            rec = _REC_DEC.decode(line)
        except msgspec.DecodeError:
            problems.append((expected, f"record at position {i} (seq {expected} expected) is not a valid record"))
            break
        if i == 0 and partial:
            first_seq = expected = rec.seq
            prev = rec.prev
        ok, _stored = record_hash_ok(line)
        if not ok:
            problems.append((expected, f"record seq {expected} was changed: hash does not match its bytes"))
            break
        if rec.seq != expected:
            if rec.seq > expected:
                why = f"seq {expected} missing: found seq {rec.seq} instead (record(s) deleted or reordered)"
            else:
                why = f"seq {rec.seq} found where seq {expected} expected (record inserted, duplicated or reordered)"
            problems.append((expected, why))
            break
        if rec.tenant != tenant:
            problems.append((expected, f"record seq {expected} belongs to tenant {rec.tenant!r}"))
            break
        if rec.prev != prev:
            bad = expected - 1 if expected > first_seq else expected
            problems.append(
                (bad, f"prev link of seq {expected} does not match the hash of seq {expected - 1} "
                      f"(seq {expected - 1} replaced, or seq {expected} inserted)")
            )
            break
        prev = rec.hash
        hashes.append(rec.hash)
        expected += 1
    walked_ok = not problems
    last_seq = first_seq + len(hashes) - 1  # last good seq

    # checkpoints
    ckpts: list[Checkpoint] = []
    for c in checkpoints:
        if isinstance(c, Checkpoint):
            ckpts.append(c)
            continue
        try:
            ckpts.append(_CKPT_DEC.decode(_as_bytes(c)))
        except msgspec.DecodeError:
            problems.append((first_seq, "a checkpoint is not valid (undecodable)"))
    ckpts.sort(key=lambda c: (c.seq, c.ts))
    checked = 0
    sig_checked = 0
    latest: int | None = None
    good_upto = first_seq - 1  # highest seq vouched for by a matching checkpoint
    for c in ckpts:
        if c.tenant != tenant:
            problems.append((max(c.seq, first_seq), f"checkpoint at seq {c.seq} names tenant {c.tenant!r}"))
            continue
        if public_keys:
            valid, why = checkpoint_signature_ok(c, public_keys)
            if not valid:
                problems.append(
                    (max(c.seq, first_seq), f"checkpoint at seq {c.seq} (ts {c.ts}): {why} (forged head?)")
                )
                continue
            sig_checked += 1
        if partial and c.seq < first_seq:
            continue  # covers records that are not in this segment
        latest = c.seq if latest is None else max(latest, c.seq)
        if c.seq == 0:
            checked += 1
            continue
        if c.seq <= last_seq:
            checked += 1
            if hashes[c.seq - first_seq] != c.head:
                problems.append(
                    (good_upto + 1, f"chain differs from the signed checkpoint at seq {c.seq}: records "
                                    f"{good_upto + 1}..{c.seq} were rewritten (head hash mismatch)")
                )
            else:
                good_upto = max(good_upto, c.seq)
        elif walked_ok:
            checked += 1
            problems.append(
                (last_seq + 1, f"chain truncated: checkpoint at seq {c.seq} (ts {c.ts}) but the chain ends "
                               f"at seq {last_seq}")
            )
    n = len(hashes) if walked_ok else expected - first_seq
    if problems:
        bad_seq, reason = min(problems, key=lambda p: p[0])
        return ChainReport(tenant, False, n, bad_seq, reason, len(ckpts), False, first_seq, latest)
    signed = bool(public_keys) and sig_checked > 0
    if not ckpts:
        note = "unsigned: no checkpoints"
    elif not public_keys:
        note = f"{checked} checkpoints match, signatures not checked (no public key)"
    else:
        note = f"{checked} signed checkpoints verified"
    tail = last_seq - (latest or 0)
    if ckpts and tail > 0:
        note += f"; {tail} newest records after the latest checkpoint (seq {latest})"
    span = f"seq {first_seq}..{last_seq}" if partial and hashes else f"{len(hashes)} records"
    return ChainReport(tenant, True, len(hashes), None, f"ok: {span}, {note}", len(ckpts), signed, first_seq, latest)


def verify_export_lines(
    lines: Iterable[bytes | str],
    public_keys: Sequence[Ed25519PublicKey] = (),
    *,
    tenant: str | None = None,
    partial: bool = False,
) -> list[ChainReport]:
    """Verify exported JSONL lines (any order, duplicates of the same line allowed) per tenant."""
    records: dict[str, dict[int, bytes]] = {}
    ckpts: dict[str, list[Checkpoint]] = {}
    conflicts: dict[str, tuple[int, str]] = {}
    bad_lines: list[str] = []
    seen_ckpts: set[bytes] = set()
    for n, item in enumerate(lines, 1):
        line = _as_bytes(item).strip()
        if not line:
            continue
        try:
            obj = _ANY_DEC.decode(line)
        except msgspec.DecodeError:
            bad_lines.append(f"line {n}")
            continue
        if tenant is not None and obj.tenant != tenant:
            continue
        if isinstance(obj, Checkpoint):
            if line not in seen_ckpts:  # the same checkpoint exported twice counts once
                seen_ckpts.add(line)
                ckpts.setdefault(obj.tenant, []).append(obj)
            continue
        chain = records.setdefault(obj.tenant, {})
        have = chain.get(obj.seq)
        if have is None:
            chain[obj.seq] = line
        elif have != line and obj.tenant not in conflicts:
            conflicts[obj.tenant] = (obj.seq, f"two different records with seq {obj.seq} (line {n})")
    reports: list[ChainReport] = []
    for t in sorted(set(records) | set(ckpts)):
        chain = records.get(t, {})
        ordered = [chain[s] for s in sorted(chain)]
        rep = verify_chain(t, ordered, ckpts.get(t, ()), public_keys, partial=partial)
        if t in conflicts and (rep.ok or (rep.first_bad_seq or 0) > conflicts[t][0]):
            seq, why = conflicts[t]
            rep = ChainReport(t, False, rep.records, seq, why, rep.checkpoints, False, rep.first_seq,
                              rep.latest_checkpoint_seq)
        reports.append(rep)
    if bad_lines:
        reports.append(ChainReport("?", False, 0, None, f"unreadable export lines: {', '.join(bad_lines[:10])}"))
    return reports


def public_key_from_pem(pem: bytes | str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (public key, or a private key whose public half is used)."""
    from cryptography.hazmat.primitives import serialization

    data = pem.encode("ascii") if isinstance(pem, str) else pem
    if b"PRIVATE KEY" in data:
        priv = serialization.load_pem_private_key(data, password=None)
        if not isinstance(priv, Ed25519PrivateKey):
            raise ValueError("not an Ed25519 key")
        return priv.public_key()
    pub = serialization.load_pem_public_key(data)
    if not isinstance(pub, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return pub
