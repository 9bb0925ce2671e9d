"""Prometheus metrics of the ingress, in a registry of its own (one per app, so tests do not collide).

Counters are updated on the request path; the gauges that need Redis (queue depth and oldest job
age per stage, dead letters per stage) are refreshed when ``/metrics`` is scraped, at most once per
``REFRESH_S``, so a scrape storm cannot become a Redis storm.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from pipeline.models import STAGES

REFRESH_S = 5.0
DLQ_SCAN_LIMIT = 100_000

# Values of the ``outcome`` label of ghl_intake_ingress_requests_total.
OUTCOMES = (
    "accepted", "unauthorized", "stale", "bad_request", "too_large", "unsupported_media_type",
    "not_found", "method_not_allowed", "busy", "throttled", "error",
)

__all__ = ["CONTENT_TYPE_LATEST", "IngressMetrics", "OUTCOMES"]


class IngressMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("ghl_intake_ingress_requests", "Webhook requests by endpoint and outcome.",
                                ["endpoint", "outcome"], registry=r)
        self.verify_failures = Counter("ghl_intake_ingress_verification_failures",
                                       "Failed verifications by scheme and reason.", ["scheme", "reason"], registry=r)
        self.accepted = Counter("ghl_intake_ingress_accepted", "Accepted events by verification scheme.",
                                ["scheme"], registry=r)
        self.enqueue_seconds = Histogram(
            "ghl_intake_ingress_enqueue_seconds", "Time to seal and enqueue one envelope.",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0), registry=r)
        self.body_timestamp = Counter("ghl_intake_ingress_body_timestamp",
                                      "Body timestamp checks (ok, missing, unreadable, stale, future).",
                                      ["state"], registry=r)
        self.bursts = Counter("ghl_intake_ingress_verification_bursts",
                              "Bursts of failed verifications from one client (security events written).",
                              registry=r)
        self.monitor_errors = Counter("ghl_intake_ingress_monitor_errors",
                                      "Failures of the attack monitor itself (Redis down, alert webhook).",
                                      ["what"], registry=r)
        self.queue_depth = Gauge("ghl_intake_queue_depth", "Jobs waiting on each stage queue.", ["stage"], registry=r)
        self.queue_oldest_age = Gauge("ghl_intake_queue_oldest_age_seconds",
                                      "Age of the oldest due job on each stage queue.", ["stage"], registry=r)
        self.dead_letters = Gauge("ghl_intake_dead_letters", "Dead letters waiting for an operator, per stage.",
                                  ["stage"], registry=r)
        self.scrape_errors = Counter("ghl_intake_metrics_refresh_errors", "Failed gauge refreshes (Redis).",
                                     registry=r)
        for s in STAGES:
            self.queue_depth.labels(s)
            self.queue_oldest_age.labels(s)
            self.dead_letters.labels(s)
        self._refreshed = 0.0
        self._req_children: dict[tuple[str, str], Any] = {}
        self._accepted_children: dict[str, Any] = {}
        self._stamp_children: dict[str, Any] = {}

    def request(self, endpoint: str, outcome: str) -> None:
        child = self._req_children.get((endpoint, outcome))
        if child is None:
            child = self._req_children[(endpoint, outcome)] = self.requests.labels(endpoint, outcome)
        child.inc()

    def accepted_by(self, scheme: str) -> None:
        child = self._accepted_children.get(scheme)
        if child is None:
            child = self._accepted_children[scheme] = self.accepted.labels(scheme)
        child.inc()

    def stamp(self, state: str) -> None:
        child = self._stamp_children.get(state)
        if child is None:
            child = self._stamp_children[state] = self.body_timestamp.labels(state)
        child.inc()

    async def refresh(self, deps: Any, *, force: bool = False) -> None:
        """Read queue depths, oldest job ages and dead letters from Redis into the gauges."""
        if not force and time.monotonic() - self._refreshed < REFRESH_S:
            return
        from store.dlq import DeadLetterStore

        snap = await queue_snapshot(deps.pool, deps.settings)
        for stage, (depth, age) in snap.items():
            self.queue_depth.labels(stage).set(depth)
            self.queue_oldest_age.labels(stage).set(age)
        per_stage = dict.fromkeys(STAGES, 0)
        for dl in await DeadLetterStore(deps.pool, deps.keyring, prefix=deps.settings.key_prefix).list(
                limit=DLQ_SCAN_LIMIT):
            per_stage[dl.stage] = per_stage.get(dl.stage, 0) + 1
        for stage, n in per_stage.items():
            self.dead_letters.labels(stage).set(n)
        self._refreshed = time.monotonic()

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def queue_snapshot(pool: Any, settings: Any) -> dict[str, tuple[int, float]]:
    """Per stage: (jobs on the queue, age in seconds of the oldest due job; 0 when none is due)."""
    now_ms = time.time() * 1000
    pipe = pool.pipeline(transaction=False)
    for s in STAGES:
        q = settings.key("q", s)
        pipe.zcard(q)
        pipe.zrange(q, 0, 0, withscores=True)
    res = await pipe.execute()
    out: dict[str, tuple[int, float]] = {}
    for i, s in enumerate(STAGES):
        depth = int(res[2 * i])
        first = res[2 * i + 1]
        age = max(0.0, (now_ms - float(first[0][1])) / 1000) if first else 0.0
        out[s] = (depth, age)
    return out
