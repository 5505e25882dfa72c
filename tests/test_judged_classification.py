"""`judge_at` builds its `Classification` without the validator: it must be the model the validator builds.

Every verdict of random events (the tokens, times and services of tests/test_reuse.py: every
cause, attack and time threshold) is rebuilt from its fields by the model's own strict
validator, as before, and compared: equality, the fields set, each value's type, the JSON
bytes, the repr, and the model's frozenness. Its lists must be its own, not the judgement's.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline.engine.classify import _judged_classification
from pipeline.models import Cause, Classification, Confidence
from tests.test_reuse import Drawn, _envelopes, _pipeline, events

_VALIDATE = Classification.__pydantic_validator__.validate_python
_TO_JSON = Classification.__pydantic_serializer__.to_json


def _same_as_validated(built: Classification) -> None:
    validated = _VALIDATE(dict(built.__dict__), strict=True)
    assert type(built) is type(validated) is Classification
    assert built == validated and validated == built
    assert built.model_fields_set == validated.model_fields_set == set(Classification.model_fields)
    assert list(built.__dict__) == list(validated.__dict__)  # the same order: repr and iteration
    assert [type(v) for v in built.__dict__.values()] == [type(v) for v in validated.__dict__.values()]
    assert (built.__pydantic_extra__, built.__pydantic_private__) == (validated.__pydantic_extra__, None)
    assert _TO_JSON(built) == _TO_JSON(validated) and built.model_dump_json() == validated.model_dump_json()
    assert built.model_dump() == validated.model_dump() and repr(built) == repr(validated)
    assert built.model_copy(update={"detail": "x"}) == validated.model_copy(update={"detail": "x"})
    with pytest.raises(ValidationError):
        built.cause = Cause.VALID  # type: ignore[misc]  # frozen, as the validated model is


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(events, min_size=1, max_size=40), st.integers(0, 5), st.booleans())
def test_judge_at_builds_the_validated_model(drawn: Drawn, early: int, reuse: bool) -> None:
    pipeline = _pipeline(reuse)
    batch = pipeline.process(_envelopes(drawn, early, []))
    judged_at = [j.verdict.classification for j in batch.judged if j.verdict.claims is not None]  # parsed tokens
    assume(judged_at)
    for classification in judged_at:
        _same_as_validated(classification)


def test_the_lists_are_the_classifications_own() -> None:
    attacks: list[Any] = []
    causes = [Cause.EXPIRED]
    built = _judged_classification("e1", Cause.EXPIRED, Confidence.VERIFIED, attacks, list(causes), None, None,
                                   "RS256", ["a", {"b": 1}], 12.5, "Expired.")
    _same_as_validated(built)
    causes.append(Cause.CLOCK_SKEW)
    assert built.findings == [Cause.EXPIRED]
