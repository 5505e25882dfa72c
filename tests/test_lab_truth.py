"""The lab's ground truth (lab/truth.py): what happened to a request, and when a verdict agrees with it.

The lab itself (`make lab`) needs Keycloak and four toolchains; these checks need none.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lab.traffic import Sent
from lab.truth import KeyLife, agrees, expected

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def sent(at: float, intent: str = "normal", kid: str = "k1", exp_in: float = 60.0) -> Sent:
    when = T0 + timedelta(seconds=at)
    return Sent("r1", "client", "svc", intent, kid, when.timestamp() + exp_in, when, 401)


KEYS = {
    "k1": KeyLife("k1", T0 - timedelta(minutes=5), removed=T0 + timedelta(seconds=40)),
    "k2": KeyLife("k2", T0 + timedelta(seconds=10), switched=T0 + timedelta(seconds=20)),
}


def test_stale_when_the_last_fetch_predates_the_key() -> None:
    truth = expected(sent(25, kid="k2"), 0, 20, KEYS, [T0 + timedelta(seconds=1)])
    assert truth.cause == "stale_jwks"


def test_not_stale_once_the_service_fetched_after_publication() -> None:
    truth = expected(sent(25, kid="k2"), 0, 20, KEYS, [T0 + timedelta(seconds=12)])
    assert truth.cause == "unexplained"


def test_retired_after_removal_and_token_causes_come_first() -> None:
    assert expected(sent(45), 0, 20, KEYS, [T0]).cause == "retired_key"
    late = expected(sent(45, exp_in=-30), 0, 20, KEYS, [T0])
    assert late.cause == "expired" and late.findings == ("expired", "retired_key")


def test_skew_window_and_leeway_split_clock_skew_from_expired() -> None:
    assert expected(sent(5, exp_in=-8), 0, 20, KEYS, [T0]).cause == "clock_skew"
    assert expected(sent(5, exp_in=-45), 0, 20, KEYS, [T0]).cause == "expired"
    assert expected(sent(5, exp_in=-45), 60, 20, KEYS, [T0]).cause == "unexplained"  # within a 60 s leeway


def test_forged_tokens_are_bad_alg_with_their_attack() -> None:
    truth = expected(sent(5, intent="alg_none"), 0, 20, KEYS, [T0])
    assert (truth.cause, truth.attacks) == ("bad_alg", ("alg_none",))
    assert agrees(truth, "bad_alg", ["alg_none"], "verified") == (True, False)
    assert agrees(truth, "bad_alg", [], "verified") == (False, False)


def test_a_message_agrees_only_as_far_as_it_can_say() -> None:
    stale = expected(sent(25, kid="k2"), 0, 20, KEYS, [T0])
    assert agrees(stale, "unknown_kid", [], "reported") == (True, True)
    assert agrees(stale, "unknown_kid", [], "verified") == (False, False)
    assert agrees(stale, "unverifiable", [], "reported", "some message") == (False, True)
    nimbus = "Signed JWT rejected: Another algorithm expected, or no matching key(s) found"
    assert agrees(stale, "unverifiable", [], "reported", nimbus) == (True, True)
    wrong_aud = expected(sent(5, intent="wrong_audience"), 0, 20, KEYS, [T0])
    assert agrees(wrong_aud, "expired", [], "reported") == (False, True)
