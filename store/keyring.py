"""Versioned master keyring and AES-GCM sealing with associated data.

Blob format (version 1)::

    b"\\x01" | len(key_id) (1 byte) | key_id (ascii) | nonce (12 bytes) | AES-GCM ciphertext+tag

The associated data binds every blob to what it is (record kind) and where it belongs (tenant,
contact or event id), so a blob copied to another tenant, contact or kind fails to decrypt.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_V1 = 1
NONCE_BYTES = 12


class DecryptError(Exception):
    """A blob could not be decrypted: wrong key, wrong binding, or tampered."""


def aad(*parts: str) -> bytes:
    """Associated data from its parts (kind, tenant, contact...), unambiguously joined."""
    return b"\x1f".join(p.encode("utf-8") for p in parts)


class Keyring:
    """Master keys by id; the first is primary (encrypts), all decrypt."""

    def __init__(self, keys: Iterable[tuple[str, bytes]]) -> None:
        self._keys: dict[str, AESGCM] = {}
        self._order: list[str] = []
        for key_id, material in keys:
            if len(material) != 32:
                raise ValueError(f"master key {key_id} must be 32 bytes")
            self._keys[key_id] = AESGCM(material)
            self._order.append(key_id)
        if not self._order:
            raise ValueError("keyring needs at least one key")

    @property
    def primary(self) -> str:
        return self._order[0]

    @property
    def key_ids(self) -> list[str]:
        return list(self._order)

    def has(self, key_id: str) -> bool:
        return key_id in self._keys

    def seal(self, plaintext: bytes, associated: bytes, key_id: str | None = None) -> bytes:
        kid = key_id or self.primary
        nonce = os.urandom(NONCE_BYTES)
        ct = self._keys[kid].encrypt(nonce, plaintext, associated)
        kid_b = kid.encode("ascii")
        return bytes((FORMAT_V1, len(kid_b))) + kid_b + nonce + ct

    def key_id_of(self, blob: bytes) -> str:
        if len(blob) < 2 or blob[0] != FORMAT_V1:
            raise DecryptError("unknown blob format")
        n = blob[1]
        return blob[2 : 2 + n].decode("ascii", "replace")

    def open(self, blob: bytes, associated: bytes) -> bytes:
        kid = self.key_id_of(blob)
        n = blob[1]
        key = self._keys.get(kid)
        if key is None:
            raise DecryptError(f"blob sealed with unknown key id {kid!r}")
        nonce = blob[2 + n : 2 + n + NONCE_BYTES]
        ct = blob[2 + n + NONCE_BYTES :]
        try:
            return key.decrypt(nonce, ct, associated)
        except InvalidTag as exc:
            raise DecryptError("authentication failed (wrong key, wrong binding or tampered)") from exc
