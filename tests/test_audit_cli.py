"""``ghl-intake audit ...`` handlers, called directly with an argparse Namespace, on real Redis."""

from __future__ import annotations

import argparse
import asyncio
import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.asyncio import Redis

from ghl_intake.commands import audit as cli
from pipeline.audit import verify_export_lines
from store.audit import SYSTEM_TENANT, AuditStore, public_key_pem

REDIS_URL = "redis://127.0.0.1:6379/0"
RAW_KEY = bytes(range(7, 39))
KEY = Ed25519PrivateKey.from_private_bytes(RAW_KEY)


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _ping() -> bool:
    r = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await r.ping()
        return True
    except Exception:
        return False
    finally:
        await r.aclose()


@pytest.fixture
def prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    if not _run(_ping()):
        pytest.skip("no Redis at 127.0.0.1:6379")
    p = f"t-audit-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("INTAKE_KEY_PREFIX", p)
    monkeypatch.setenv("INTAKE_AUDIT_SIGNING_KEY", base64.b64encode(RAW_KEY).decode())
    monkeypatch.setenv("INTAKE_AUDIT_EXPORT_DIR", str(tmp_path / "export"))
    monkeypatch.setenv("INTAKE_AUDIT_CHECKPOINT_EVERY", "5")
    yield p

    async def clean() -> None:
        r = Redis.from_url(REDIS_URL)
        keys = [k async for k in r.scan_iter(match=f"{p}:*", count=1000)]
        if keys:
            await r.delete(*keys)
        await r.aclose()

    _run(clean())


def _populate(prefix: str, export: Path) -> None:
    async def go() -> None:
        r = Redis.from_url(REDIS_URL)
        store = AuditStore(r, prefix=prefix, signing_key=KEY, export_dir=export, checkpoint_every=5)
        for i in range(12):
            for stage in ("dedup", "persist"):
                await store.append(f"loc-{i % 2}", event_id=f"ev-{i}", stage=stage, outcome="processed",
                                   contact="a1b2c3d4e5f6", counts={"PHONE_NUMBER": 1})
        await store.export_pending()
        await r.aclose()

    _run(go())


def _ns(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {"tenant": None, "export": None, "pubkey": None, "partial": False}
    base.update(kw)
    return argparse.Namespace(**base)


def _tamper(prefix: str, tenant: str, index: int) -> None:
    async def go() -> None:
        r = Redis.from_url(REDIS_URL)
        key = f"{prefix}:audit:log:{tenant}"
        line = await r.lindex(key, index)
        await r.lset(key, index, line.replace(b'"PHONE_NUMBER":1', b'"PHONE_NUMBER":2'))
        await r.aclose()

    _run(go())


def test_register_wires_subcommands() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    args = parser.parse_args(["audit", "verify", "--tenant", "t1", "--pubkey", "a.pem", "--pubkey", "b.pem"])
    assert args.func is cli.cmd_verify and args.tenant == "t1" and args.pubkey == ["a.pem", "b.pem"]
    args = parser.parse_args(["audit", "export", "--tenant", "t", "--since", "2026-12-01", "--until", "2026-12-02"])
    assert args.func is cli.cmd_export and args.since == "2026-12-01"
    assert parser.parse_args(["audit", "show", "--event", "E"]).func is cli.cmd_show
    assert parser.parse_args(["audit", "checkpoint"]).func is cli.cmd_checkpoint


def test_verify_ok_then_broken(prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _populate(prefix, tmp_path / "export")
    assert cli.cmd_verify(_ns()) == 0
    out = capsys.readouterr().out
    assert "OK    loc-0" in out and "OK    loc-1" in out and "signed checkpoints verified" in out
    _tamper(prefix, "loc-1", 8)
    assert cli.cmd_verify(_ns()) == 1
    out = capsys.readouterr().out
    assert "OK    loc-0" in out and "FAIL  loc-1  first bad seq 9:" in out
    assert cli.cmd_verify(_ns(tenant="loc-0")) == 0


def test_verify_export_with_public_key_only(prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    export = tmp_path / "export"
    _populate(prefix, export)
    pem = tmp_path / "audit-public.pem"
    pem.write_text(public_key_pem(KEY))
    for name in ("REDIS_URL", "INTAKE_AUDIT_SIGNING_KEY", "INTAKE_KEY_PREFIX"):
        monkeypatch.delenv(name)  # the auditor has the files and the public key, nothing else
    assert cli.cmd_verify(_ns(export=str(export), pubkey=[str(pem)])) == 0
    out = capsys.readouterr().out
    assert "OK    loc-0" in out and "signed checkpoints verified" in out
    [day] = sorted(export.glob("audit_*.jsonl"))
    assert cli.cmd_verify(_ns(export=str(day), pubkey=[pem.read_text()])) == 0  # one day's file, PEM text
    # a checkpoint signed by another key is rejected
    other = Ed25519PrivateKey.generate()
    assert cli.cmd_verify(_ns(export=str(export), pubkey=[public_key_pem(other)])) == 1
    capsys.readouterr()
    text = day.read_bytes()
    day.write_bytes(text.replace(b'"seq":3,', b'"seq":3 ,', 1))
    assert cli.cmd_verify(_ns(export=str(export), pubkey=[str(pem)])) == 1
    assert "first bad seq 3" in capsys.readouterr().out
    assert cli.cmd_verify(_ns(export=str(tmp_path / "nothing-here"), pubkey=[str(pem)])) == 2


def test_export_show_checkpoint_and_operator_audit(prefix: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _populate(prefix, tmp_path / "export")
    assert cli.cmd_export(argparse.Namespace(tenant="loc-0", since=None, until=None)) == 0
    lines = capsys.readouterr().out.splitlines()
    [rep] = verify_export_lines(lines, [KEY.public_key()])
    assert rep.ok and rep.records == 12 and rep.signed
    assert cli.cmd_export(argparse.Namespace(tenant="loc-0", since="2000-01-01", until="2000-01-02")) == 0
    assert capsys.readouterr().out == ""
    assert cli.cmd_export(argparse.Namespace(tenant="loc-0", since="yesterday", until=None)) == 2

    assert cli.cmd_show(argparse.Namespace(event="ev-3", json=True)) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and '"stage":"dedup"' in out[0] and '"stage":"persist"' in out[1]
    assert cli.cmd_show(argparse.Namespace(event="ev-3", json=False)) == 0
    assert "persist" in capsys.readouterr().out
    assert cli.cmd_show(argparse.Namespace(event="missing", json=False)) == 1

    assert cli.cmd_checkpoint(argparse.Namespace(tenant=None)) == 0
    text_out = capsys.readouterr().out
    assert "checkpoint loc-0 seq 12" in text_out and "checkpoint loc-1 seq 12" in text_out

    async def system() -> list[str]:
        r = Redis.from_url(REDIS_URL)
        recs = await AuditStore(r, prefix=prefix).records(SYSTEM_TENANT)
        await r.aclose()
        return [f"{x.outcome} {x.actor}" for x in recs]

    ops = _run(system())
    assert [o.split()[0] for o in ops] == ["audit.export", "audit.export", "audit.show", "audit.show",
                                          "audit.show", "audit.checkpoint"]
    assert all(o.split()[1].startswith("operator:") for o in ops)
    assert cli.cmd_verify(_ns()) == 0


def test_checkpoint_without_key(prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INTAKE_AUDIT_SIGNING_KEY")
    assert cli.cmd_checkpoint(argparse.Namespace(tenant=None)) == 2


def test_needs_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from ghl_intake.settings import SettingsError

    monkeypatch.delenv("REDIS_URL", raising=False)
    with pytest.raises(SettingsError):
        cli.cmd_verify(_ns())


def test_pubkey(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("INTAKE_AUDIT_SIGNING_KEY", base64.b64encode(RAW_KEY).decode())
    assert cli.cmd_pubkey(argparse.Namespace()) == 0
    assert capsys.readouterr().out == public_key_pem(KEY)
    monkeypatch.delenv("INTAKE_AUDIT_SIGNING_KEY")
    assert cli.cmd_pubkey(argparse.Namespace()) == 2
