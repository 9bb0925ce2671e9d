"""Tenant-endpoint authentication: pure functions over the raw bytes and the tenant's secret lists.

``POST /webhooks/tenants/{location_id}`` serves senders GHL does not sign (workflow "Webhook" /
"Custom Webhook" actions, relays such as n8n or Make). The tenant may hold several active secrets
per scheme (rotation with an overlap); any one of them authenticates. Three schemes, chosen from
the headers present, strongest first, with no fall-back to a weaker one when a stronger header is
present but wrong:

1. Standard Webhooks: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``
   (space-separated ``v1,<base64 HMAC-SHA256(id.timestamp.body)>`` entries; other versions are
   skipped), secrets ``whsec_<base64>``, timestamp within +-tolerance (default 300 s) of now.
2. HMAC: ``X-Webhook-Signature: <hex HMAC-SHA256(raw body)>`` (an optional ``sha256=`` prefix is
   accepted, as GitHub-style relays send it).
3. Static token: ``X-Webhook-Token: <token>`` (GHL workflow actions can only send fixed headers);
   the SHA-256 of the presented token is compared with the stored hashes.

Every comparison is constant-time (``hmac.compare_digest``) and every stored secret is tried,
so the time taken does not say which secret (or how much of it) matched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ingress.verify import Verdict

TOKEN_HEADER = "x-webhook-token"
HMAC_HEADER = "x-webhook-signature"
SW_ID = "webhook-id"
SW_TIMESTAMP = "webhook-timestamp"
SW_SIGNATURE = "webhook-signature"
ALL_HEADERS = (TOKEN_HEADER, HMAC_HEADER, SW_ID, SW_TIMESTAMP, SW_SIGNATURE)

SCHEME_TOKEN = "tenant-token"
SCHEME_HMAC = "tenant-hmac"
SCHEME_STANDARD = "standard-webhooks"

MAX_TOKEN_CHARS = 512
MAX_SW_ID_CHARS = 256
MAX_SW_SIGNATURE_CHARS = 4096
MAX_SW_ENTRIES = 16
SW_TOLERANCE_S = 300

REASON_MISSING = "missing signature"
REASON_MALFORMED = "malformed signature"
REASON_BAD = "bad signature"
REASON_BAD_TOKEN = "bad token"
REASON_DUPLICATED = "duplicated signature header"
REASON_TS_MALFORMED = "malformed webhook-timestamp"
REASON_TS_OLD = "webhook-timestamp too old"
REASON_TS_NEW = "webhook-timestamp too new"
REASON_NO_V1 = "no v1 signature"


@dataclass(frozen=True)
class TenantSecrets:
    """The shape ``store.tenants.TenantRegistry.webhook_secrets`` returns (duck-typed)."""

    token_hashes: list[bytes] = field(default_factory=list)
    hmac_keys: list[bytes] = field(default_factory=list)
    standard_keys: list[bytes] = field(default_factory=list)


def token_hash(token: str | bytes) -> bytes:
    """SHA-256 of a static token: what the registry stores and what a presented token is hashed to."""
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()


def decode_whsec(secret: str) -> bytes:
    """Key bytes of a Standard Webhooks secret (``whsec_`` prefix optional, padding optional)."""
    s = secret.strip()
    if s.startswith("whsec_"):
        s = s[len("whsec_"):]
    if not s:
        raise ValueError("empty Standard Webhooks secret")
    s = s + "=" * (-len(s) % 4)
    try:
        key = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("Standard Webhooks secret is not base64") from exc
    if not key:
        raise ValueError("empty Standard Webhooks secret")
    return key


def _any_equal(candidate: bytes, stored: Sequence[bytes]) -> bool:
    """Constant-time membership: compares against every stored value, no early exit."""
    found = False
    for s in stored:
        found |= hmac.compare_digest(candidate, s)
    return found


def verify_token(values: Sequence[str], token_hashes: Sequence[bytes]) -> Verdict:
    if not values:
        return Verdict(False, SCHEME_TOKEN, REASON_MISSING)
    if len(values) > 1:
        return Verdict(False, SCHEME_TOKEN, REASON_DUPLICATED)
    token = values[0].strip(" \t")
    if not token or len(token) > MAX_TOKEN_CHARS:
        return Verdict(False, SCHEME_TOKEN, REASON_MALFORMED)
    ok = _any_equal(token_hash(token.encode("latin-1", "replace")), token_hashes)
    return Verdict(ok, SCHEME_TOKEN, "ok" if ok else REASON_BAD_TOKEN)


def verify_hmac(values: Sequence[str], body: bytes, keys: Sequence[bytes]) -> Verdict:
    if not values:
        return Verdict(False, SCHEME_HMAC, REASON_MISSING)
    if len(values) > 1:
        return Verdict(False, SCHEME_HMAC, REASON_DUPLICATED)
    v = values[0].strip(" \t")
    if v[:7].lower() == "sha256=":
        v = v[7:]
    if len(v) != 64:
        return Verdict(False, SCHEME_HMAC, REASON_MALFORMED)
    try:
        sig = bytes.fromhex(v)
    except ValueError:
        return Verdict(False, SCHEME_HMAC, REASON_MALFORMED)
    ok = _any_equal(sig, [hmac.new(k, body, hashlib.sha256).digest() for k in keys])
    return Verdict(ok, SCHEME_HMAC, "ok" if ok else REASON_BAD)


def verify_standard(
    msg_id: str | None,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    keys: Sequence[bytes],
    *,
    now: float,
    tolerance_s: int = SW_TOLERANCE_S,
) -> Verdict:
    """Standard Webhooks v1 (symmetric); ``now`` is injected (the vectors have fixed timestamps)."""
    if not msg_id or not timestamp or not signature:
        return Verdict(False, SCHEME_STANDARD, REASON_MISSING)
    if len(msg_id) > MAX_SW_ID_CHARS or len(signature) > MAX_SW_SIGNATURE_CHARS or not msg_id.isascii():
        return Verdict(False, SCHEME_STANDARD, REASON_MALFORMED)
    ts_text = timestamp.strip()
    if not ts_text.isdigit() or not ts_text.isascii() or len(ts_text) > 12:
        return Verdict(False, SCHEME_STANDARD, REASON_TS_MALFORMED)
    ts = int(ts_text)
    if now - ts > tolerance_s:
        return Verdict(False, SCHEME_STANDARD, REASON_TS_OLD)
    if ts - now > tolerance_s:
        return Verdict(False, SCHEME_STANDARD, REASON_TS_NEW)
    candidates: list[bytes] = []
    for entry in signature.split(" ")[:MAX_SW_ENTRIES]:
        version, sep, b64 = entry.partition(",")
        if not sep or version != "v1":
            continue
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 32:
            candidates.append(raw)
    if not candidates:
        return Verdict(False, SCHEME_STANDARD, REASON_NO_V1)
    signed = msg_id.encode() + b"." + ts_text.encode() + b"." + body
    expected = [hmac.new(k, signed, hashlib.sha256).digest() for k in keys]
    ok = False
    for c in candidates:
        ok |= _any_equal(c, expected)
    return Verdict(ok, SCHEME_STANDARD, "ok" if ok else REASON_BAD)


def _one(values: Sequence[str]) -> str | None:
    return values[0] if len(values) == 1 else None


def verify_tenant(
    getlist: Callable[[str], Sequence[str]] | Mapping[str, Sequence[str]],
    body: bytes,
    secrets: TenantSecrets | None,
    *,
    now: float,
    tolerance_s: int = SW_TOLERANCE_S,
) -> Verdict:
    """Authenticate a tenant-endpoint request with that tenant's own secrets.

    ``getlist(name)`` returns every value of a header (lower-case name). ``secrets`` is None for an
    unknown tenant: the answer is the same as for a wrong secret.
    """
    get = getlist.get if isinstance(getlist, Mapping) else getlist

    def values(name: str) -> Sequence[str]:
        return get(name) or ()  # type: ignore[operator]

    token_hashes = list(secrets.token_hashes) if secrets else []
    hmac_keys = list(secrets.hmac_keys) if secrets else []
    standard_keys = list(secrets.standard_keys) if secrets else []
    sw_sig = values(SW_SIGNATURE)
    if sw_sig or values(SW_ID) or values(SW_TIMESTAMP):
        for name in (SW_ID, SW_TIMESTAMP, SW_SIGNATURE):
            if len(values(name)) > 1:
                return Verdict(False, SCHEME_STANDARD, REASON_DUPLICATED)
        return verify_standard(_one(values(SW_ID)), _one(values(SW_TIMESTAMP)), _one(sw_sig), body, standard_keys,
                               now=now, tolerance_s=tolerance_s)
    if values(HMAC_HEADER):
        return verify_hmac(values(HMAC_HEADER), body, hmac_keys)
    if values(TOKEN_HEADER):
        return verify_token(values(TOKEN_HEADER), token_hashes)
    return Verdict(False, SCHEME_TOKEN, REASON_MISSING)
