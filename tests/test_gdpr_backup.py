"""Erasure and backups: both halves of the caveat, on private redis-servers and their RDB dumps.

1. After ``erase`` the contact is unreadable from the live store (its data key is gone).
2. A dump saved *before* the erasure still holds the contact's wrapped data key, so together with
   the master key live at that time it can be read (the caveat, shown). After ``keys rotate`` to a
   new master key and removal of the old one, the same old dump yields nothing for that contact.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from redis.asyncio import Redis

from pipeline.persist import Entry, merge
from store.context import ContextStore
from store.crypto import EnvelopeCrypto, contact_scope
from store.gdpr import Gdpr
from store.keyring import DecryptError, Keyring
from tests.test_store_redis_server import PrivateRedis

SECRET_TEXT = "call me on 512-555-0199, Jane Roe, 12 Elm St"


async def _write(store: ContextStore, contact: str, text: str) -> None:
    await store.update("locG", contact, lambda ctx: merge(ctx, Entry(f"ev-{contact}", "InboundMessage", 1.0,
                                                                      {"body": text}), 50))


async def test_erase_then_rotation_makes_old_backup_useless(tmp_path: Path) -> None:
    k1, k2 = ("k1", os.urandom(32)), ("k2", os.urandom(32))
    pseudo_key = os.urandom(32)
    live = PrivateRedis(tmp_path / "live")
    servers = [live]
    try:
        r = Redis.from_url(live.url)
        crypto = EnvelopeCrypto(r, Keyring([k1]), prefix="intake")
        store = ContextStore(r, crypto, prefix="intake")
        await _write(store, "cErase", SECRET_TEXT)
        await _write(store, "cKeep", "kept contact")
        backup = live.save()  # the nightly backup, taken before the erasure
        assert SECRET_TEXT.encode() not in backup  # encrypted at rest even in the dump

        counts = await Gdpr(r, crypto, pseudonym_key=pseudo_key, prefix="intake").erase("locG", "cErase")
        assert counts["data_key"] == 1 and counts["context"] == 1
        # half 1: the live store no longer has it, not even through a stale cache or a saved blob
        assert await store.get("locG", "cErase") is None
        fresh = ContextStore(r, EnvelopeCrypto(r, Keyring([k1]), prefix="intake"), prefix="intake")
        assert await fresh.get("locG", "cErase") is None
        assert (await fresh.get("locG", "cKeep")) is not None

        # the caveat, shown: the old dump + the master key live then still reads the erased contact
        old = PrivateRedis.from_dump(backup, tmp_path / "restore1")
        servers.append(old)
        ro = Redis.from_url(old.url)
        ctx = await ContextStore(ro, Keyring([k1]), prefix="intake").get("locG", "cErase")
        assert ctx is not None and ctx.entries[0].fields["body"] == SECRET_TEXT
        await ro.aclose()

        # the fix: rotate to k2 (every live data key re-wrapped), then remove k1 everywhere
        rot = await EnvelopeCrypto(r, Keyring([k2, k1]), prefix="intake").rotate()
        assert rot.complete and rot.rewrapped == 1  # only cKeep's key is left to re-wrap
        only_k2 = Keyring([k2])
        assert (await ContextStore(r, only_k2, prefix="intake").get("locG", "cKeep")) is not None

        # half 2: the same pre-erasure dump, with the only master key that still exists, yields nothing
        old2 = PrivateRedis.from_dump(backup, tmp_path / "restore2")
        servers.append(old2)
        ro2 = Redis.from_url(old2.url)
        with pytest.raises(DecryptError):
            await ContextStore(ro2, only_k2, prefix="intake").get("locG", "cErase")
        # nor can the wrapped data key itself be unwrapped, by any means available now
        rec = await ro2.hgetall(f"intake:dk:{contact_scope('locG', 'cErase')}")
        assert rec[b"mk"] == b"k1"
        with pytest.raises(DecryptError):
            only_k2.open(rec[b"w"], b"")
        await ro2.aclose()
        await r.aclose()
    finally:
        for s in servers:
            s.stop()
