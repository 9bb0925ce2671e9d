"""The README's main command, ``ghl-intake demo``, as a newcomer runs it: in memory, then on real Redis."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from redis import Redis as SyncRedis

from ghl_intake.demo_data import fixture_webhooks, lead_webhooks

ROOT = Path(__file__).resolve().parent.parent


def _run_demo(**extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INTAKE_", "PII_", "GHL_", "REDIS_URL"))}
    env.update({"PYTHONPATH": str(ROOT), "COLUMNS": "200", **extra})
    return subprocess.run([sys.executable, "-m", "ghl_intake.cli", "demo"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def _check_report(res: subprocess.CompletedProcess[str]) -> None:
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    out = res.stdout
    n_fixtures, n_leads = len(fixture_webhooks()), len(lead_webhooks())
    assert n_fixtures >= len(list((ROOT / "tests" / "fixtures" / "ghl").glob("*.json"))) // 2 and n_leads >= 20
    m = re.search(r"(\d+) webhooks, (\d+) tenants, all terminal: True", out)
    assert m, out[-1500:]
    assert int(m.group(1)) > n_fixtures + n_leads  # every fixture, every lead message, and some sent again
    assert "audit verify: OK" in out
    assert "duplicate" in out and "processed" in out
    for entity in ("PHONE_NUMBER", "EMAIL_ADDRESS", "CREDIT_CARD", "PERSON"):
        assert entity in out, entity
    # the table shows what was found, never the values the fake leads sent
    assert not re.search(r"\b555-01\d\d\b", out) and "@example.org" not in out


def test_demo_in_memory() -> None:
    res = _run_demo()
    assert "fakeredis" in res.stderr
    _check_report(res)


def test_demo_on_real_redis_uses_its_own_prefix_and_cleans_up(real_redis_url: str) -> None:
    r = SyncRedis.from_url(real_redis_url)
    try:
        before = set(r.scan_iter(match="intake*", count=1000))
        arq_before = {k for k in r.scan_iter(match="arq:*", count=1000) if not k.startswith(b"arq:in-progress:cron_")}
        res = _run_demo(REDIS_URL=real_redis_url)
        assert "key prefix 'intake-demo-" in res.stderr
        _check_report(res)
        assert set(r.scan_iter(match="intake*", count=1000)) == before  # nothing left, nothing under `intake:`
        # nor arq's own job and result keys of the demo's events (the cron tick's lock expires by itself)
        arq_after = {k for k in r.scan_iter(match="arq:*", count=1000) if not k.startswith(b"arq:in-progress:cron_")}
        assert arq_after <= arq_before, sorted(arq_after - arq_before)[:5]
    finally:
        r.close()
