"""Console users, API tokens, sessions and login throttling, all in Redis.

Key layout (``P`` = ``{prefix}:console``)::

    P:users                 SET     every user name
    P:user:{name}           HASH    name, role, tenants ("*" or comma list), hash (argon2id), disabled,
                                    gen (bumped by passwd/disable: ends every session), created_at, updated_at
    P:token:{sha256}        STRING  user name of an API token (only the SHA-256 of the token is stored)
    P:tokens:{name}         SET     token hashes of a user (revocation)
    P:sess:{sha256}         HASH    user, gen, csrf, created, seen (TTL = idle timeout, slid on use)
    P:fail:user:{h(name)}   STRING  failed logins in the current window (TTL = lockout window)
    P:fail:addr:{h(addr)}   STRING  same, per client address (h = SHA-256 hex, first 32)
    P:lock:user:{h(name)}   STRING  present while the user is locked out
    P:lock:addr:{h(addr)}   STRING  present while the address is locked out

Passwords are hashed with argon2id (argon2-cffi's defaults). API tokens and session ids are
random 256-bit values: a plain SHA-256 is enough to keep them unusable from a Redis dump.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from redis.asyncio import Redis

ROLES = ("admin", "operator", "analyst")
ALL_TENANTS = "*"
TOKEN_PREFIX = "gik_"

# What each role may do. Tenant scope is checked separately (User.sees).
PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({"view", "dlq.replay", "dlq.purge", "audit.verify", "audit.export",
                        "gdpr.export", "gdpr.erase", "security.view", "system.view"}),
    "operator": frozenset({"view", "dlq.replay", "dlq.purge", "audit.verify", "audit.export"}),
    "analyst": frozenset({"view", "audit.export"}),
}

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

# KEYS: user hash, user set; ARGV: name, then field/value pairs. Creates the user once, atomically.
_ADD_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

_hasher = PasswordHasher()
# Verified against when the user does not exist, so that a wrong name costs as much as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class UserError(ValueError):
    """Bad user input (name, role, tenants, password) or an unknown user."""


def _s(v: Any) -> str:
    if v is None:
        return ""
    return v.decode() if isinstance(v, bytes) else str(v)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name or ""):
        raise UserError("user names are 1-64 characters: letters, digits and _ . @ - (not first)")
    return name


def validate_tenant(tenant: str) -> str:
    if not _TENANT_RE.match(tenant or ""):
        raise UserError(f"invalid tenant id {tenant!r} (letters, digits, _ and -, at most 64)")
    return tenant


def parse_tenants(raw: str) -> tuple[str, ...]:
    """``"*"`` or a comma-separated list of tenant (location) ids."""
    raw = (raw or "").strip()
    if raw == ALL_TENANTS:
        return (ALL_TENANTS,)
    items = tuple(dict.fromkeys(t.strip() for t in raw.split(",") if t.strip()))
    if not items:
        raise UserError("--tenants needs '*' or at least one tenant id")
    for t in items:
        if t == ALL_TENANTS:
            raise UserError("'*' cannot be combined with tenant ids")
        validate_tenant(t)
    return items


def validate_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    return role


def validate_password(password: str) -> str:
    if len(password) < 10:
        raise UserError("passwords need at least 10 characters")
    if len(password) > 1024:
        raise UserError("passwords are at most 1024 characters")
    return password


@dataclass(frozen=True)
class User:
    name: str
    role: str
    tenants: tuple[str, ...]
    disabled: bool = False
    gen: int = 0
    created_at: float = 0.0

    @property
    def all_tenants(self) -> bool:
        return self.tenants == (ALL_TENANTS,)

    def can(self, permission: str) -> bool:
        return not self.disabled and permission in PERMISSIONS.get(self.role, frozenset())

    def sees(self, tenant: str) -> bool:
        """May this user see/act on ``tenant``'s data?

        The system chain needs ``system.view`` and every tenant: its records (replays, purges, GDPR
        requests, user changes) name any tenant, so an admin limited to some tenants does not see it."""
        if self.disabled or not tenant:
            return False
        if tenant.startswith("_") and tenant != "_unknown":
            return self.can("system.view") and self.all_tenants
        return self.all_tenants or tenant in self.tenants

    def visible(self, tenants: list[str]) -> list[str]:
        return [t for t in tenants if self.sees(t)]


class UserStore:
    def __init__(self, redis: Redis, *, prefix: str = "intake") -> None:
        self.r: Any = redis
        self.prefix = prefix

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, "console", *parts))

    # users ------------------------------------------------------------------------------------
    async def add(self, name: str, role: str, tenants: tuple[str, ...], password: str) -> User:
        validate_name(name)
        validate_role(role)
        validate_password(password)
        now = time.time()
        fields = {"name": name, "role": role, "tenants": ",".join(tenants), "hash": _hasher.hash(password),
                  "disabled": "0", "gen": "0", "created_at": repr(now), "updated_at": repr(now)}
        flat = [x for kv in fields.items() for x in kv]
        if not int(await self.r.eval(_ADD_LUA, 2, self.key("user", name), self.key("users"), name, *flat)):
            raise UserError(f"user {name!r} exists")
        return User(name=name, role=role, tenants=tenants, created_at=now)

    async def get(self, name: str) -> User | None:
        if not _NAME_RE.match(name or ""):
            return None
        raw = await self.r.hgetall(self.key("user", name))
        if not raw or b"role" not in raw and "role" not in raw:
            return None
        d = {_s(k): _s(v) for k, v in raw.items()}
        tenants = tuple(t for t in d.get("tenants", "").split(",") if t)
        return User(name=name, role=d["role"], tenants=tenants, disabled=d.get("disabled") == "1",
                    gen=int(d.get("gen") or 0), created_at=float(d.get("created_at") or 0))

    async def list(self) -> list[User]:
        out = []
        for n in sorted(_s(m) for m in await self.r.smembers(self.key("users"))):
            u = await self.get(n)
            if u is not None:
                out.append(u)
        return out

    async def _require(self, name: str) -> User:
        u = await self.get(name)
        if u is None:
            raise UserError(f"no user {name!r}")
        return u

    async def set_password(self, name: str, password: str) -> None:
        await self._require(name)
        validate_password(password)
        await self.r.hset(self.key("user", name), mapping={"hash": _hasher.hash(password),
                                                           "updated_at": repr(time.time())})
        await self.r.hincrby(self.key("user", name), "gen", 1)  # ends every open session

    async def set_disabled(self, name: str, disabled: bool = True) -> None:
        await self._require(name)
        await self.r.hset(self.key("user", name), mapping={"disabled": "1" if disabled else "0",
                                                           "updated_at": repr(time.time())})
        await self.r.hincrby(self.key("user", name), "gen", 1)

    async def set_access(self, name: str, *, role: str | None = None, tenants: tuple[str, ...] | None = None) -> None:
        await self._require(name)
        mapping = {"updated_at": repr(time.time())}
        if role is not None:
            mapping["role"] = validate_role(role)
        if tenants is not None:
            mapping["tenants"] = ",".join(tenants)
        await self.r.hset(self.key("user", name), mapping=mapping)
        await self.r.hincrby(self.key("user", name), "gen", 1)

    async def authenticate(self, name: str, password: str) -> User | None:
        """The user when ``password`` is right and the user is enabled; None otherwise (same cost)."""
        stored = ""
        if _NAME_RE.match(name or ""):
            stored = _s(await self.r.hget(self.key("user", name), "hash"))
        try:
            _hasher.verify(stored or _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if not stored:
            return None
        user = await self.get(name)
        if user is None or user.disabled:
            return None
        if _hasher.check_needs_rehash(stored):
            await self.r.hset(self.key("user", name), "hash", _hasher.hash(password))
        return user

    # API tokens -------------------------------------------------------------------------------
    async def new_token(self, name: str) -> str:
        await self._require(name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        h = sha256_hex(token)
        await self.r.set(self.key("token", h), name)
        await self.r.sadd(self.key("tokens", name), h)
        return token

    async def revoke_tokens(self, name: str) -> int:
        hashes = [_s(h) for h in await self.r.smembers(self.key("tokens", name))]
        for h in hashes:
            await self.r.delete(self.key("token", h))
        await self.r.delete(self.key("tokens", name))
        return len(hashes)

    async def token_user(self, token: str) -> User | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        name = _s(await self.r.get(self.key("token", sha256_hex(token))))
        if not name:
            return None
        user = await self.get(name)
        if user is None or user.disabled:
            return None
        return user


@dataclass(frozen=True)
class Session:
    sid_hash: str
    user: User
    csrf: str
    created: float


class SessionStore:
    """Server-side sessions: the cookie holds a random id; Redis holds its SHA-256 and the state."""

    def __init__(self, users: UserStore, *, idle_s: int, max_s: int) -> None:
        self.users = users
        self.r = users.r
        self.idle_s = max(1, idle_s)
        self.max_s = max(1, max_s)

    def key(self, sid_hash: str) -> str:
        return self.users.key("sess", sid_hash)

    async def create(self, user: User) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        h = sha256_hex(sid)
        now = time.time()
        csrf = secrets.token_urlsafe(32)
        await self.r.hset(self.key(h), mapping={"user": user.name, "gen": str(user.gen), "csrf": csrf,
                                               "created": repr(now), "seen": repr(now)})
        await self.r.expire(self.key(h), min(self.idle_s, self.max_s))
        return sid, Session(h, user, csrf, now)

    async def load(self, sid: str, now: float | None = None) -> Session | None:
        if not sid or len(sid) > 100:
            return None
        h = sha256_hex(sid)
        raw = await self.r.hgetall(self.key(h))
        if not raw:
            return None
        d = {_s(k): _s(v) for k, v in raw.items()}
        t = time.time() if now is None else now
        created, seen = float(d.get("created") or 0), float(d.get("seen") or 0)
        if t - created >= self.max_s or t - seen >= self.idle_s:
            await self.r.delete(self.key(h))
            return None
        user = await self.users.get(d.get("user", ""))
        if user is None or user.disabled or str(user.gen) != d.get("gen"):
            await self.r.delete(self.key(h))
            return None
        await self.r.hset(self.key(h), "seen", repr(t))
        await self.r.expire(self.key(h), max(1, min(self.idle_s, int(self.max_s - (t - created)) + 1)))
        return Session(h, user, d.get("csrf", ""), created)

    async def flash(self, session: Session, message: str) -> None:
        """A one-time message shown on the next page of this session."""
        await self.r.hset(self.key(session.sid_hash), "flash", message[:500])

    async def pop_flash(self, session: Session) -> str:
        k = self.key(session.sid_hash)
        msg = _s(await self.r.hget(k, "flash"))
        if msg:
            await self.r.hdel(k, "flash")
        return msg

    async def destroy(self, sid: str) -> None:
        if sid:
            await self.r.delete(self.key(sha256_hex(sid)))


def csrf_ok(expected: str, given: str) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(expected.encode(), given.encode())


@dataclass(frozen=True)
class ThrottleState:
    locked: bool
    just_locked: bool = False
    scope: str = ""  # "user" or "address"
    failures: int = 0


class LoginThrottle:
    """Failed-login counters per user name and per client address, with a lockout window.

    A user is locked after ``max_failures`` failures within ``lockout_s``; an address after
    ``4 * max_failures`` (several people can share one address). While locked, even a right password
    is refused. Every well-formed name is counted, whether or not such a user exists, so the lockout
    answer (429) does not tell an attacker which names are real; the counters expire with the window
    and the per-address limit bounds how many names one address can make Redis hold.
    """

    ADDRESS_FACTOR = 4

    def __init__(self, users: UserStore, *, max_failures: int, lockout_s: int) -> None:
        self.users = users
        self.r = users.r
        self.max_failures = max(1, max_failures)
        self.lockout_s = max(1, lockout_s)

    def _k(self, kind: str, scope: str, ident: str) -> str:
        return self.users.key(kind, scope, sha256_hex(ident)[:32])  # typed names and addresses stay out of keys

    async def locked(self, name: str, addr: str) -> ThrottleState:
        if await self.r.exists(self._k("lock", "addr", addr)):
            return ThrottleState(True, scope="address")
        if _NAME_RE.match(name or "") and await self.r.exists(self._k("lock", "user", name)):
            return ThrottleState(True, scope="user")
        return ThrottleState(False)

    async def _bump(self, scope: str, ident: str, limit: int) -> tuple[int, bool]:
        k = self._k("fail", scope, ident)
        n = int(await self.r.incr(k))
        if n == 1:
            await self.r.expire(k, self.lockout_s)
        if n >= limit:
            first = await self.r.set(self._k("lock", scope, ident), "1", nx=True, ex=self.lockout_s)
            if first:
                await self.r.delete(k)
            return n, bool(first)
        return n, False

    async def failure(self, name: str, addr: str) -> ThrottleState:
        n_addr, addr_locked = await self._bump("addr", addr, self.max_failures * self.ADDRESS_FACTOR)
        if addr_locked:
            return ThrottleState(True, True, "address", n_addr)
        if _NAME_RE.match(name or ""):  # every real user name matches: they are checked at creation
            n_user, user_locked = await self._bump("user", name, self.max_failures)
            if user_locked:
                return ThrottleState(True, True, "user", n_user)
            return ThrottleState(False, failures=n_user)
        return ThrottleState(False, failures=n_addr)

    async def success(self, name: str) -> None:
        await self.r.delete(self._k("fail", "user", name))
