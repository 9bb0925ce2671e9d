"""The short chaos run in CI: real processes from the Procfile, a worker SIGKILLed every few seconds,
Redis killed and restarted once (AOF), a few hundred events; nothing lost, nothing applied twice."""

from __future__ import annotations

import json
import shutil

import pytest

from benchmarks.chaos import ok, run_chaos


@pytest.mark.slow
async def test_short_chaos_run_loses_nothing_and_applies_nothing_twice() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("needs the redis-server binary")
    report = await run_chaos(300, workers_per_stage=2, kill_every_s=2.5, redis_restarts=1, over_budget=125,
                             quiet_timeout_s=240, seed=7)
    print(json.dumps(report, default=str))  # the whole report, shown by pytest when an assertion fails
    assert report["accepted"] == 300 and report["ingress_failures"] == 0, report
    assert report["lost"] == 0, report
    assert report["double_applied"] == 0, report
    assert report["audit_ok"] and report["quiet"], report
    assert report["redis_restarts"] == 1 and sum(report["worker_kills"].values()) >= 1, report
    # only the malformed sends (each re-send is its own event) are dead letters, all at dedup
    assert report["dead_lettered"] == report["malformed_accepted"], report
    # plus any malformed send accepted into Redis while its sender saw a 429 (its retry is counted above)
    assert report["dlq_entries"] == report["dead_lettered"] + report["dlq_entries_unanswered"], report
    assert report["unmapped_ready"] == 0, report  # every published event still carries its webhookId
    assert set(report["dlq_by_stage_reason"]) <= {"dedup/permanent"}, report
    # the over-budget tenant (125 events in a few seconds: more than two 60/min windows can take,
    # wherever the sends fall against the minute boundary) was delayed, not dropped
    assert report["deferred_events"] > 0, report
    assert report["missing_in_context"] == report["missing_in_ready"] == report["missing_audit_record"] == 0
    assert ok(report)
