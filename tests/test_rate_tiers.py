"""Tier limits as the rate stage enforces them: the store's Lua check-and-count on real Redis, every tier,
both windows, and a re-run of a counted event that is not counted again."""

from __future__ import annotations

import uuid

import pytest
from redis.asyncio import Redis

from pipeline import rate
from store.state import PipelineState
from tests.conftest import make_settings

# the product's published tiers (issue: starter 60/min 1,000/h, professional 120/5,000, enterprise 300/20,000)
EXPECTED = {"starter": (60, 1_000), "professional": (120, 5_000), "enterprise": (300, 20_000)}


def test_tier_table_is_the_published_one() -> None:
    for tier, (per_minute, per_hour) in EXPECTED.items():
        w = rate.windows(tier, 1_764_800_000.0)
        assert (w.per_minute, w.per_hour) == (per_minute, per_hour)
    assert (rate.windows("no-such-tier", 0.0).per_minute, rate.windows("no-such-tier", 0.0).per_hour) == EXPECTED["starter"]


@pytest.mark.parametrize("tier", sorted(EXPECTED))
async def test_minute_and_hour_limits_on_real_redis(real_redis_url: str, tier: str) -> None:
    per_minute, per_hour = EXPECTED[tier]
    settings = make_settings(real_redis_url)
    r = Redis.from_url(real_redis_url)
    state = PipelineState(r, settings)
    tenant = f"loc{tier}"
    hour_start = 1_764_799_200.0  # a whole hour (divisible by 3600)
    try:
        # one minute: exactly per_minute events pass, the next one is told "minute full"
        t = hour_start + 5
        ids = [uuid.uuid4().hex for _ in range(per_minute + 1)]
        results = [await state.count(tenant, e, rate.windows(tier, t)) for e in ids]
        assert results[:per_minute] == [1] * per_minute and results[per_minute] == -1
        assert await state.count(tenant, ids[0], rate.windows(tier, t)) == 0  # a re-run is not counted twice
        assert rate.decide(-1, t).window == "minute" and rate.decide(-1, t).defer_s > 60 - 5
        # fill the hour over the following minutes: the event after per_hour is told "hour full"
        counted = per_minute
        minute = 1
        while counted < per_hour and minute < 60:
            tm = hour_start + 60 * minute + 1
            n = min(per_minute, per_hour - counted)
            for _ in range(n):
                assert await state.count(tenant, uuid.uuid4().hex, rate.windows(tier, tm)) == 1
            counted += n
            minute += 1
        tm = hour_start + 60 * minute + 1
        if per_minute * 60 >= per_hour:
            assert counted == per_hour
            assert await state.count(tenant, uuid.uuid4().hex, rate.windows(tier, tm)) == -2
            assert rate.decide(-2, tm).window == "hour"
        else:  # enterprise: 300/min over 60 minutes is 18,000 < 20,000, the minute limit always binds first
            assert counted == per_minute * 60 and (await state.usage(tenant, tm - 60))[1] == counted
        # the next hour starts afresh
        assert await state.count(tenant, uuid.uuid4().hex, rate.windows(tier, hour_start + 3600 + 1)) == 1
    finally:
        await r.aclose()
