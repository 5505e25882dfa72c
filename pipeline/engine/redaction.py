"""Verdicts with no token-shaped value in the fields a token could be quoted in, before any sink sees them.

DESIGN.md: raw tokens are credentials, and a token-shaped value anywhere (a claim, a kid, a
percent-encoded message) is a token. `runner.Pipeline` passes every verdict through here.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.engine.classify import Verdict
from pipeline.engine.tokens import has_token, redact_tokens, to_json

#: The verdict's free-text and header-derived fields: where a token-shaped value could be quoted.
_QUOTING_FIELDS = ("detail", "kid", "issuer", "alg")


def without_tokens(verdict: Verdict) -> Verdict:
    """The verdict, with any token-shaped string its fields quote (a claim value, a kid) redacted.

    Every sink (the store, `classify`'s JSON lines) and the metrics see verdicts through
    here. Nearly always nothing matches: one regex search over the fields joined, and the
    verdict is returned as it is.
    """
    if verdict.redacted:  # a verdict reused from a span (`engine.spans`): its fields were proven token-free
        return verdict
    c = verdict.classification
    audience = c.audience
    if isinstance(audience, str):  # the usual `aud`; a tuple, not a union built anew, for the numbers below
        audience_text: str | None = audience
    elif audience is None or isinstance(audience, (int, float, bool)):
        audience_text = ""
    elif isinstance(audience, list) and all(isinstance(a, str) for a in audience):
        audience_text = "\x00".join(audience)
    else:
        audience_text = None  # another shape: checked through its JSON below
    if audience_text is not None and not has_token(
        "\x00".join((c.detail or "", c.kid or "", c.issuer or "", c.alg or "", audience_text))
    ):
        verdict.redacted = True  # the store trusts this: it does not scan these fields again
        return verdict
    changes: dict[str, Any] = {}
    for name in _QUOTING_FIELDS:
        value = getattr(c, name)
        if value and (redacted := redact_tokens(value)) is not value:
            changes[name] = redacted
    if c.audience is not None and not isinstance(c.audience, str | int | float | bool):
        audience = json.loads(to_json(c.audience, by_orjson=False))
        if audience != c.audience:
            changes["audience"] = audience
    elif isinstance(c.audience, str) and (redacted := redact_tokens(c.audience)) is not c.audience:
        changes["audience"] = redacted
    if changes:
        verdict.classification = c.model_copy(update=changes)
    verdict.redacted = True
    return verdict
