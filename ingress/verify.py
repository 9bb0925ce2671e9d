"""Signature verification over the exact raw bytes. Pure functions, no I/O beyond key loading.

A verdict is ``(ok, scheme, reason)``; reasons are short, fixed strings safe to log and count.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ED25519_SIG_BYTES = 64
MAX_SIG_HEADER_CHARS = 2048


@dataclass(frozen=True)
class Verdict:
    ok: bool
    scheme: str
    reason: str


def fingerprint(key: Ed25519PublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def load_ed25519_keys(spec: str, default_path: Path) -> list[Ed25519PublicKey]:
    """Keys from ``GHL_ED25519_PUBLIC_KEY``: PEM text (one or more blocks) or ';'-separated paths."""
    text = spec.strip() or default_path.read_text()
    if "-----BEGIN" not in text:
        text = "\n".join(Path(p.strip()).read_text() for p in text.split(";") if p.strip())
    keys: list[Ed25519PublicKey] = []
    for block in text.split("-----END PUBLIC KEY-----"):
        if "-----BEGIN PUBLIC KEY-----" not in block:
            continue
        pem = (block[block.index("-----BEGIN PUBLIC KEY-----"):] + "-----END PUBLIC KEY-----\n").encode()
        key = serialization.load_pem_public_key(pem)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("GHL_ED25519_PUBLIC_KEY holds a key that is not Ed25519")
        keys.append(key)
    if not keys:
        raise ValueError("GHL_ED25519_PUBLIC_KEY holds no PEM public key")
    return keys


def decode_b64_signature(value: str, expected_len: int) -> bytes | None:
    """Strict base64 (standard alphabet, whitespace tolerated at the ends only) of an exact length."""
    v = value.strip()
    if not v or len(v) > MAX_SIG_HEADER_CHARS:
        return None
    try:
        raw = base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == expected_len else None


def verify_ghl_ed25519(header: str | None, body: bytes, keys: list[Ed25519PublicKey]) -> Verdict:
    scheme = "ghl-ed25519"
    if header is None:
        return Verdict(False, scheme, "missing signature")
    sig = decode_b64_signature(header, ED25519_SIG_BYTES)
    if sig is None:
        return Verdict(False, scheme, "malformed signature")
    for key in keys:
        try:
            key.verify(sig, body)
            return Verdict(True, scheme, "ok")
        except InvalidSignature:
            continue
    return Verdict(False, scheme, "bad signature")
