"""Replay window on the body's ``timestamp``: pure checks."""

from __future__ import annotations

import datetime as dt

from ingress.freshness import REASON_FUTURE, REASON_STALE, body_timestamp, check

NOW = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=dt.UTC).timestamp()
H72 = 72 * 3600


def _iso(offset_s: float) -> str:
    when = dt.datetime.fromtimestamp(NOW + offset_s, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _check(body: bytes) -> tuple[str, str]:
    f = check(body, now=NOW, window_s=H72, future_skew_s=300)
    return f.state, f.reason


def test_fresh_and_ghl_retry_70_minutes_later_pass() -> None:
    assert _check(b'{"timestamp": "%s"}' % _iso(0).encode()) == ("ok", "")
    assert _check(b'{"timestamp": "%s", "webhookId": "x"}' % _iso(-70 * 60).encode()) == ("ok", "")
    assert _check(b'{"timestamp": "%s"}' % _iso(-H72 + 1).encode()) == ("ok", "")


def test_older_than_window_is_stale() -> None:
    assert _check(b'{"timestamp": "%s"}' % _iso(-H72 - 1).encode()) == ("stale", REASON_STALE)
    assert _check(b'{"timestamp": "2025-02-10T08:26:05.961Z"}') == ("stale", REASON_STALE)


def test_future_beyond_skew_is_refused() -> None:
    assert _check(b'{"timestamp": "%s"}' % _iso(299).encode()) == ("ok", "")
    assert _check(b'{"timestamp": "%s"}' % _iso(301).encode()) == ("future", REASON_FUTURE)
    assert _check(b'{"timestamp": "2099-01-01T00:00:00Z"}') == ("future", REASON_FUTURE)


def test_missing_or_unreadable_is_allowed() -> None:
    for body in (b'{"type": "ContactCreate"}', b"not json", b"[1,2]", b'"s"', b'{"timestamp": null}', b"{}"):
        assert _check(body)[1] == "", body
    for body in (b'{"timestamp": "yesterday"}', b'{"timestamp": true}', b'{"timestamp": ""}',
                 b'{"timestamp": "%s"}' % (b"9" * 100)):
        state, reason = _check(body)
        assert reason == "" and state in ("unreadable", "missing"), body
    assert _check(b'{"timestamp": {"a": 1}}')[1] == ""


def test_forms_of_timestamp() -> None:
    assert body_timestamp(b'{"timestamp": "2026-06-01T12:00:00Z"}') == ("ok", NOW)
    assert body_timestamp(b'{"timestamp": "2026-06-01T14:00:00+02:00"}') == ("ok", NOW)
    assert body_timestamp(b'{"timestamp": "2026-06-01T12:00:00"}') == ("ok", NOW)  # naive = UTC
    assert body_timestamp(b'{"timestamp": %d}' % int(NOW)) == ("ok", NOW)
    assert body_timestamp(b'{"timestamp": %d}' % int(NOW * 1000)) == ("ok", NOW)  # epoch ms
    # only the top level counts
    assert body_timestamp(b'{"data": {"timestamp": "2020-01-01T00:00:00Z"}}') == ("missing", None)


def test_window_zero_means_everything_old_is_stale_only_when_enabled() -> None:
    f = check(b'{"timestamp": "%s"}' % _iso(-10).encode(), now=NOW, window_s=5, future_skew_s=0)
    assert f.reason == REASON_STALE
