"""``ghl-intake tenants ...`` against real Redis: secrets printed once, masked in show, audited."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from ghl_intake.cli import main
from ghl_intake.keys import generate_env
from store.keyring import Keyring
from store.tenants import TenantRegistry


@pytest.fixture
def env(real_redis_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {**generate_env("k1"), "REDIS_URL": real_redis_url, "INTAKE_KEY_PREFIX": f"c{uuid.uuid4().hex[:8]}"}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


def reg_call(env: dict[str, str], method: str, *args: Any) -> Any:
    """Call one TenantRegistry method on a fresh connection (the CLI runs its own event loop)."""
    from ghl_intake.settings import parse_master_keys

    async def go() -> Any:
        r = Redis.from_url(env["REDIS_URL"])
        try:
            reg = TenantRegistry(r, Keyring(parse_master_keys(env["INTAKE_MASTER_KEYS"])),
                                 prefix=env["INTAKE_KEY_PREFIX"])
            return await getattr(reg, method)(*args)
        finally:
            await r.aclose()

    return asyncio.run(go())


def test_tenants_cli_flow(env: dict[str, str], capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["tenants", "add", "locA", "--tier", "professional", "--token", "--hmac", "--standard"]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln.rsplit(": ", 1)[1] for ln in out.splitlines() if "secret s_" in ln}
    assert set(lines) == {"token", "hmac", "standard"}
    ws = reg_call(env, "webhook_secrets", "locA")
    assert ws.hmac_keys == [lines["hmac"].encode()]
    monkeypatch.setenv("MY_KEY", "sk-ant-api03-verysecretvalue")
    assert main(["tenants", "set-credentials", "locA", "--anthropic-api-key-env", "MY_KEY"]) == 0
    capsys.readouterr()
    assert main(["tenants", "show", "locA"]) == 0
    shown = capsys.readouterr().out
    for v in [*lines.values(), "sk-ant-api03-verysecretvalue"]:
        assert v not in shown
    assert "****uevalue"[-4:] in shown and "professional" in shown
    assert main(["tenants", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [t["id"] for t in listed] == ["locA"] and len(listed[0]["secrets"]) == 3
    assert main(["tenants", "rotate-secret", "locA", "--scheme", "token"]) == 0
    new_id = capsys.readouterr().out.split()[2].rstrip(":")
    assert len((reg_call(env, "webhook_secrets", "locA")).token_hashes) == 2
    assert main(["tenants", "revoke-secret", "locA", new_id]) == 0
    assert len((reg_call(env, "webhook_secrets", "locA")).token_hashes) == 1
    assert main(["tenants", "revoke-secret", "locA", new_id]) == 1
    assert main(["tenants", "set-tier", "locA", "enterprise"]) == 0
    assert reg_call(env, "get", "locA").tier == "enterprise"
    assert main(["tenants", "add", "../etc"]) == 2
    assert main(["tenants", "remove", "locA"]) == 0
    assert reg_call(env, "get", "locA") is None
    # every operator action is on the system audit chain, with who did it and no secret values
    sync = SyncRedis.from_url(env["REDIS_URL"])
    log = sync.lrange(f"{env['INTAKE_KEY_PREFIX']}:audit:log:_system", 0, -1)
    sync.close()
    outcomes = [json.loads(x)["outcome"] for x in log]
    assert outcomes == ["tenant_add", "tenant_credentials", "tenant_secret_add", "tenant_secret_revoke",
                        "tenant_set_tier", "tenant_remove"]
    assert all(json.loads(x)["actor"].startswith("operator:") for x in log)
    assert not any(v.encode() in b"".join(log) for v in lines.values())


def test_tenants_add_again_keeps_the_tier_and_new_tenants_follow_the_default(
        env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from ghl_intake.settings import Settings
    from store.state import PipelineState

    monkeypatch.setenv("INTAKE_DEFAULT_TIER", "professional")
    assert main(["tenants", "add", "locBig", "--tier", "enterprise"]) == 0
    # adding a secret later with `tenants add` must not drop the tenant to another tier
    assert main(["tenants", "add", "locBig", "--hmac"]) == 0
    assert "exists, tier unchanged (tier enterprise)" in capsys.readouterr().out
    assert reg_call(env, "get", "locBig").tier == "enterprise"
    assert main(["tenants", "add", "locNew"]) == 0
    assert "added (tier professional)" in capsys.readouterr().out
    assert main(["tenants", "show", "locNew", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tier"] == "professional"

    async def tiers() -> tuple[str, str]:
        r = Redis.from_url(env["REDIS_URL"])
        try:
            st = PipelineState(r, Settings.from_env())
            return await st.tier("locBig"), await st.tier("locNew")
        finally:
            await r.aclose()

    # the rate stage reads the same: the set tier, and the setting for a tenant without one
    assert asyncio.run(tiers()) == ("enterprise", "professional")
