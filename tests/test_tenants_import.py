"""``tenants import DIR``: both forms of the old layout, idempotent, dry-run, bad files skipped whole."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import fakeredis
import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from ghl_intake.cli import main
from ghl_intake.keys import generate_env
from store.keyring import Keyring
from store.tenants import TenantRegistry, import_dir
from tests import test_reliability_support as support


def write_fixtures(d: Path, fkey: bytes) -> dict[str, dict[str, str]]:
    """Files in both forms, as the replaced system wrote them, plus bad ones. Returns the good ones."""
    f = Fernet(fkey)
    good = {
        "locPlain1": {"anthropic_api_key": "sk-ant-api03-PLAIN1", "ghl_api_key": "pit-plain-1",
                      "ghl_calendar_id": "cal_plain_1"},
        "locPlain2": {"ghl_api_key": "pit-plain-2"},
        "locEnc1": {"anthropic_api_key": "sk-ant-api03-ENC1", "ghl_api_key": "pit-enc-1", "ghl_calendar_id": "cal_e1"},
        "locEnc2": {"anthropic_api_key": "sk-ant-api03-ENC2"},
    }
    for loc in ("locPlain1", "locPlain2"):
        (d / f"{loc}.json").write_text(json.dumps({**good[loc], "updated_at": "2025-11-02T10:00:00Z"}))
    for loc in ("locEnc1", "locEnc2"):
        doc: dict[str, str] = {"encryption_version": "v1", "updated_at": "2025-11-02T10:00:00Z"}
        for k, v in good[loc].items():
            if k == "ghl_calendar_id":
                doc[k] = v
            else:
                doc[f"{k}_encrypted"] = f.encrypt(v.encode()).decode()
        (d / f"{loc}.json").write_text(json.dumps(doc))
    other = Fernet(Fernet.generate_key())
    (d / "badJson.json").write_text("{not json")
    (d / "badList.json").write_text("[1,2]")
    (d / "bad.name.json").write_text(json.dumps({"ghl_api_key": "pit-badname"}))
    (d / "badEmpty.json").write_text(json.dumps({"updated_at": "x"}))
    (d / "badType.json").write_text(json.dumps({"ghl_api_key": 123}))
    # half-good encrypted file: one field decrypts, the other was written with another key
    (d / "badHalf.json").write_text(json.dumps({
        "encryption_version": "v1", "anthropic_api_key_encrypted": f.encrypt(b"sk-ant-api03-HALF").decode(),
        "ghl_api_key_encrypted": other.encrypt(b"pit-half").decode()}))
    (d / "badVersion.json").write_text(json.dumps({"encryption_version": "v2", "ghl_api_key_encrypted": "x"}))
    (d / "notes.txt").write_text("ignored")
    return good


async def test_import_both_forms_idempotent_dry_run(tmp_path: Path) -> None:
    fkey = Fernet.generate_key()
    good = write_fixtures(tmp_path, fkey)
    r = fakeredis.FakeAsyncRedis()
    reg = TenantRegistry(r, Keyring([("k1", os.urandom(32))]), prefix="imp")

    dry = await import_dir(reg, tmp_path, fernet_key=fkey.decode(), dry_run=True)
    assert dry.imported == 4 and dry.failed == 7
    assert await reg.list() == [] and await r.dbsize() == 0  # nothing written

    rep = await import_dir(reg, tmp_path, fernet_key=fkey.decode(), tier="professional")
    by = {f.file: f for f in rep.files}
    assert {f.tenant for f in rep.files if f.status == "imported"} == set(good)
    for name in ("badJson", "badList", "bad.name", "badEmpty", "badType", "badHalf", "badVersion"):
        assert by[f"{name}.json"].status == "skipped", name
    assert "does not decrypt" in by["badHalf.json"].detail
    assert "notes.txt" not in by
    for loc, creds in good.items():
        assert await reg.credentials(loc) == creds
        t = await reg.get(loc)
        assert t is not None and t.tier == "professional"
    # bad files never half-imported
    assert await reg.get("badHalf") is None and await reg.credentials("badHalf") == {}
    # no credential is stored in clear
    for k in await r.keys("*"):
        if (await r.type(k)) == b"hash":
            blob = b"".join((await r.hgetall(k)).values())
            assert b"sk-ant" not in blob and b"pit-" not in blob

    again = await import_dir(reg, tmp_path, fernet_key=fkey.decode())
    assert again.imported == 0 and again.unchanged == 4 and again.failed == 7

    # a changed file updates only what changed, and keeps the tier
    await reg.set_tier("locPlain2", "enterprise")
    (tmp_path / "locPlain2.json").write_text(json.dumps({"ghl_api_key": "pit-plain-2-new"}))
    third = await import_dir(reg, tmp_path, fernet_key=fkey.decode())
    assert [f.tenant for f in third.files if f.status == "imported"] == ["locPlain2"]
    assert await reg.credentials("locPlain2") == {"ghl_api_key": "pit-plain-2-new"}
    assert (await reg.get("locPlain2")).tier == "enterprise"  # type: ignore[union-attr]


async def test_encrypted_files_need_the_key(tmp_path: Path) -> None:
    write_fixtures(tmp_path, Fernet.generate_key())
    reg = TenantRegistry(fakeredis.FakeAsyncRedis(), Keyring([("k1", os.urandom(32))]))
    rep = await import_dir(reg, tmp_path, fernet_key=None)
    by = {f.tenant: f for f in rep.files}
    assert by["locEnc1"].status == "skipped" and "TENANT_ENCRYPTION_KEY" in by["locEnc1"].detail
    assert by["locPlain1"].status == "imported"
    with pytest.raises(FileNotFoundError):
        await import_dir(reg, tmp_path / "nope")


def test_import_cli_real_redis(tmp_path: Path, real_redis_url: str, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    fkey = Fernet.generate_key()
    good = write_fixtures(tmp_path, fkey)
    env = {**generate_env("k1"), "REDIS_URL": real_redis_url, "INTAKE_KEY_PREFIX": f"i{uuid.uuid4().hex[:8]}",
           "TENANT_ENCRYPTION_KEY": fkey.decode()}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(["tenants", "import", str(tmp_path), "--dry-run"]) == 1  # bad files: exit 1
    out = capsys.readouterr().out
    assert "dry run: nothing written" in out and "would-import" in out and "4 would be imported" in out
    assert main(["tenants", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["tenants", "import", str(tmp_path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert sorted(f["tenant"] for f in report if f["status"] == "imported") == sorted(good)
    for f in report:  # the report never shows credential values
        assert "sk-ant" not in json.dumps(f) and "pit-" not in json.dumps(f)
    assert main(["tenants", "list", "--json"]) == 0
    assert sorted(t["id"] for t in json.loads(capsys.readouterr().out)) == sorted(good)

    async def check() -> None:
        from ghl_intake.settings import parse_master_keys

        r = Redis.from_url(real_redis_url)
        reg = TenantRegistry(r, Keyring(parse_master_keys(env["INTAKE_MASTER_KEYS"])), prefix=env["INTAKE_KEY_PREFIX"])
        assert await reg.credentials("locEnc1") == good["locEnc1"]
        await r.aclose()

    import asyncio

    asyncio.run(check())


private_redis_server = support.private_redis_server


async def test_a_redis_failure_mid_import_leaves_nothing_half_written(
        tmp_path: Path, private_redis_server: support.RedisServer | None) -> None:
    """A real Redis refuses the credentials write (an ACL that lets this user register a tenant but
    not store its credentials): the tenant is not registered either, and a re-run imports it whole."""
    if private_redis_server is None:
        pytest.skip("needs the redis-server binary")
    (tmp_path / "locAtom.json").write_text(json.dumps({"ghl_api_key": "pit-atom-1", "ghl_calendar_id": "cal_a"}))
    admin = Redis.from_url(private_redis_server.url)
    await admin.execute_command("ACL", "SETUSER", "importer", "on", ">pw", "+@all", "~imp:dk:*",
                                "~imp:tenants", "~imp:tenant:locAtom", "%R~imp:tenant:locAtom:creds")
    limited = Redis(port=private_redis_server.port, username="importer", password="pw")
    keyring = Keyring([("k1", os.urandom(32))])
    try:
        with pytest.raises(ResponseError):
            await import_dir(TenantRegistry(limited, keyring, prefix="imp"), tmp_path)
        # neither the registration nor the tenant hash nor any credential was written
        assert await admin.exists("imp:tenant:locAtom", "imp:tenant:locAtom:creds") == 0
        assert not await admin.sismember("imp:tenants", "locAtom")
        reg = TenantRegistry(admin, keyring, prefix="imp")
        assert not await reg.exists("locAtom")
        rep = await import_dir(reg, tmp_path)
        assert [(f.tenant, f.status) for f in rep.files] == [("locAtom", "imported")]
        assert await reg.credentials("locAtom") == {"ghl_api_key": "pit-atom-1", "ghl_calendar_id": "cal_a"}
    finally:
        await limited.aclose()
        await admin.aclose()
