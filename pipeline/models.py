"""Wire models for the four record kinds, and the stable codes a dashboard groups by.

Wire data is validated once, here, at the edge; everything inside the pipeline works on
these validated objects. The codes (`Cause`, `Attack`, `Confidence`) and what is said about
them live in `pipeline.causes`; they are re-exported here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from pipeline.causes import CAUSE_LABELS, KEY_TIMING_CAUSES, Attack, Cause, Confidence

__all__ = [
    "CAUSE_LABELS",
    "KEY_TIMING_CAUSES",
    "WIRE_MODELS",
    "Attack",
    "AuthFailureEvent",
    "Cause",
    "Classification",
    "Confidence",
    "JwksSnapshot",
    "SampledToken",
    "json_schemas",
    "write_json_schemas",
]


class _Wire(BaseModel):
    """Common settings: unknown fields are ignored, values are frozen once validated."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=False)


class AuthFailureEvent(_Wire):
    """One rejection, as a gateway or service reports it (topic `auth.failures`)."""

    event_id: str = Field(min_length=1, description="Unique id of the rejection event.")
    ts: AwareDatetime = Field(description="When the service rejected the token (RFC 3339, with offset).")
    service: str = Field(min_length=1, description="The rejecting service, as named in the config.")
    token: str | None = Field(default=None, description="The compact JWT, when the event carries it.")
    token_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="Hex SHA-256 of the compact token's ASCII, to join a sampled token.",
    )
    reported_error: str | None = Field(default=None, description="The rejecting validator's own message.")
    service_jwks_fetched_at: AwareDatetime | None = Field(
        default=None, description="When that service last fetched its JWKS."
    )
    client_id: str | None = None
    request_id: str | None = None


class SampledToken(_Wire):
    """A raw token sampled on its own stream (topic `auth.tokens.sampled`)."""

    token: str = Field(min_length=1)
    sampled_at: AwareDatetime | None = None
    service: str | None = None


class JwksSnapshot(_Wire):
    """An issuer's JWK Set as fetched at one moment (topic `auth.jwks`)."""

    issuer: str = Field(min_length=1, description="The issuer's `iss` URL.")
    fetched_at: AwareDatetime
    jwks: dict[str, Any] = Field(description="The JWK Set document as published.")


class Classification(BaseModel):
    """The verdict for one event; unknown fields are present and null."""

    model_config = ConfigDict(frozen=True, json_schema_serialization_defaults_required=True)

    event_id: str | None
    cause: Cause
    confidence: Confidence
    attacks: list[Attack] = Field(default_factory=list)
    findings: list[Cause] = Field(default_factory=list)
    issuer: str | None = None
    kid: str | None = None
    alg: str | None = None
    audience: Any = None
    skew_seconds: float | None = None
    detail: str | None = None


WIRE_MODELS: dict[str, type[BaseModel]] = {
    "auth_failure_event": AuthFailureEvent,
    "sampled_token": SampledToken,
    "jwks_snapshot": JwksSnapshot,
    "classification": Classification,
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each record kind, as kept in `schemas/` (a test keeps them in sync)."""
    return {
        name: model.model_json_schema(mode="serialization" if model is Classification else "validation")
        for name, model in WIRE_MODELS.items()
    }


def write_json_schemas(directory: Path) -> list[Path]:
    """Regenerate `schemas/*.schema.json`; run `python -m pipeline.models` after changing a model."""
    written = []
    for name, schema in json_schemas().items():
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_json_schemas(Path(__file__).resolve().parent.parent / "schemas"):
        print(f"wrote {written_path}")
