"""Checks as named steps: each finding names its step, and `explain` shows exactly the classifier's findings.

`explain` renders a traced run of the Classifier (`engine.checks.Trace`); these tests hold
that the traced run decides exactly as the pipeline's untraced one, and that the checks
`explain` lays out carry exactly the verdict's findings, for every event of the simulator's day.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.commands.demo import scenario_config, scenario_envelopes
from pipeline.engine.checks import STEP_ORDER, Findings, Step, Trace
from pipeline.engine.classify import Classifier, Verdict
from pipeline.explanation import STEP_LABELS, Context, KeySource, build_checks
from pipeline.io.memory import ListSink, ListSource
from pipeline.models import AuthFailureEvent, Cause
from pipeline.runner import Pipeline, run
from pipeline.simulator.scenario import simulate
from tests.world import DROP, JWE, STAGING, T0, World, forge, good_claims, mint

NOW_EPOCH = int(T0.timestamp())

# -- each cause comes from the step DESIGN.md names --------------------------------------------

STEPS: list[tuple[str, Callable[[], str | None], Cause, Step]] = [
    ("malformed", lambda: "not-a-jwt.at-all", Cause.MALFORMED, Step.PARSE),
    ("jwe", lambda: JWE, Cause.UNVERIFIABLE, Step.PARSE),
    ("alg_none", lambda: forge({"alg": "none", "kid": "rsa-2"}, good_claims()), Cause.BAD_ALG, Step.ALG_POLICY),
    ("alg_refused", lambda: mint("rsa-2", alg="RS384"), Cause.BAD_ALG, Step.ALG_POLICY),
    (
        "alg_key_type",
        lambda: forge({"alg": "ES256", "kid": "rsa-2"}, good_claims(), bytes(64)),
        Cause.BAD_ALG,
        Step.KEY_AND_SIGNATURE,
    ),
    ("unknown_kid", lambda: mint("rogue-1", signer="rogue"), Cause.UNKNOWN_KID, Step.KEY_AND_SIGNATURE),
    ("bad_signature", lambda: mint("rsa-2", signer="rogue"), Cause.BAD_SIGNATURE, Step.KEY_AND_SIGNATURE),
    (
        "signer_not_accepted",
        lambda: mint("stg-1", claims=good_claims(iss=STAGING)),
        Cause.ISSUER_MISMATCH,
        Step.KEY_AND_SIGNATURE,
    ),
    ("iss", lambda: mint("ec-1", claims=good_claims(iss=STAGING)), Cause.ISSUER_MISMATCH, Step.ISSUER),
    ("aud", lambda: mint("ec-1", claims=good_claims(aud="api://orders")), Cause.AUDIENCE_MISMATCH, Step.AUDIENCE),
    ("exp", lambda: mint("ec-1", claims=good_claims(exp=NOW_EPOCH - 7200)), Cause.EXPIRED, Step.TIME),
    ("skew", lambda: mint("ec-1", claims=good_claims(exp=NOW_EPOCH - 100)), Cause.CLOCK_SKEW, Step.TIME),
    ("nbf", lambda: mint("ec-1", claims=good_claims(nbf=NOW_EPOCH + 7200)), Cause.NOT_YET_VALID, Step.TIME),
    ("missing", lambda: mint("ec-1", claims=good_claims(sub=DROP)), Cause.MISSING_CLAIM, Step.REQUIRED_CLAIMS),
    ("retired", lambda: mint("rsa-1"), Cause.RETIRED_KEY, Step.KEY_TIMING),
    ("unpublished", lambda: mint("rsa-3"), Cause.UNPUBLISHED_KEY, Step.KEY_TIMING),
    ("reported", lambda: None, Cause.EXPIRED, Step.REPORTED),
]


@pytest.mark.parametrize(("name", "make", "cause", "step"), STEPS, ids=[s[0] for s in STEPS])
def test_the_first_finding_names_the_step_that_failed(
    name: str, make: Callable[[], str | None], cause: Cause, step: Step
) -> None:
    token = make()
    verdict = World().judge(token, reported_error="Signature has expired")
    assert verdict.classification.cause is cause
    first = verdict.findings[0]
    assert (first.step, first.cause) == (step, cause)
    assert (verdict.classification.detail or "").lower().startswith(first.evidence.lower())
    assert verdict.steps is None  # untraced: nothing is built for explain


def test_stale_jwks_is_found_by_key_timing_with_or_without_a_fetch_time() -> None:
    world = World()
    for fetched in (None, world.event().ts.replace(hour=9)):
        verdict = world.judge(mint("rsa-2"), service_jwks_fetched_at=fetched)
        assert [(f.step, f.cause) for f in verdict.findings] == [(Step.KEY_TIMING, Cause.STALE_JWKS)]


def test_every_failed_check_is_kept_even_when_its_cause_was_already_found() -> None:
    """Both audience rules fail: the classification lists the cause once, the findings hold both sentences."""
    token = mint("ec-1", claims=good_claims(aud="api://orders", azp="intruder"))
    verdict = World().judge(token)
    assert verdict.classification.findings == [Cause.AUDIENCE_MISMATCH]
    assert [f.step for f in verdict.findings] == [Step.AUDIENCE, Step.AUDIENCE]
    assert "aud" in verdict.findings[0].evidence and "azp" in verdict.findings[1].evidence


def test_a_trace_records_every_step_and_the_reason_a_step_did_not_run() -> None:
    world = World()
    refused = world.classifier.classify(world.event(), mint("rsa-2", alg="RS384"), Trace())
    assert refused.steps is not None and list(refused.steps) != []
    assert set(refused.steps) == set(STEP_ORDER)
    assert refused.steps[Step.KEY_AND_SIGNATURE].status == "skip"
    assert refused.steps[Step.KEY_TIMING].status == "skip"
    assert refused.steps[Step.ALG_POLICY].status == "fail"
    assert refused.steps[Step.AUDIENCE].status == "pass"
    jwe = world.classifier.classify(world.event(), JWE, Trace())
    assert jwe.steps is not None
    assert [jwe.steps[s].status for s in STEP_ORDER] == ["fail"] + ["skip"] * 7


def test_the_plain_collector_keeps_no_facts() -> None:
    findings = Findings()
    findings.note(Step.TIME, skew=3.0)
    findings.skip(Step.KEY_TIMING, "why")
    assert not findings.tracing and findings.items == [] and findings.causes == []


# -- explain and classify cannot disagree ------------------------------------------------------


def _judgements(classifier: Classifier, seen: list[tuple[AuthFailureEvent, str | None, Verdict, Verdict]]) -> Any:
    """`classify` as the pipeline calls it, which also judges each event again with a trace, at the same moment."""
    plain = classifier.classify

    def classify(event: AuthFailureEvent, token: str | None, trace: Trace | None = None) -> Verdict:
        verdict = plain(event, token)
        seen.append((event, token, verdict, plain(event, token, Trace())))
        return verdict

    return classify


def _day() -> Iterator[tuple[Context, AuthFailureEvent, str | None, Verdict, Verdict, bool]]:
    """Every judgement of the simulator's default day: (context, event, token, verdict, traced verdict, final).

    `final` marks an event's last judgement (a verdict can be judged again when a sample or
    snapshot arrives): the one the store keeps.
    """
    scenario = simulate(seed=7, events=20_000)
    config = scenario_config(scenario, db=Path("unused.duckdb"))  # nothing is stored
    pipeline = Pipeline(config)
    seen: list[tuple[AuthFailureEvent, str | None, Verdict, Verdict]] = []
    pipeline.classifier.classify = _judgements(pipeline.classifier, seen)  # type: ignore[method-assign]
    run(ListSource(scenario_envelopes(scenario)), pipeline, ListSink())
    last = {event.event_id: n for n, (event, *_) in enumerate(seen)}
    keys = KeySource(pipeline.timeline, "the day's snapshots")
    for n, (event, token, verdict, traced) in enumerate(seen):
        yield Context(config, keys, event.ts, at_is_now=False), event, token, verdict, traced, last[event.event_id] == n


def test_explain_shows_exactly_the_classifiers_findings_for_every_event_of_the_simulated_day() -> None:
    causes: set[Cause] = set()
    judged = 0
    for ctx, event, token, verdict, traced, final in _day():
        judged += final
        c = verdict.classification
        causes.add(c.cause)
        # The traced run (explain's) decides exactly as the pipeline's.
        assert traced.classification == c
        assert [(f.step, f.cause, f.evidence) for f in traced.findings] == [
            (f.step, f.cause, f.evidence) for f in verdict.findings
        ]
        assert list(dict.fromkeys(f.cause for f in verdict.findings)) == c.findings
        if token is None:
            assert {f.step for f in verdict.findings} <= {Step.REPORTED}
            continue
        if not final:  # laid out below only as stored: the procedure is the same for every judgement
            continue
        service = ctx.config.service(event.service)
        assert service is not None
        checks = build_checks(ctx, service, traced)
        # Every step, in order, each from the trace; the failed ones carry the verdict's findings, and only those.
        assert [check.name for check in checks] == [STEP_LABELS[s] for s in STEP_ORDER]
        assert all(check.evidence != ["not checked"] for check in checks)
        shown = [cause for check in checks if check.status == "fail" for cause in check.causes]
        assert list(dict.fromkeys(shown)) == c.findings
        sentences = [line for check in checks if check.status == "fail" for line in check.evidence]
        assert all(f.evidence in sentences for f in verdict.findings)
        if c.cause is not Cause.VALID:
            first = next(check for check in checks if check.status == "fail")
            assert c.cause in first.causes
    assert judged > 19_000  # the rest are bad lines, dead letters
    assert len(causes) >= 10  # the day exercises most of the procedure
