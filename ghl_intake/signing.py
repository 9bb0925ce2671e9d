"""Sending side of the signature schemes (demo, tests, benchmarks): what GHL does to a body."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


class GhlSigner:
    """An Ed25519 key pair standing in for GHL's (GHL's private key is, rightly, not ours)."""

    def __init__(self, key: Ed25519PrivateKey | None = None) -> None:
        self.key = key or Ed25519PrivateKey.generate()

    @property
    def public_pem(self) -> str:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def sign(self, body: bytes) -> str:
        return base64.b64encode(self.key.sign(body)).decode()

    def headers(self, body: bytes) -> dict[str, str]:
        return {"content-type": "application/json", "x-ghl-signature": self.sign(body)}
