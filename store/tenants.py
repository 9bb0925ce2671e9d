"""Tenant registry: tier, webhook secrets and downstream credentials, encrypted at rest.

Key layout (``P`` = prefix)::

    P:tenants                    SET   every registered tenant (location id)
    P:tenant:{tenant}            HASH  tier, created_at      (PipelineState.tier() reads ``tier``;
                                                              absent: INTAKE_DEFAULT_TIER)
    P:tenant:{tenant}:secrets    HASH  secret id -> msgpack {scheme, created_at, h|e}
    P:tenant:{tenant}:creds      HASH  credential name -> sealed value

Webhook secrets: a ``token`` is kept only as its SHA-256 (``h``); ``hmac`` and ``standard``
secrets are needed in clear to verify signatures, so they are sealed (``e``) under the tenant's
data key (``store.crypto``) with associated data binding tenant, kind (``secret:{scheme}``) and
secret id. Credentials are sealed the same way with kind ``cred:{name}``. Secret values are
returned once, by ``add_secret``/``rotate_secret``, and never logged.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import hashlib
import re
import secrets as _secrets
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from redis.asyncio import Redis

from store.crypto import EnvelopeCrypto, tenant_scope
from store.keyring import Keyring

TENANT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SCHEMES = ("token", "hmac", "standard")
TIERS = ("starter", "professional", "enterprise")
CREDENTIALS = ("anthropic_api_key", "ghl_api_key", "ghl_calendar_id")
MAX_CREDENTIAL_CHARS = 512


def credential_value_ok(value: str) -> bool:
    """A credential fits: at most MAX_CREDENTIAL_CHARS, no control characters (newline, DEL, ...)."""
    return len(value) <= MAX_CREDENTIAL_CHARS and not any(ord(c) < 32 or ord(c) == 127 for c in value)


_SECRET_ID_RE = re.compile(r"^s_[0-9a-f]{12}$")


def validate_tenant(tenant: str) -> str:
    if not isinstance(tenant, str) or not TENANT_RE.fullmatch(tenant):
        raise ValueError("location id must be 1-64 characters of A-Z a-z 0-9 _ -")
    return tenant


def _tier(tier: str) -> str:
    if tier not in TIERS:
        raise ValueError(f"tier must be one of {', '.join(TIERS)}")
    return tier


def decode_standard_secret(secret: str) -> bytes:
    """Key bytes of a Standard Webhooks secret (``whsec_`` + base64)."""
    raw = (secret[len("whsec_"):] if secret.startswith("whsec_") else secret).strip()
    raw += "=" * (-len(raw) % 4)  # padding is optional in the wild
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a standard secret must be 'whsec_' followed by base64") from exc
    if not 16 <= len(key) <= 64:
        raise ValueError("a standard secret must decode to 16..64 bytes")
    return key


def _s(v: bytes | str | None) -> str:
    if v is None:
        return ""
    return v.decode() if isinstance(v, bytes) else v


class _SecretRec(msgspec.Struct):
    scheme: str
    created_at: float
    h: bytes = b""  # sha256 of a token
    e: bytes = b""  # sealed hmac key / standard key bytes


_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(_SecretRec)


@dataclass(frozen=True)
class SecretInfo:
    id: str
    scheme: str
    created_at: float


@dataclass
class Tenant:
    id: str
    tier: str
    created_at: float
    secrets: list[SecretInfo] = field(default_factory=list)
    credentials: set[str] = field(default_factory=set)


@dataclass
class WebhookSecrets:
    """What the ingress needs to authenticate a tenant endpoint. Several of each during rotation."""

    token_hashes: list[bytes] = field(default_factory=list)  # sha256(token utf-8)
    hmac_keys: list[bytes] = field(default_factory=list)  # HMAC-SHA256 keys (the secret's utf-8 bytes)
    standard_keys: list[bytes] = field(default_factory=list)  # decoded whsec_ keys

    def __bool__(self) -> bool:
        return bool(self.token_hashes or self.hmac_keys or self.standard_keys)


class TenantRegistry:
    def __init__(self, redis: Redis, keyring_or_crypto: Keyring | EnvelopeCrypto, *, prefix: str = "intake",
                 default_tier: str = "starter") -> None:
        self.r = redis
        self.default_tier = _tier(default_tier)  # shown for tenants without a tier of their own
        self._r: Any = redis
        self.prefix = prefix
        if isinstance(keyring_or_crypto, EnvelopeCrypto):
            self.crypto = keyring_or_crypto
        else:
            self.crypto = EnvelopeCrypto(redis, keyring_or_crypto, prefix=prefix)

    # ------------------------------------------------------------------ keys
    def key(self, tenant: str, *suffix: str) -> str:
        return ":".join((self.prefix, "tenant", tenant, *suffix))

    @property
    def index(self) -> str:
        return f"{self.prefix}:tenants"

    # ------------------------------------------------------------------ tenants
    async def add(self, tenant: str, *, tier: str | None = None) -> bool:
        """Register a tenant (idempotent: an existing tenant keeps its data). True if new.

        ``tier`` is written when given; without one a new tenant follows ``INTAKE_DEFAULT_TIER`` and an
        existing tenant keeps the tier it has."""
        new, _ = await self.add_with_credentials(tenant, tier=tier)
        return new

    async def add_with_credentials(self, tenant: str, *, tier: str | None = None,
                                   credentials: dict[str, str] | None = None) -> tuple[bool, builtins.list[str]]:
        """Register a tenant (as :meth:`add`) and store credentials (as :meth:`set_credentials`) in
        one Redis transaction: a failure leaves neither a tenant without its credentials nor
        credentials without a tenant. Returns (new tenant, credential names changed)."""
        validate_tenant(tenant)
        if tier is not None:
            _tier(tier)
        mapping, delete = await self._sealed_credentials(tenant, credentials or {})
        pipe = self._r.pipeline(transaction=True)
        pipe.hsetnx(self.key(tenant), "created_at", repr(time.time()))
        if tier is not None:
            pipe.hset(self.key(tenant), "tier", tier)
        pipe.sadd(self.index, tenant)
        self._queue_credentials(pipe, tenant, mapping, delete)
        res = await pipe.execute()
        return bool(res[0]), sorted([*mapping, *delete])

    async def exists(self, tenant: str) -> bool:
        return TENANT_RE.fullmatch(tenant or "") is not None and bool(await self._r.sismember(self.index, tenant))

    async def get(self, tenant: str) -> Tenant | None:
        if not await self.exists(tenant):
            return None
        pipe = self._r.pipeline(transaction=False)
        pipe.hgetall(self.key(tenant))
        pipe.hgetall(self.key(tenant, "secrets"))
        pipe.hkeys(self.key(tenant, "creds"))
        info, secs, creds = await pipe.execute()
        info = {_s(k): _s(v) for k, v in info.items()}
        out = Tenant(id=tenant, tier=info.get("tier") or self.default_tier, created_at=float(info.get("created_at") or 0),
                     credentials={_s(c) for c in creds})
        for sid, raw in secs.items():
            rec = _dec.decode(raw)
            out.secrets.append(SecretInfo(_s(sid), rec.scheme, rec.created_at))
        out.secrets.sort(key=lambda s: (s.created_at, s.id))
        return out

    async def list(self) -> list[Tenant]:
        out = []
        for t in sorted(_s(m) for m in await self._r.smembers(self.index)):
            ten = await self.get(t)
            if ten is not None:
                out.append(ten)
        return out

    async def set_tier(self, tenant: str, tier: str) -> None:
        _tier(tier)
        if not await self.exists(tenant):
            raise KeyError(tenant)
        await self._r.hset(self.key(tenant), "tier", tier)

    async def remove(self, tenant: str) -> bool:
        """Remove the tenant, its secrets, credentials and its tenant data key."""
        validate_tenant(tenant)
        pipe = self._r.pipeline(transaction=True)
        pipe.srem(self.index, tenant)
        pipe.delete(self.key(tenant), self.key(tenant, "secrets"), self.key(tenant, "creds"))
        removed = (await pipe.execute())[0]
        await self.crypto.destroy(tenant_scope(tenant))
        return bool(removed)

    # ------------------------------------------------------------------ webhook secrets
    def _secret_aad_kind(self, scheme: str, secret_id: str) -> str:
        return f"secret:{scheme}:{secret_id}"

    async def add_secret(self, tenant: str, scheme: str, secret: str | None = None) -> tuple[str, str]:
        """Add an active secret; returns (secret id, secret value). The value is not retrievable later."""
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}")
        if not await self.exists(tenant):
            raise KeyError(f"unknown tenant {tenant!r}")
        if secret is None:
            if scheme == "standard":
                secret = "whsec_" + base64.b64encode(_secrets.token_bytes(32)).decode()
            else:
                secret = _secrets.token_urlsafe(32)
        elif not secret or len(secret) > 512:
            raise ValueError("secret must be 1..512 characters")
        secret_id = "s_" + _secrets.token_hex(6)
        rec = _SecretRec(scheme=scheme, created_at=time.time())
        if scheme == "token":
            rec.h = hashlib.sha256(secret.encode()).digest()
        else:
            key = decode_standard_secret(secret) if scheme == "standard" else secret.encode()
            rec.e = await self.crypto.seal_for(tenant, None, self._secret_aad_kind(scheme, secret_id), key)
        await self._r.hset(self.key(tenant, "secrets"), secret_id, _enc.encode(rec))
        return secret_id, secret

    async def revoke_secret(self, tenant: str, secret_id: str) -> bool:
        validate_tenant(tenant)
        return bool(await self._r.hdel(self.key(tenant, "secrets"), secret_id))

    async def rotate_secret(self, tenant: str, scheme: str) -> tuple[str, str]:
        """A new secret of ``scheme``; the old ones stay active until revoked (overlap)."""
        return await self.add_secret(tenant, scheme)

    async def webhook_secrets(self, tenant: str) -> WebhookSecrets:
        out = WebhookSecrets()
        if not TENANT_RE.fullmatch(tenant or ""):
            return out
        raw = await self._r.hgetall(self.key(tenant, "secrets"))
        for sid, blob in raw.items():
            rec = _dec.decode(blob)
            if rec.scheme == "token":
                out.token_hashes.append(rec.h)
                continue
            key = await self.crypto.open_for(tenant, None, self._secret_aad_kind(rec.scheme, _s(sid)), rec.e)
            (out.hmac_keys if rec.scheme == "hmac" else out.standard_keys).append(key)
        return out

    # ------------------------------------------------------------------ credentials
    async def set_credentials(self, tenant: str, *, anthropic_api_key: str | None = None,
                              ghl_api_key: str | None = None, ghl_calendar_id: str | None = None) -> builtins.list[str]:
        """Store the given credentials (None: leave as is; "": delete). Returns the names changed."""
        if not await self.exists(tenant):
            raise KeyError(f"unknown tenant {tenant!r}")
        given = {"anthropic_api_key": anthropic_api_key, "ghl_api_key": ghl_api_key,
                 "ghl_calendar_id": ghl_calendar_id}
        mapping, delete = await self._sealed_credentials(tenant, {k: v for k, v in given.items() if v is not None})
        pipe = self._r.pipeline(transaction=True)
        self._queue_credentials(pipe, tenant, mapping, delete)
        await pipe.execute()
        return sorted([*mapping, *delete])

    async def _sealed_credentials(self, tenant: str,
                                  given: dict[str, str]) -> tuple[dict[str, bytes], builtins.list[str]]:
        """Credentials to write (sealed) and to delete (given as ""); unknown names refused."""
        mapping: dict[str, bytes] = {}
        delete: list[str] = []
        for name, value in given.items():
            if name not in CREDENTIALS:
                raise ValueError(f"unknown credential {name!r}")
            if value == "":
                delete.append(name)
            elif not credential_value_ok(value):
                raise ValueError(f"{name} must be at most {MAX_CREDENTIAL_CHARS} characters, without control characters")
            else:
                mapping[name] = await self.crypto.seal_for(tenant, None, f"cred:{name}", value.encode())
        return mapping, delete

    def _queue_credentials(self, pipe: Any, tenant: str, mapping: dict[str, bytes], delete: builtins.list[str]) -> None:
        if mapping:
            pipe.hset(self.key(tenant, "creds"), mapping=mapping)
        if delete:
            pipe.hdel(self.key(tenant, "creds"), *delete)

    async def credentials(self, tenant: str) -> dict[str, str]:
        if not TENANT_RE.fullmatch(tenant or ""):
            return {}
        out = {}
        for name, blob in (await self._r.hgetall(self.key(tenant, "creds"))).items():
            n = _s(name)
            out[n] = (await self.crypto.open_for(tenant, None, f"cred:{n}", blob)).decode()
        return out


# ---------------------------------------------------------------------- migration from the old layout

MAX_IMPORT_FILE_BYTES = 64 * 1024


@dataclass
class FileReport:
    file: str
    tenant: str
    status: str  # imported | unchanged | would-import | skipped
    detail: str = ""
    fields: list[str] = field(default_factory=list)


@dataclass
class ImportReport:
    files: list[FileReport] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return sum(f.status in {"imported", "would-import"} for f in self.files)

    @property
    def unchanged(self) -> int:
        return sum(f.status == "unchanged" for f in self.files)

    @property
    def failed(self) -> int:
        return sum(f.status == "skipped" for f in self.files)


class ImportFileError(ValueError):
    """A file of the old layout that cannot be imported (reported, skipped, nothing written)."""


def parse_legacy_file(path: Any, fernet_key: str | None) -> tuple[str, dict[str, str]]:
    """(location id, credentials) from one ``{location_id}.json`` of the old system; ImportFileError if bad.

    Two forms: plaintext (``anthropic_api_key``, ``ghl_api_key``, ``ghl_calendar_id``, ``updated_at``)
    and Fernet v1 (``anthropic_api_key_encrypted``, ``ghl_api_key_encrypted``,
    ``encryption_version: "v1"``; key in ``TENANT_ENCRYPTION_KEY``). Everything is checked and
    decrypted here, before anything is written.
    """
    import json

    tenant = path.stem
    if not TENANT_RE.fullmatch(tenant):
        raise ImportFileError("file name is not a valid location id")
    size = path.stat().st_size
    if size > MAX_IMPORT_FILE_BYTES:
        raise ImportFileError(f"file too large ({size} bytes)")
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ImportFileError(f"not valid JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ImportFileError("not a JSON object")
    version = data.get("encryption_version")
    creds: dict[str, str] = {}
    encrypted = [k for k in ("anthropic_api_key_encrypted", "ghl_api_key_encrypted") if k in data]
    if version is not None and version != "v1":
        raise ImportFileError(f"unknown encryption_version {version!r}")
    if encrypted or version == "v1":
        if not fernet_key:
            raise ImportFileError("encrypted (v1) file but TENANT_ENCRYPTION_KEY is not set")
        from cryptography.fernet import Fernet, InvalidToken

        try:
            fernet = Fernet(fernet_key.encode() if isinstance(fernet_key, str) else fernet_key)
        except (ValueError, TypeError) as exc:
            raise ImportFileError("TENANT_ENCRYPTION_KEY is not a valid Fernet key") from exc
        for k in encrypted:
            token = data[k]
            if not isinstance(token, str):
                raise ImportFileError(f"{k} is not a string")
            try:
                creds[k.removesuffix("_encrypted")] = fernet.decrypt(token.encode()).decode("utf-8")
            except (InvalidToken, UnicodeDecodeError):
                raise ImportFileError(f"{k} does not decrypt with TENANT_ENCRYPTION_KEY") from None
    for k in CREDENTIALS:
        if k in data and data[k] is not None:
            if k in creds:
                raise ImportFileError(f"{k} present both plain and encrypted")
            if not isinstance(data[k], str):
                raise ImportFileError(f"{k} is not a string")
            creds[k] = data[k]
    for k, v in creds.items():
        if not v or not credential_value_ok(v):
            raise ImportFileError(f"{k} is empty, too long or has control characters")
    if not creds:
        raise ImportFileError("no credentials in file")
    return tenant, creds


def _read_legacy_dir(d: Any, fernet_key: str | None) -> list[tuple[Any, tuple[str, dict[str, str]] | ImportFileError]]:
    if not d.is_dir():
        raise FileNotFoundError(f"{d} is not a directory")
    out: list[tuple[Any, tuple[str, dict[str, str]] | ImportFileError]] = []
    for path in sorted(d.glob("*.json")):
        try:
            if not path.is_file():
                raise ImportFileError("not a regular file")
            out.append((path, parse_legacy_file(path, fernet_key)))
        except ImportFileError as exc:
            out.append((path, exc))
    return out


async def import_dir(reg: TenantRegistry, directory: Any, *, fernet_key: str | None = None, dry_run: bool = False,
                     tier: str | None = None) -> ImportReport:
    """Import every ``*.json`` of ``directory``; idempotent (same values: ``unchanged``)."""
    from pathlib import Path

    report = ImportReport()
    for path, parsed in _read_legacy_dir(Path(directory), fernet_key):
        if isinstance(parsed, ImportFileError):
            report.files.append(FileReport(path.name, path.stem, "skipped", str(parsed)))
            continue
        tenant, creds = parsed
        current = await reg.credentials(tenant) if await reg.exists(tenant) else None
        changed = sorted(k for k, v in creds.items() if current is None or current.get(k) != v)
        if current is not None and not changed:
            report.files.append(FileReport(path.name, tenant, "unchanged", "already imported", sorted(creds)))
            continue
        what = ("new tenant" if current is None else "update") + ": " + ", ".join(changed)
        if dry_run:
            report.files.append(FileReport(path.name, tenant, "would-import", what, changed))
            continue
        # the tenant and its credentials in one transaction: a file is imported whole or not at all
        await reg.add_with_credentials(tenant, tier=tier if current is None else None,
                                       credentials={k: creds[k] for k in changed})
        report.files.append(FileReport(path.name, tenant, "imported", what, changed))
    return report
