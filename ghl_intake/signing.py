"""Sending side of every signature scheme (demo, tests, benchmarks): what each sender does to a body."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
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


class GhlRsaSigner:
    """GHL's legacy ``X-WH-Signature``: RSA-4096 PKCS#1 v1.5 with SHA-256 (key generated here)."""

    def __init__(self, key: rsa.RSAPrivateKey | None = None) -> None:
        self.key = key or rsa.generate_private_key(public_exponent=65537, key_size=4096)

    @property
    def public_pem(self) -> str:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def sign(self, body: bytes) -> str:
        return base64.b64encode(self.key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()

    def headers(self, body: bytes) -> dict[str, str]:
        return {"content-type": "application/json", "x-wh-signature": self.sign(body)}


def token_headers(token: str) -> dict[str, str]:
    """A GHL workflow "Webhook" action with a fixed custom header."""
    return {"content-type": "application/json", "x-webhook-token": token}


def hmac_signature(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def hmac_headers(key: bytes, body: bytes) -> dict[str, str]:
    """A relay (n8n, Make) signing the raw body with HMAC-SHA256, hex in ``X-Webhook-Signature``."""
    return {"content-type": "application/json", "x-webhook-signature": hmac_signature(key, body)}


def new_whsec() -> str:
    """A fresh Standard Webhooks secret, ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def standard_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def standard_headers(key: bytes, body: bytes, *, msg_id: str | None = None,
                     timestamp: int | None = None) -> dict[str, str]:
    """A Standard Webhooks sender: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``."""
    msg_id = msg_id or "msg_" + os.urandom(12).hex()
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": standard_signature(key, msg_id, ts, body),
    }
