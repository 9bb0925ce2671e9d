"""GHL signature verification over the exact raw bytes. Pure functions, no I/O beyond key loading.

Two GHL schemes, chosen from the header that is present (never by trying one after the other):

* ``X-GHL-Signature``: Ed25519, base64 of exactly 64 bytes, checked against every configured
  public key (several at once during a GHL key rotation).
* ``X-WH-Signature`` (legacy, retired by GHL during 2026): RSA-4096 PKCS#1 v1.5 with SHA-256,
  base64 of exactly 512 bytes. Off unless ``GHL_LEGACY_RSA_ENABLED``. When ``X-GHL-Signature``
  is present the legacy header is never consulted, even if the Ed25519 check fails, so an
  attacker cannot downgrade a request to the older scheme.

A verdict is ``(ok, scheme, reason)``; reasons are short, fixed strings safe to log, count and
send back. Tenant-side schemes (token, HMAC, Standard Webhooks) live in ``ingress.schemes``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from ghl_intake.settings import SettingsError

ED25519_SIG_BYTES = 64
RSA_SIG_BYTES = 512  # RSA-4096
RSA_KEY_BITS = 4096
MAX_SIG_HEADER_CHARS = 2048

GHL_ED25519_HEADER = "x-ghl-signature"
GHL_RSA_HEADER = "x-wh-signature"

SCHEME_ED25519 = "ghl-ed25519"
SCHEME_RSA = "ghl-rsa"

# Every reason a GHL verification can fail with (metric label values).
REASON_MISSING = "missing signature"
REASON_MALFORMED = "malformed signature"
REASON_BAD = "bad signature"
REASON_DUPLICATED = "duplicated signature header"
REASON_LEGACY_OFF = "legacy signature disabled"


@dataclass(frozen=True)
class Verdict:
    ok: bool
    scheme: str
    reason: str


def fingerprint(key: Any) -> str:
    """SHA-256 (hex) of the key's DER SubjectPublicKeyInfo: what the health page and docs show."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _read_pem(path: Path, setting: str) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a PEM text file"
        raise SettingsError(f"{setting}: cannot read {str(path)!r}: {reason}") from None


def _load_pem(pem: bytes, setting: str) -> Any:
    try:
        return serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SettingsError(f"{setting} holds a PEM block that is not a public key ({type(exc).__name__})") from None


def _pem_blocks(spec: str, default_path: Path, setting: str) -> list[bytes]:
    """PEM public-key blocks from PEM text (one or more blocks) or ';'-separated paths."""
    text = spec.strip() or _read_pem(default_path, setting)
    if "-----BEGIN" not in text:
        text = "\n".join(_read_pem(Path(p.strip()), setting) for p in text.split(";") if p.strip())
    blocks: list[bytes] = []
    for block in text.split("-----END PUBLIC KEY-----"):
        if "-----BEGIN PUBLIC KEY-----" not in block:
            continue
        blocks.append((block[block.index("-----BEGIN PUBLIC KEY-----"):] + "-----END PUBLIC KEY-----\n").encode())
    return blocks


def load_ed25519_keys(spec: str, default_path: Path) -> list[Ed25519PublicKey]:
    """Keys from ``GHL_ED25519_PUBLIC_KEY``: PEM text (one or more blocks) or ';'-separated paths."""
    keys: list[Ed25519PublicKey] = []
    for pem in _pem_blocks(spec, default_path, "GHL_ED25519_PUBLIC_KEY"):
        key = _load_pem(pem, "GHL_ED25519_PUBLIC_KEY")
        if not isinstance(key, Ed25519PublicKey):
            raise SettingsError("GHL_ED25519_PUBLIC_KEY holds a key that is not Ed25519")
        keys.append(key)
    if not keys:
        raise SettingsError("GHL_ED25519_PUBLIC_KEY holds no PEM public key")
    return keys


def load_rsa_keys(spec: str, default_path: Path) -> list[RSAPublicKey]:
    """Keys from ``GHL_RSA_PUBLIC_KEY`` (same forms as the Ed25519 setting); each must be RSA-4096."""
    keys: list[RSAPublicKey] = []
    for pem in _pem_blocks(spec, default_path, "GHL_RSA_PUBLIC_KEY"):
        key = _load_pem(pem, "GHL_RSA_PUBLIC_KEY")
        if not isinstance(key, RSAPublicKey):
            raise SettingsError("GHL_RSA_PUBLIC_KEY holds a key that is not RSA")
        if key.key_size != RSA_KEY_BITS:
            raise SettingsError(f"GHL_RSA_PUBLIC_KEY must be RSA-{RSA_KEY_BITS}, got RSA-{key.key_size}")
        keys.append(key)
    if not keys:
        raise SettingsError("GHL_RSA_PUBLIC_KEY holds no PEM public key")
    return keys


def decode_b64_signature(value: str, expected_len: int) -> bytes | None:
    """Strict, canonical base64 (standard alphabet) of exactly ``expected_len`` bytes, else None.

    Surrounding whitespace is tolerated; inner whitespace, the URL-safe alphabet, missing or extra
    padding, non-ASCII and non-canonical encodings (set "unused" bits) are refused.
    """
    v = value.strip(" \t")
    if not v or len(v) > MAX_SIG_HEADER_CHARS or not v.isascii():
        return None
    try:
        raw = base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != expected_len or base64.b64encode(raw).decode() != v:
        return None
    return raw


def verify_ghl_ed25519(header: str | None, body: bytes, keys: Sequence[Ed25519PublicKey]) -> Verdict:
    if header is None:
        return Verdict(False, SCHEME_ED25519, REASON_MISSING)
    sig = decode_b64_signature(header, ED25519_SIG_BYTES)
    if sig is None:
        return Verdict(False, SCHEME_ED25519, REASON_MALFORMED)
    for key in keys:
        try:
            key.verify(sig, body)
            return Verdict(True, SCHEME_ED25519, "ok")
        except InvalidSignature:
            continue
    return Verdict(False, SCHEME_ED25519, REASON_BAD)


def verify_ghl_rsa(header: str | None, body: bytes, keys: Sequence[RSAPublicKey]) -> Verdict:
    """Legacy ``X-WH-Signature``: RSA PKCS#1 v1.5 + SHA-256 over the raw body, base64 of 512 bytes."""
    if header is None:
        return Verdict(False, SCHEME_RSA, REASON_MISSING)
    sig = decode_b64_signature(header, RSA_SIG_BYTES)
    if sig is None:
        return Verdict(False, SCHEME_RSA, REASON_MALFORMED)
    for key in keys:
        try:
            key.verify(sig, body, padding.PKCS1v15(), hashes.SHA256())
            return Verdict(True, SCHEME_RSA, "ok")
        except InvalidSignature:
            continue
    return Verdict(False, SCHEME_RSA, REASON_BAD)


def verify_ghl(
    ed25519_headers: Sequence[str],
    rsa_headers: Sequence[str],
    body: bytes,
    ed25519_keys: Sequence[Ed25519PublicKey],
    rsa_keys: Sequence[RSAPublicKey] = (),
    *,
    legacy_rsa: bool = False,
) -> Verdict:
    """Pick the scheme from the headers present and verify; the legacy header is a last resort only.

    ``*_headers`` are all values of that header in the request (a repeated header is refused).
    """
    if ed25519_headers:
        if len(ed25519_headers) > 1:
            return Verdict(False, SCHEME_ED25519, REASON_DUPLICATED)
        return verify_ghl_ed25519(ed25519_headers[0], body, ed25519_keys)
    if rsa_headers:
        if not legacy_rsa or not rsa_keys:
            return Verdict(False, SCHEME_RSA, REASON_LEGACY_OFF)
        if len(rsa_headers) > 1:
            return Verdict(False, SCHEME_RSA, REASON_DUPLICATED)
        return verify_ghl_rsa(rsa_headers[0], body, rsa_keys)
    return Verdict(False, SCHEME_ED25519, REASON_MISSING)
