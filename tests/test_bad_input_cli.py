"""Bad settings and bad command input: one clear line and a non-zero exit, nothing written, no traceback.

Found by probing every command with malformed values; each case here was a traceback, a hang or
silent data loss before."""

from __future__ import annotations

import io
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from redis import Redis as SyncRedis

from ghl_intake.cli import main
from ghl_intake.keys import generate_env
from ghl_intake.settings import LIMITS, Settings, SettingsError

# --------------------------------------------------------------------------- settings


def test_the_defaults_pass_every_check() -> None:
    s = Settings.from_env({})
    for name, (low, high) in LIMITS.items():
        assert low <= getattr(s, name) <= high, name


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("INTAKE_MAX_BODY_BYTES", "100", "between 1,024 and"),
        ("INTAKE_BODY_TIMEOUT_S", "0", "between 0.001 and"),
        ("INTAKE_CONTEXT_MAX_ITEMS", "0", "between 1 and"),  # would empty every context
        ("INTAKE_READY_MAXLEN", "0", "between 1 and"),  # would trim away every published event
        ("INTAKE_DEDUP_TTL_S", "0", "between 60 and"),
        ("INTAKE_DEDUP_TTL_S", "99999999999999999999", "between 60 and"),
        ("INTAKE_EVENT_TTL_S", "0", "between 60 and"),
        ("INTAKE_WORKER_CONCURRENCY", "0", "between 1 and"),  # would never start a job
        ("INTAKE_STAGE_TIMEOUT_S", "0", "between 0.01 and"),
        ("INTAKE_STAGE_TIMEOUT_S", "nan", "finite"),
        ("INTAKE_REDACT_TIMEOUT_S", "inf", "finite"),
        ("INTAKE_RETRY_BASE_S", "-1", "between"),
        ("INTAKE_BP_MAX_MEMORY_RATIO", "1.5", "between"),
        ("INTAKE_OPS_PORT", "99999", "between 0 and 65,535"),
        ("INTAKE_CONSOLE_PORT", "70000", "between 0 and 65,535"),
        ("INTAKE_METRICS_ENABLED", "ture", "must be 1 or 0"),
        ("INTAKE_COOKIE_SECURE", "maybe", "auto, 1 or 0"),
        ("INTAKE_KEY_PREFIX", "a*b", "INTAKE_KEY_PREFIX"),
        ("INTAKE_KEY_PREFIX", " ", "INTAKE_KEY_PREFIX"),
        ("REDIS_URL", "garbage", "redis://"),
    ],
)
def test_settings_that_would_lose_or_stall_events_are_refused(name: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError) as exc:
        Settings.from_env({name: value})
    assert name in str(exc.value) and says in str(exc.value)


def test_zero_stays_allowed_where_it_means_off() -> None:
    s = Settings.from_env({"INTAKE_REPLAY_WINDOW_S": "0", "INTAKE_CONTEXT_TTL_S": "0", "INTAKE_OPS_PORT": "0",
                           "INTAKE_AUDIT_CHECKPOINT_EVERY": "0", "INTAKE_METRICS_ENABLED": "off"})
    assert (s.replay_window_s, s.context_ttl_s, s.ops_port, s.audit_checkpoint_every) == (0, 0, 0, 0)
    assert s.metrics_enabled is False


def test_an_audit_export_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "export"
    f.write_text("not a directory")
    with pytest.raises(SettingsError, match="not a directory"):
        Settings.from_env({"INTAKE_AUDIT_EXPORT_DIR": str(f)})


# --------------------------------------------------------------------------- commands


def _env(monkeypatch: pytest.MonkeyPatch, **extra: str) -> dict[str, str]:
    env = {**generate_env("k1"), "INTAKE_KEY_PREFIX": f"bad{uuid.uuid4().hex[:8]}", **extra}
    for k in list(os.environ):
        if k.startswith(("INTAKE_", "PII_", "GHL_")) or k == "REDIS_URL":
            monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_an_unknown_log_level_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _env(monkeypatch, INTAKE_LOG_LEVEL="garbage")
    assert main(["keys", "generate"]) == 2
    assert "INTAKE_LOG_LEVEL must be one of" in capsys.readouterr().err


def test_unreachable_redis_is_one_line_for_every_redis_command(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    _env(monkeypatch, REDIS_URL="redis://127.0.0.1:1/0")
    for argv in (["stats", "--json"], ["keys", "status"], ["tenants", "list"], ["users", "list"], ["dlq", "list"],
                 ["audit", "verify"], ["gdpr", "export", "--tenant", "locA", "--contact", "c1"]):
        assert main(argv) == 3, argv
        err = capsys.readouterr().err
        assert "Redis is not reachable" in err and "Traceback" not in err, (argv, err)


@pytest.mark.parametrize(
    "argv",
    [["serve", "--port", "99999"], ["console", "--port", "-1"], ["keys", "rotate", "--batch", "0"]],
)
def test_out_of_range_arguments_are_usage_errors(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_a_key_id_every_command_would_reject_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    _env(monkeypatch)
    for bad in ("../x", "", "k" * 40):
        assert main(["keys", "generate", "--key-id", bad]) == 2
        captured = capsys.readouterr()
        assert "--key-id" in captured.err and "INTAKE_MASTER_KEYS" not in captured.out


def test_redact_refuses_binary_input_and_non_json_numbers(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    _env(monkeypatch, PII_SPACY_MODEL="none")
    _stdin(monkeypatch, b"call me \xff\xfe at 555-0142")
    assert main(["redact"]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    _stdin(monkeypatch, b'{"type": "InboundMessage", "body": "hi", "n": NaN}')
    assert main(["redact", "--event"]) == 2
    captured = capsys.readouterr()
    assert "not JSON" in captured.err and captured.out == ""


def test_audit_verify_says_no_when_there_is_nothing_to_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str],
                                                              real_redis_url: str) -> None:
    _env(monkeypatch, REDIS_URL=real_redis_url)
    assert main(["audit", "verify", "--tenant", "locNobody"]) == 1
    assert "no audit chain for tenant 'locNobody'" in capsys.readouterr().err
    (tmp_path / "audit_20260101.jsonl").write_text("")
    (tmp_path / "audit_20260102.jsonl").mkdir()  # a directory with the right name is not a file to read
    assert main(["audit", "verify", "--export", str(tmp_path)]) == 1
    assert "no audit records" in capsys.readouterr().err
    for bad in (str(tmp_path / "missing.pem"), str(tmp_path), "-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----"):
        assert main(["audit", "verify", "--export", str(tmp_path), "--pubkey", bad]) == 2
        assert "--pubkey" in capsys.readouterr().err


def test_users_commands_check_the_audit_key_before_changing_anything(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], real_redis_url: str) -> None:
    env = _env(monkeypatch, REDIS_URL=real_redis_url, INTAKE_AUDIT_SIGNING_KEY="AAAA")
    assert main(["users", "add", "carol", "--role", "admin", "--tenants", "*", "--password", "long-enough-1"]) == 2
    assert "INTAKE_AUDIT_SIGNING_KEY" in capsys.readouterr().err
    r = SyncRedis.from_url(real_redis_url)
    try:
        assert list(r.scan_iter(match=f"{env['INTAKE_KEY_PREFIX']}:*")) == []  # no user, no token, no record
    finally:
        r.close()
    monkeypatch.setenv("INTAKE_AUDIT_SIGNING_KEY", generate_env("k1")["INTAKE_AUDIT_SIGNING_KEY"])
    assert main(["users", "token", "nobody", "--revoke-all"]) == 1
    assert "no user 'nobody'" in capsys.readouterr().err


def test_gdpr_export_out_and_dlq_body_file_are_checked_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str],
                                                             real_redis_url: str) -> None:
    _env(monkeypatch, REDIS_URL=real_redis_url, INTAKE_MAX_BODY_BYTES="2048")
    assert main(["gdpr", "export", "--tenant", "locA", "--contact", "c1", "--out", str(tmp_path)]) == 2
    assert "--out" in capsys.readouterr().err
    big = tmp_path / "big.json"
    big.write_bytes(b"{" + b" " * 4096 + b"}")
    for f, says in ((tmp_path / "missing.json", "cannot read"), (tmp_path, "cannot read"), (big, "larger than")):
        assert main(["dlq", "replay", "0123456789abcdef", "--body-file", str(f)]) == 2
        assert says in capsys.readouterr().err
    assert main(["dlq", "replay", "--dry-run", "zzzz"]) == 1  # no such entry is not a successful dry run


def test_gdpr_export_makes_an_existing_out_file_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str], real_redis_url: str) -> None:
    _env(monkeypatch, REDIS_URL=real_redis_url)
    out = tmp_path / "export.json"
    out.write_text("old")
    out.chmod(0o644)
    assert main(["gdpr", "export", "--tenant", "locA", "--contact", "c1", "--out", str(out)]) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    data: dict[str, Any] = json.loads(out.read_text())
    assert data["tenant"] == "locA"


def test_tenant_credentials_are_bounded_like_the_import(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str], real_redis_url: str,
                                                        tmp_path: Path) -> None:
    _env(monkeypatch, REDIS_URL=real_redis_url)
    assert main(["tenants", "add", "locCred"]) == 0
    capsys.readouterr()
    for value in ("pit-line\nbreak", "x" * 513):
        monkeypatch.setenv("NEW_GHL_KEY", value)
        assert main(["tenants", "set-credentials", "locCred", "--ghl-api-key-env", "NEW_GHL_KEY"]) != 0
        assert "ghl_api_key must be at most 512 characters" in capsys.readouterr().err
    # a file nested past Python's recursion limit is one skipped file, not an aborted import
    (tmp_path / "locDeep.json").write_text("[" * 30000)
    (tmp_path / "locOk.json").write_text(json.dumps({"ghl_api_key": "pit-ok-1"}))
    assert main(["tenants", "import", str(tmp_path), "--json"]) == 1
    report = {f["tenant"]: f["status"] for f in json.loads(capsys.readouterr().out)}
    assert report == {"locDeep": "skipped", "locOk": "imported"}


def test_ghl_public_key_settings_that_cannot_be_read_name_the_setting(tmp_path: Path) -> None:
    from ghl_intake.settings import DEFAULT_GHL_ED25519_PEM, DEFAULT_GHL_RSA_PEM
    from ingress.verify import load_ed25519_keys, load_rsa_keys

    binary = tmp_path / "key.bin"
    binary.write_bytes(b"\x00\xff\xfe" * 100)
    bad_block = "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n"
    for spec, says in ((str(tmp_path / "missing.pem"), "cannot read"), (str(binary), "not a PEM text file"),
                       (str(tmp_path), "cannot read"), (bad_block, "not a public key")):
        with pytest.raises(SettingsError, match=says) as exc:
            load_ed25519_keys(spec, DEFAULT_GHL_ED25519_PEM)
        assert "GHL_ED25519_PUBLIC_KEY" in str(exc.value)
        with pytest.raises(SettingsError, match=says) as exc:
            load_rsa_keys(spec, DEFAULT_GHL_RSA_PEM)
        assert "GHL_RSA_PUBLIC_KEY" in str(exc.value)
