"""What the console pages and the API show, scoped to a user. Reads only; actions live in the handlers.

Per-tenant counts over time come from the tenant's audit chain (its newest records): every stage
outcome is audited there with a timestamp, so no extra counters are needed in the hot path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ghl_intake.settings import Settings
from pipeline.models import STAGES
from store.audit import SYSTEM_TENANT
from store.dlq import DeadLetter, DeadLetterStore, is_entry_id
from store.users import User

from .auth import ConsoleDeps, require_tenant

OUTCOMES = ("processed", "duplicate", "deferred", "dead_lettered")
SERIES_MAX_RECORDS = 50_000  # at most this many newest audit records are read per tenant for the chart
SERIES_PAGE = 2_000
HOUR = 3600


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


async def known_tenants(deps: ConsoleDeps) -> list[str]:
    """Every tenant the deployment knows: audit chains, the tenant registry, dead letters."""
    found = set(await deps.audit.tenants())
    r: Any = deps.redis
    try:
        for m in await r.smembers(deps.settings.key("tenants")):
            found.add(_s(m))
    except Exception:  # registry key of another type in an older layout: ignore
        pass
    found.discard(SYSTEM_TENANT)
    return sorted(found)


async def visible_tenants(deps: ConsoleDeps, user: User) -> list[str]:
    if user.all_tenants:
        return user.visible(await known_tenants(deps))
    return list(user.tenants)


async def visible_chains(deps: ConsoleDeps, user: User) -> list[str]:
    """The audit chains the user may see: their tenants, and the system chain for those allowed."""
    tenants = await visible_tenants(deps, user)
    return [SYSTEM_TENANT, *tenants] if user.sees(SYSTEM_TENANT) else tenants


async def chains_to_verify(deps: ConsoleDeps, user: User, tenant: str) -> list[str]:
    """One tenant's chain (checked against the user's scope), or every chain the user may see."""
    return [require_tenant(user, tenant)] if tenant else await visible_chains(deps, user)


@dataclass
class Series:
    tenant: str
    hours: list[int]  # hour start (unix seconds), oldest first
    counts: list[dict[str, int]]  # per hour: outcome -> n
    totals: dict[str, int]  # within the window
    records: int  # records in the chain


async def tenant_series(deps: ConsoleDeps, tenant: str, *, hours: int = 24, now: float | None = None) -> Series:
    t = time.time() if now is None else now
    last_hour = int(t // HOUR) * HOUR
    first_hour = last_hour - (hours - 1) * HOUR
    slots = [first_hour + i * HOUR for i in range(hours)]
    counts: list[dict[str, int]] = [dict.fromkeys(OUTCOMES, 0) for _ in slots]
    totals = dict.fromkeys(OUTCOMES, 0)
    r: Any = deps.redis
    n = int(await r.llen(deps.audit.key("log", tenant)))
    from pipeline.audit import parse_iso

    # read from the tail backwards, a page at a time, until the window's start (chains are in time order)
    end, read = n, 0
    while end > 0 and read < SERIES_MAX_RECORDS:
        start = max(0, end - SERIES_PAGE)
        recs = await deps.audit.records(tenant, start, end - 1)
        read += len(recs)
        oldest = None
        for rec in recs:
            ts = parse_iso(rec.ts).timestamp()
            oldest = ts if oldest is None else min(oldest, ts)
            i = int((ts - first_hour) // HOUR)
            if rec.outcome in totals and 0 <= i < hours:
                totals[rec.outcome] += 1
                counts[i][rec.outcome] += 1
        if oldest is not None and oldest < first_hour:
            break
        end = start
    return Series(tenant, slots, counts, totals, n)


COLORS = {"processed": "ok", "duplicate": "dup", "deferred": "def", "dead_lettered": "bad"}


def chart(series: Series, *, width: int = 720, height: int = 180) -> dict[str, Any]:
    """Stacked hourly bars as SVG rectangles (rendered by the template, no script)."""
    peak = max([sum(c.values()) for c in series.counts] + [1])
    n = len(series.hours)
    pad_b, pad_t = 18, 6
    bw = width / n
    bars = []
    for i, (hour, c) in enumerate(zip(series.hours, series.counts, strict=True)):
        y = float(height - pad_b)
        segs = []
        for outcome in OUTCOMES:
            v = c[outcome]
            if not v:
                continue
            h = (height - pad_b - pad_t) * v / peak
            y -= h
            segs.append({"y": round(y, 1), "h": round(max(h, 1), 1), "cls": COLORS[outcome],
                         "title": f"{time.strftime('%H:00', time.gmtime(hour))} {outcome}: {v}"})
        label = time.strftime("%H", time.gmtime(hour)) if i % 3 == 0 else ""
        bars.append({"x": round(i * bw + 1, 1), "w": round(max(bw - 2, 1), 1), "segs": segs, "label": label,
                     "lx": round(i * bw + bw / 2, 1)})
    return {"width": width, "height": height, "bars": bars, "peak": peak, "base": height - pad_b}


async def queues(deps: ConsoleDeps) -> list[dict[str, Any]]:
    """Depth of each stage queue, how many are due now, and the age of the oldest due job."""
    from workers.base import queue_name

    r: Any = deps.redis
    now_ms = time.time() * 1000
    out = []
    for s in STAGES:
        q = queue_name(deps.settings, s)
        depth = int(await r.zcard(q))
        due = int(await r.zcount(q, "-inf", now_ms))
        oldest = await r.zrange(q, 0, 0, withscores=True)
        age = None
        if oldest:
            score = float(oldest[0][1])
            age = max(0.0, (now_ms - score) / 1000) if score <= now_ms else 0.0
        out.append({"stage": s, "depth": depth, "due": due, "deferred": depth - due, "oldest_age_s": age})
    return out


def dlq_store(deps: ConsoleDeps) -> DeadLetterStore:
    return DeadLetterStore(deps.redis, deps.keyring, prefix=deps.settings.key_prefix)


async def dead_letters(deps: ConsoleDeps, user: User, *, tenant: str = "", stage: str = "", reason: str = "",
                       state: str = "dead", limit: int = 500) -> list[DeadLetter]:
    """Dead letters the user may see, filtered. ``tenant`` must be checked by the caller."""
    entries = await dlq_store(deps).list(state=state or None, stage=stage or None, tenant=tenant or None,
                                         limit=10**6)
    out = [e for e in entries if user.sees(e.tenant) and (not reason or e.reason == reason)]
    return out[-limit:][::-1]  # newest first


async def dead_letter(deps: ConsoleDeps, user: User, dlq_id: str) -> DeadLetter | None:
    """The entry when it exists and the user may see its tenant; None otherwise (no existence oracle)."""
    if not is_entry_id(dlq_id):
        return None
    entry = await dlq_store(deps).get(dlq_id)
    if entry is None or not user.sees(entry.tenant):
        return None
    return entry


def verify_key(deps: ConsoleDeps, tenant: str) -> str:
    return deps.users.key("verify", tenant)


async def audit_status(deps: ConsoleDeps, tenants: list[str]) -> list[dict[str, Any]]:
    r: Any = deps.redis
    last = await deps.audit.last_append()
    out = []
    for t in tenants:
        head = await r.hmget(deps.audit.key("head", t), ["seq", "hash"])
        ckpt_n = int(await r.llen(deps.audit.key("ckpt", t)))
        v = {_s(k): _s(x) for k, x in (await r.hgetall(verify_key(deps, t))).items()}
        out.append({"tenant": t, "records": int(head[0]) if head[0] is not None else 0,
                    "head": _s(head[1])[:16] if head[1] is not None else "", "checkpoints": ckpt_n,
                    "last_append": last.get(t), "verify": v or None})
    return out


async def verify_now(deps: ConsoleDeps, tenants: list[str], by: str) -> list[dict[str, Any]]:
    r: Any = deps.redis
    out = []
    for t in tenants:
        reps = await deps.audit.verify(t)
        rep = reps[0]
        result = {"tenant": t, "ok": "1" if rep.ok else "0", "records": str(rep.records),
                  "first_bad_seq": str(rep.first_bad_seq or ""), "reason": rep.reason[:300],
                  "signed": "1" if rep.signed else "0", "at": repr(time.time()), "by": by}
        await r.hset(verify_key(deps, t), mapping=result)
        out.append({"tenant": t, "ok": rep.ok, "records": rep.records, "first_bad_seq": rep.first_bad_seq,
                    "reason": rep.reason, "signed": rep.signed, "checkpoints": rep.checkpoints})
    return out


def _fingerprint(pub: Any) -> str:
    import hashlib

    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return hashlib.sha256(pub.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).hexdigest()[:16]


async def posture(deps: ConsoleDeps) -> dict[str, Any]:
    """Key ids and fingerprints, ingress limits, console settings: no secret material."""
    s: Settings = deps.settings
    out: dict[str, Any] = {
        "keyring": {"primary": deps.keyring.primary, "key_ids": deps.keyring.key_ids},
        "ingress": {"max_body_bytes": s.max_body_bytes, "retry_after_s": s.retry_after_s,
                    "dedup_ttl_s": s.dedup_ttl_s, "default_tier": s.default_tier},
        "audit": {"signing_key": bool(deps.audit.signing_key), "export_dir": bool(s.audit_export_dir),
                  "checkpoint_every": s.audit_checkpoint_every,
                  "checkpoint_interval_s": s.audit_checkpoint_interval_s},
        "console": {"session_idle_s": s.session_idle_s, "session_max_s": s.session_max_s,
                    "cookie_secure": s.cookie_secure, "login_max_failures": s.login_max_failures,
                    "login_lockout_s": s.login_lockout_s, "users": len(await deps.users.list())},
    }
    if deps.audit.signing_key is not None:
        from pipeline.audit import key_id

        out["audit"]["signing_key_id"] = key_id(deps.audit.signing_key.public_key())
    try:
        from ghl_intake.settings import DEFAULT_GHL_ED25519_PEM
        from ingress.verify import load_ed25519_keys

        keys = load_ed25519_keys(s.ghl_ed25519_public_keys, DEFAULT_GHL_ED25519_PEM)
        out["ingress"]["ghl_ed25519_keys"] = [_fingerprint(k) for k in keys]
    except Exception as exc:  # shown, not fatal: the page is for finding such problems
        out["ingress"]["ghl_ed25519_keys_error"] = type(exc).__name__
    try:
        ks = await key_status(deps)
        if ks is not None:
            out["keyring"]["status"] = ks
    except Exception as exc:
        out["keyring"]["status_error"] = type(exc).__name__
    return out


async def key_status(deps: ConsoleDeps) -> Any:
    """``keys status`` (data keys wrapped per master key id) from the envelope crypto, when present."""
    try:
        from store.crypto import EnvelopeCrypto
    except ImportError:
        return None
    crypto: Any = EnvelopeCrypto(deps.redis, deps.keyring, prefix=deps.settings.key_prefix)
    if not hasattr(crypto, "status"):
        return None
    return await crypto.status()
