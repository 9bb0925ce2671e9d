"""Watching for attacks: failed verifications per client and reason, bursts -> audit + alert.

Each failed verification (401) is recorded in Redis by one Lua call:

* ``{prefix}:sec:fail:{client}``  ZSET of failure times (sliding window; trimmed to the window and
  to ``threshold`` entries, so a flood cannot grow it);
* ``{prefix}:sec:reasons:{client}:{window no.}``  HASH reason -> count in the current fixed window
  (for operators: what is this client trying?);
* ``{prefix}:sec:burst:{client}``  set NX with the window as TTL when the sliding count reaches the
  threshold: the request that sets it raises the security event, so there is one event per burst
  (a burst that goes on longer than a window raises one more per window).

``client`` is a pseudonym of the address (``pseudonymize_id(key, "_system", ip)``): addresses are
personal data (GDPR), and nothing in Redis, the audit trail or the logs needs the raw value. Set
``INTAKE_LOG_CLIENT_IP=1`` to also put the raw address in the rejection log line and the alert
(for a firewall rule), a choice the operator makes knowingly.

The security event is an audit record on the system chain (``SYSTEM_TENANT``, stage ``ingress``,
outcome ``verification_burst``) and, when ``INTAKE_ALERT_WEBHOOK_URL`` is set, one JSON POST to it.
The monitor never fails a request: its own errors are logged and counted, and the answer stays 401.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from pipeline.audit import SYSTEM_TENANT
from pipeline.pseudonym import pseudonymize_id

log = logging.getLogger("ghl_intake.ingress.security")

ALERT_TIMEOUT_S = 5.0
MONITOR_TIMEOUT_S = 1.0

# KEYS: 1 failure zset, 2 reasons hash, 3 burst flag
# ARGV: 1 now (s, float), 2 window s, 3 threshold, 4 reason, 5 unique member
_RECORD_LUA = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n > threshold then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - threshold - 1)
end
redis.call('EXPIRE', KEYS[1], window)
redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
redis.call('EXPIRE', KEYS[2], window * 2)
local fired = 0
if n >= threshold then
  if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'EX', window) then fired = 1 end
end
return {n, fired}
"""


class AttackMonitor:
    def __init__(self, deps: Any, pseudonym_key: bytes, *, clock: Callable[[], float] = time.time,
                 metrics: Any = None) -> None:
        s = deps.settings
        self.pool = deps.pool
        self.settings = s
        self.pseudonym_key = pseudonym_key
        self.clock = clock
        self.metrics = metrics
        self.threshold = max(1, int(s.failure_burst_threshold))
        self.window_s = max(1, int(s.failure_burst_window_s))
        self._script = deps.pool.register_script(_RECORD_LUA)
        self._tasks: set[asyncio.Task[None]] = set()

    def client_id(self, address: str) -> str:
        return pseudonymize_id(self.pseudonym_key, SYSTEM_TENANT, address)

    def key(self, *parts: str) -> str:
        return self.settings.key("sec", *parts)

    def shown(self, address: str) -> str:
        """How an address appears in logs: its pseudonym, plus the raw value when configured."""
        cid = self.client_id(address)
        return f"{cid} ({address})" if self.settings.log_client_ip else cid

    async def failure(self, address: str, reason: str, scheme: str) -> bool:
        """Record one failed verification; True when this one started a burst (event raised)."""
        cid = self.client_id(address)
        now = self.clock()
        try:
            n, fired = await asyncio.wait_for(self._script(
                keys=[self.key("fail", cid), self.key("reasons", cid, str(int(now // self.window_s))),
                      self.key("burst", cid)],
                args=[repr(now), self.window_s, self.threshold, reason, uuid.uuid4().hex]), MONITOR_TIMEOUT_S)
        except Exception as exc:  # Redis down: the 401 stands, the count is lost (and counted)
            log.warning("attack monitor unavailable (%s)", type(exc).__name__)
            self._count_error("redis")
            return False
        if not int(fired):
            return False
        if self.metrics is not None:
            self.metrics.bursts.inc()
        log.warning("verification burst from client %s: %d failures in %d s (latest: %s, %s)",
                    self.shown(address), int(n), self.window_s, scheme, reason)
        await self._audit(cid, reason, scheme, int(n))
        if self.settings.alert_webhook_url:
            payload = {"event": "verification_burst", "client": cid, "reason": reason, "scheme": scheme,
                       "failures": int(n), "window_s": self.window_s, "at": now}
            if self.settings.log_client_ip:
                payload["address"] = address
            task = asyncio.create_task(self._alert(payload))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return True

    async def _audit(self, cid: str, reason: str, scheme: str, n: int) -> None:
        from store.audit import AuditStore

        try:
            await AuditStore(self.pool, prefix=self.settings.key_prefix).append(
                SYSTEM_TENANT, event_id=uuid.uuid4().hex, stage="ingress", outcome="verification_burst",
                actor="ingress",
                detail={"client": cid, "reason": reason, "scheme": scheme, "failures": str(n),
                        "window_s": str(self.window_s)})
        except Exception as exc:
            log.error("could not write the verification-burst audit record (%s)", type(exc).__name__)
            self._count_error("audit")

    async def _alert(self, payload: dict[str, Any]) -> None:
        try:
            async with httpx.AsyncClient(timeout=ALERT_TIMEOUT_S) as client:
                resp = await client.post(self.settings.alert_webhook_url, json=payload)
            if resp.status_code >= 300:
                log.warning("alert webhook answered %d", resp.status_code)
                self._count_error("alert")
        except Exception as exc:
            log.warning("alert webhook failed (%s)", type(exc).__name__)
            self._count_error("alert")

    def _count_error(self, what: str) -> None:
        if self.metrics is not None:
            self.metrics.monitor_errors.labels(what).inc()

    async def drain(self) -> None:
        """Wait for pending alert posts (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
