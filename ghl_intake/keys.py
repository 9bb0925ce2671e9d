"""Key material from settings: master keyring, pseudonym key, audit signing key; generation."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ghl_intake.settings import Settings, SettingsError, b64key, parse_master_keys
from store.keyring import Keyring

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from store.crypto import EnvelopeCrypto


@dataclass
class KeyMaterial:
    keyring: Keyring
    pseudonym_key: bytes
    audit_signing_key: Ed25519PrivateKey | None


def _b64(n: int) -> str:
    return base64.b64encode(os.urandom(n)).decode()


def generate_env(key_id: str = "k1") -> dict[str, str]:
    """Fresh values for every key setting."""
    return {
        "INTAKE_MASTER_KEYS": f"{key_id}:{_b64(32)}",
        "INTAKE_PSEUDONYM_KEY": _b64(32),
        "INTAKE_AUDIT_SIGNING_KEY": _b64(32),
    }


def apply_dev_keys(settings: Settings) -> list[str]:
    """Fill missing key settings with ephemeral ones (``--dev``); returns the names filled."""
    fresh = generate_env("dev")
    filled = []
    for attr, name in (("master_keys", "INTAKE_MASTER_KEYS"), ("pseudonym_key", "INTAKE_PSEUDONYM_KEY"),
                       ("audit_signing_key", "INTAKE_AUDIT_SIGNING_KEY")):
        if not getattr(settings, attr):
            setattr(settings, attr, fresh[name])
            filled.append(name)
    return filled


def load(settings: Settings) -> KeyMaterial:
    missing = settings.missing_keys()
    if missing:
        raise SettingsError("missing key settings: " + ", ".join(missing) +
                            " (run `ghl-intake keys generate`, or pass --dev for ephemeral keys)")
    keyring = Keyring(parse_master_keys(settings.master_keys))
    pseudonym = b64key("INTAKE_PSEUDONYM_KEY", settings.pseudonym_key)
    signing = Ed25519PrivateKey.from_private_bytes(b64key("INTAKE_AUDIT_SIGNING_KEY", settings.audit_signing_key))
    return KeyMaterial(keyring=keyring, pseudonym_key=pseudonym, audit_signing_key=signing)


def envelope_crypto(settings: Settings, redis: Redis, keyring: Keyring | None = None) -> EnvelopeCrypto:
    """The data-key layer (``store.crypto``) over ``redis`` with the cache bounds from settings."""
    from store.crypto import EnvelopeCrypto

    kr = keyring if keyring is not None else load(settings).keyring
    return EnvelopeCrypto(redis, kr, prefix=settings.key_prefix, cache_size=settings.data_key_cache_size,
                          cache_ttl_s=settings.data_key_cache_ttl_s)
