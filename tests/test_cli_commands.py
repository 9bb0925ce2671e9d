"""The service commands as an operator runs them: refusal without keys, ``--dev``, ``keys generate``,
``stats --json`` (real processes and real Redis where they need one)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ghl_intake.cli import main
from ghl_intake.demo_data import fixture_webhooks
from ghl_intake.signing import GhlSigner
from tests.conftest import make_settings
from tests.harness import pipeline
from tests.test_gdpr import env_of
from workers.stages import CRON_AUDIT_TICK

ROOT = Path(__file__).resolve().parent.parent
KEY_SETTINGS = ("INTAKE_MASTER_KEYS", "INTAKE_PSEUDONYM_KEY", "INTAKE_AUDIT_SIGNING_KEY")
CLI = [sys.executable, "-m", "ghl_intake.cli"]


def _bare_env(**extra: str) -> dict[str, str]:
    """The environment without any key setting (as on a fresh Railway service)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INTAKE_", "PII_", "GHL_", "REDIS_URL"))}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


@pytest.mark.parametrize("argv", [["run"], ["serve"], ["worker", "dedup"], ["console"]])
def test_service_commands_refuse_to_start_without_keys_and_name_them(argv: list[str]) -> None:
    res = subprocess.run([*CLI, *argv], env=_bare_env(REDIS_URL="redis://127.0.0.1:1/0"), cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    err = res.stderr.strip()
    assert "refusing to start" in err and all(name in err for name in KEY_SETTINGS), err
    assert "Traceback" not in err


def test_procfile_worker_refuses_without_keys_in_one_line(real_redis_url: str) -> None:
    # the Procfile's form: arq imports the WorkerSettings and runs our startup, which refuses
    res = subprocess.run([sys.executable, "-m", "arq", "workers.rate.WorkerSettings"],
                         env=_bare_env(REDIS_URL=real_redis_url), cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode != 0
    assert "ghl-intake rate worker: refusing to start" in res.stderr and "INTAKE_MASTER_KEYS" in res.stderr
    assert "Traceback" not in res.stderr


def test_dev_starts_with_ephemeral_keys_and_a_loud_warning() -> None:
    from tests.test_reliability_support import free_port

    port = free_port()  # a fixed port could be taken by anything else on the machine
    proc = subprocess.Popen([*CLI, "run", "--dev", "--host", "127.0.0.1", "--port", str(port)], env=_bare_env(),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import httpx

        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert health is not None and health.status_code == 200 and health.json()["redis"] is True
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "--dev: EPHEMERAL KEYS" in err and all(name in err for name in KEY_SETTINGS)


def test_keys_generate_prints_env_lines_that_start_the_service(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "generate"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln and not ln.startswith("#")]
    values = dict(ln.split("=", 1) for ln in lines)
    assert set(KEY_SETTINGS) <= set(values) and all(values[k] for k in KEY_SETTINGS)
    assert main(["keys", "generate"]) == 0  # fresh values every time
    again = dict(ln.split("=", 1) for ln in capsys.readouterr().out.splitlines() if ln and not ln.startswith("#"))
    assert all(again[k] != values[k] for k in KEY_SETTINGS)
    # they are valid: the key loader accepts them
    from ghl_intake import keys
    from ghl_intake.settings import Settings

    s = Settings.from_env({**values})
    km = keys.load(s)
    assert km.keyring.primary and len(km.pseudonym_key) == 32


def test_stats_json_shape_and_counts(real_redis_url: str, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    signer = GhlSigner()
    settings = make_settings(real_redis_url, signer)
    hook = next(h for h in fixture_webhooks() if h.shape == "marketplace")
    body = json.dumps({**json.loads(hook.body), "webhookId": str(uuid.uuid4())}).encode()

    async def run() -> None:
        async with pipeline(settings, signer, tenants=(json.loads(body).get("locationId", ""),)) as p:
            assert (await p.post(body)).status_code == 200
            await p.quiet()
            assert (await p.post(body)).status_code == 200  # same webhookId: a duplicate
            await p.quiet()

    asyncio.run(run())

    async def heartbeat_scheduled() -> None:  # as arq's cron scheduler leaves it in a running worker's queue
        from redis.asyncio import Redis

        r = Redis.from_url(real_redis_url)
        await r.zadd(settings.key("q", "audit"), {f"{CRON_AUDIT_TICK}_{settings.key_prefix}:1764800000000": time.time() * 1000 + 4000})
        await r.aclose()

    asyncio.run(heartbeat_scheduled())
    for k, v in env_of(settings).items():
        monkeypatch.setenv(k, v)
    assert main(["stats", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    # the audit worker's scheduled heartbeat job is still in its queue: it is not work waiting
    assert doc["queues"] == {"dedup": 0, "rate": 0, "redact": 0, "persist": 0, "audit": 0}
    assert {k: doc["outcomes"][k] for k in ("processed", "duplicate", "deferred", "dead_lettered")} == {
        "processed": 1, "duplicate": 1, "deferred": 0, "dead_lettered": 0}



@pytest.mark.parametrize("model, pattern_only", [("none", True), ("no_such_model", True), ("", False)])
def test_redaction_says_at_start_up_when_it_runs_pattern_only(model: str, pattern_only: bool) -> None:
    extra = {"PII_SPACY_MODEL": model} if model else {}  # "": the default model, installed by the `ner` extra
    res = subprocess.run([*CLI, "redact"], input="call me at 512-555-0142", env=_bare_env(**extra), cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert ("running pattern-only" in res.stderr) is pattern_only, res.stderr
    assert "512-555-0142" not in res.stdout and "PHONE_NUMBER" in res.stdout
