"""Console users: the ``ghl-intake users`` commands and the store, against real Redis and real argon2."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from ghl_intake.cli import main
from ghl_intake.keys import generate_env
from store.audit import SYSTEM_TENANT, AuditStore
from store.users import ALL_TENANTS, User, UserError, UserStore, parse_tenants

PW = "a long enough password"


@pytest.fixture
def cli_env(real_redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    prefix = "tusers"
    monkeypatch.setenv("REDIS_URL", real_redis_url)
    monkeypatch.setenv("INTAKE_KEY_PREFIX", prefix)
    for k, v in generate_env("k1").items():
        monkeypatch.setenv(k, v)
    yield prefix


@pytest_asyncio.fixture
async def store(real_redis_url: str) -> AsyncIterator[UserStore]:
    r = Redis.from_url(real_redis_url)
    yield UserStore(r, prefix="tusers")
    await r.aclose()


def _all_redis_bytes(url: str) -> bytes:
    r: Any = SyncRedis.from_url(url)
    out = []
    for k in r.scan_iter(count=1000):
        out.append(k)
        t = r.type(k)
        if t == b"hash":
            for f, v in r.hgetall(k).items():
                out += [f, v]
        elif t == b"string":
            out.append(r.get(k) or b"")
        elif t == b"set":
            out += list(r.smembers(k))
        elif t == b"list":
            out += r.lrange(k, 0, -1)
    r.close()
    return b"\n".join(out)


def test_cli_add_list_token_passwd_disable(cli_env: str, real_redis_url: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["users", "add", "alice", "--role", "operator", "--tenants", "locA,locB", "--password", PW]) == 0
    assert "added alice" in capsys.readouterr().out
    assert main(["users", "add", "alice", "--role", "admin", "--tenants", "*", "--password", PW]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["users", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"name": "alice", "role": "operator", "tenants": ["locA", "locB"], "disabled": False}]

    assert main(["users", "token", "alice"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1].split()[-1]
    assert token.startswith("gik_") and len(token) > 40

    async def check(tok: str, password: str) -> tuple[User | None, User | None]:
        r = Redis.from_url(real_redis_url)
        try:
            s = UserStore(r, prefix=cli_env)
            return await s.token_user(tok), await s.authenticate("alice", password)
        finally:
            await r.aclose()

    import asyncio

    by_token, by_pw = asyncio.run(check(token, PW))
    assert by_token is not None and by_token.name == "alice" and by_pw is not None
    dump = _all_redis_bytes(real_redis_url)
    assert token.encode() not in dump and PW.encode() not in dump and b"$argon2id$" in dump

    assert main(["users", "passwd", "alice", "--password", "another long password"]) == 0
    assert asyncio.run(check(token, PW))[1] is None
    assert asyncio.run(check(token, "another long password"))[1] is not None
    assert main(["users", "passwd", "alice", "--password", "short"]) == 1
    assert "at least 10" in capsys.readouterr().err

    assert main(["users", "disable", "alice"]) == 0
    assert asyncio.run(check(token, "another long password")) == (None, None)
    assert main(["users", "enable", "alice"]) == 0
    assert asyncio.run(check(token, "another long password"))[0] is not None
    assert main(["users", "token", "alice", "--revoke-all"]) == 0
    assert asyncio.run(check(token, "another long password"))[0] is None
    assert main(["users", "passwd", "nobody", "--password", PW]) == 1

    async def audited() -> list[str]:
        r = Redis.from_url(real_redis_url)
        try:
            return [rec.outcome for rec in await AuditStore(r, prefix=cli_env).records(SYSTEM_TENANT)]
        finally:
            await r.aclose()

    outcomes = asyncio.run(audited())
    assert outcomes == ["user_add", "user_token", "user_passwd", "user_disable", "user_enable",
                        "user_tokens_revoked"]


def test_cli_password_from_stdin_and_bad_input(cli_env: str, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PW + "\n"))
    assert main(["users", "add", "bob", "--role", "analyst", "--tenants", "*"]) == 0
    assert main(["users", "add", "eve", "--role", "analyst", "--tenants", "../etc", "--password", PW]) == 1
    assert "invalid tenant" in capsys.readouterr().err
    assert main(["users", "add", "eve", "--role", "analyst", "--tenants", "*,locA", "--password", PW]) == 1
    assert main(["users", "add", "bad name", "--role", "analyst", "--tenants", "locA", "--password", PW]) == 1
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["users", "add", "eve", "--role", "analyst", "--tenants", "locA"]) == 1
    assert main(["users", "list"]) == 0
    out = capsys.readouterr().out
    assert "bob" in out and "eve" not in out


def test_cli_prompts_on_a_terminal(cli_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = iter([PW, PW])
    monkeypatch.setattr("sys.stdin", Tty(""))
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(["users", "add", "carol", "--role", "admin", "--tenants", "*"]) == 0
    answers = iter([PW, PW + "x"])
    assert main(["users", "passwd", "carol"]) == 1  # the two entries differ


async def test_store_rules(store: UserStore) -> None:
    u = await store.add("dan", "analyst", ("locA",), PW)
    assert u.sees("locA") and not u.sees("locB") and not u.sees("_system") and not u.sees("")
    assert u.can("view") and not u.can("dlq.replay") and not u.can("gdpr.erase")
    op = await store.add("olga", "operator", (ALL_TENANTS,), PW)
    assert op.sees("anything") and op.sees("_unknown") and not op.sees("_system")
    assert op.can("dlq.replay") and op.can("audit.verify") and not op.can("gdpr.export")
    admin = await store.add("ada", "admin", (ALL_TENANTS,), PW)
    assert admin.sees("_system") and admin.can("gdpr.erase")
    await store.set_disabled("ada")
    ada = await store.get("ada")
    assert ada is not None and not ada.can("view") and not ada.sees("locA")
    assert await store.authenticate("ada", PW) is None
    assert await store.authenticate("dan", PW) is not None
    assert await store.authenticate("dan", "wrong password") is None
    assert await store.authenticate("nobody", PW) is None
    assert await store.authenticate("../x", PW) is None
    assert await store.token_user("gik_nope") is None and await store.token_user("other") is None
    with pytest.raises(UserError):
        await store.add("dan", "analyst", ("locA",), PW)
    with pytest.raises(UserError):
        await store.add("x", "root", ("locA",), PW)
    with pytest.raises(UserError):
        parse_tenants("")
    assert parse_tenants(" locA , locB,locA ") == ("locA", "locB")
    raw = await store.r.hget(store.key("user", "dan"), "hash")
    assert raw.startswith(b"$argon2id$")
