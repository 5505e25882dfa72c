"""The time-claim shortcut (`checks.time_bounds`) gives exactly what the full step 6 gives.

A retried token's events nearly all fall inside its validity, so `check_times` returns at
once there; the shortcut must agree with the loop on every input: ints, floats, bools,
NaN, infinities, values past the clamp, absent claims, the exact `exp` second, any leeway.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import ServiceConfig
from pipeline.engine.checks import Findings, check_times, time_bounds

T = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
NOW = T.timestamp()

_values = st.one_of(
    st.integers(int(NOW) - 400, int(NOW) + 400),
    st.floats(NOW - 400, NOW + 400),
    st.sampled_from([math.nan, math.inf, -math.inf, 10**400, -(10**400), True, False, "1", None, NOW, NOW + 0.5]),
)


def _outcome(claims: dict[str, Any], ts: datetime, service: ServiceConfig, findings: Findings, bounds: Any) -> Any:
    """The overshoot, or the exception's type (a NaN claim trips `human_duration`: both paths alike)."""
    try:
        return check_times(claims, ts, service, 300, findings, bounds)
    except ValueError as exc:
        return type(exc)


@settings(max_examples=600, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    claims=st.dictionaries(st.sampled_from(["exp", "nbf", "iat"]), _values),
    offset=st.one_of(st.integers(-400, 400), st.floats(-400, 400)),
    leeway=st.sampled_from([0, 0.5, 30, 60.0]),
)
def test_the_shortcut_agrees_with_the_full_check(claims: dict[str, Any], offset: float, leeway: float) -> None:
    service = ServiceConfig(name="svc", issuers=("corp",), audience="api://svc", leeway_seconds=leeway)
    ts = T + timedelta(seconds=offset)
    full, fast = Findings(), Findings()
    expected, got = _outcome(claims, ts, service, full, ()), _outcome(claims, ts, service, fast, time_bounds(claims))
    assert fast.causes == full.causes
    assert [f.evidence for f in fast.items] == [f.evidence for f in full.items]
    assert got == expected or (got != got and expected != expected)  # NaN overshoots: both NaN


def test_inside_the_bounds_returns_at_once_and_outside_fails() -> None:
    service = ServiceConfig(name="svc", issuers=("corp",), audience="api://svc", leeway_seconds=0)
    claims = {"exp": NOW + 10, "iat": NOW - 10}
    bounds = time_bounds(claims)
    assert bounds == (NOW - 10, NOW + 10)
    assert check_times(claims, T, service, 300, Findings(), bounds) is None
    late = Findings()
    assert check_times(claims, T + timedelta(seconds=10), service, 300, late, bounds) == 0
    assert late.causes and late.causes[0].value == "clock_skew"
    assert time_bounds({"exp": math.nan}) == ()


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(-23 * 60, 23 * 60),
    st.sampled_from(["pydantic", "timezone", "zoneinfo"]),
)
def test_the_events_timestamp_is_datetimes_own(naive: datetime, minutes: int, kind: str) -> None:
    """`checks._timestamp` (the epoch in the fixed-offset tzinfo) is exactly `timestamp()`, tzinfos alternating."""
    from zoneinfo import ZoneInfo

    from pipeline.engine.checks import _timestamp
    from pipeline.models import AuthFailureEvent

    offset = timezone(timedelta(minutes=minutes))
    if kind == "pydantic":  # as decoded: pydantic's own TzInfo
        text = naive.replace(tzinfo=offset).isoformat()
        at = AuthFailureEvent.model_validate({"event_id": "e", "ts": text, "service": "s"}).ts
    else:
        at = naive.replace(tzinfo=offset if kind == "timezone" else ZoneInfo("Europe/Paris"))
    for when in (at, at.astimezone(UTC), at):
        assert _timestamp(when) == when.timestamp()
