"""The TOML file plus `JWTRIAGE_*` environment variables → one typed, frozen config object.

Read once, at the edge (the CLI, the dashboard entry point), and passed down; no other
module reads the environment. Precedence: command-line flags > environment > file >
defaults. Environment keys join table and key with `__` (`JWTRIAGE_KAFKA__GROUP_ID`);
`JWTRIAGE_DB` is the short form of `JWTRIAGE_STORE__PATH`, `JWTRIAGE_HASH_KEY` of
`JWTRIAGE_STORE__HASH_KEY`.

Secrets are `SecretStr` (printed as `**********`) and each can come from a file instead:
`<name>_file` names it (`sasl_plain_password_file`, `hash_key_file`), read at load time,
surrounding whitespace removed. No error message here repeats an input value
(`hide_input_in_errors`, and `_format_error` prints only the message).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from pipeline.engine.identifiers import MIN_KEY_BYTES
from pipeline.errors import ConfigError

ENV_PREFIX = "JWTRIAGE_"
DEFAULT_CONFIG_PATH = Path("jwtriage.toml")

#: The JWS algorithms jwtriage can verify, and so the only ones an issuer may allow.
SUPPORTED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"}
)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


def _secrets_from_files(values: Any, names: tuple[str, ...]) -> Any:
    """A before-validator's work: each `<name>_file` given is read into `<name>` (never both given)."""
    if not isinstance(values, dict):
        return values
    values = dict(values)
    for name in names:
        path = values.get(f"{name}_file")
        if path is None:
            continue
        if values.get(name) is not None:
            raise ValueError(f"set {name} or {name}_file, not both")
        try:
            values[name] = Path(str(path)).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ValueError(f"{name}_file: cannot read {path}: {reason}") from None
        if not values[name]:
            raise ValueError(f"{name}_file: {path} is empty")
    return values


class IssuerConfig(_Section):
    name: str = Field(min_length=1)
    issuer: str = Field(min_length=1, description="The exact `iss` value.")
    jwks_uri: str = Field(min_length=1)
    algorithms: tuple[str, ...] = Field(min_length=1, description="The only algs accepted for this issuer.")

    @field_validator("algorithms")
    @classmethod
    def _known_algorithms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [alg for alg in value if alg not in SUPPORTED_ALGORITHMS]
        if unknown:
            raise ValueError(f"unsupported algorithm(s) {unknown}; choose from {sorted(SUPPORTED_ALGORITHMS)}")
        return value


class ServiceConfig(_Section):
    name: str = Field(min_length=1)
    issuers: tuple[str, ...] = Field(min_length=1)
    audience: str = Field(min_length=1)
    leeway_seconds: float = Field(default=0, ge=0)
    required_claims: tuple[str, ...] = ("exp",)
    authorized_parties: tuple[str, ...] | None = None


class KafkaConfig(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "jwtriage"
    failures_topic: str = "auth.failures"
    samples_topic: str = "auth.tokens.sampled"
    jwks_topic: str = "auth.jwks"
    dead_letter_topic: str | None = None
    max_message_bytes: int = Field(default=1_048_576, gt=0)
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: SecretStr | None = None
    sasl_plain_password_file: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None  # a path, not a secret; the key file's passphrase is:
    ssl_password: SecretStr | None = None
    ssl_password_file: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_files(cls, values: Any) -> Any:
        return _secrets_from_files(values, ("sasl_plain_password", "ssl_password"))


class StoreConfig(_Section):
    path: str = "jwtriage.duckdb"
    hash_key: SecretStr | None = Field(
        default=None, description="The HMAC key of stored personal claims; never kept in the store."
    )
    hash_key_file: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_files(cls, values: Any) -> Any:
        return _secrets_from_files(values, ("hash_key",))

    @field_validator("hash_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip().encode()) < MIN_KEY_BYTES:
            raise ValueError(f"the hash key needs at least {MIN_KEY_BYTES} bytes (hint: jwtriage keygen)")
        return value


class DashboardAuthConfig(_Section):
    """`[dashboard.auth]`: the dashboard's OIDC login (Streamlit's `st.login`) and who may see it.

    A person may see the dashboard when the ID token's `user_claim` (e-mail by default) is in
    `allowed_users`, or one of the values of its `groups_claim` is in `allowed_groups`.
    """

    issuer: str = Field(min_length=1, description="The OpenID Provider's issuer URL (its discovery document's).")
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    client_secret_file: str | None = None
    redirect_uri: str = Field(min_length=1, description="http(s)://<dashboard host:port>/oauth2callback")
    cookie_secret: SecretStr | None = Field(default=None, description="Signs the login cookie; random if unset.")
    cookie_secret_file: str | None = None
    scope: str = "openid email profile"
    prompt: str = Field(default="select_account", description="The OIDC prompt (Streamlit's default; or login).")
    user_claim: str = "email"
    groups_claim: str = "groups"
    allowed_users: tuple[str, ...] = ()
    allowed_groups: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _read_files(cls, values: Any) -> Any:
        return _secrets_from_files(values, ("client_secret", "cookie_secret"))

    @model_validator(mode="after")
    def _someone_is_allowed(self) -> DashboardAuthConfig:
        if self.client_secret is None:
            raise ValueError("set client_secret_file (or client_secret): the dashboard is a confidential client")
        if not self.allowed_users and not self.allowed_groups:
            raise ValueError("list allowed_users or allowed_groups: who may see the dashboard once logged in")
        if not self.redirect_uri.rstrip("/").endswith("/oauth2callback"):
            raise ValueError("redirect_uri must end with /oauth2callback (Streamlit's login callback)")
        return self


class DashboardConfig(_Section):
    auth: DashboardAuthConfig | None = None


class ClassifyConfig(_Section):
    skew_window_seconds: float = Field(default=300, ge=0)
    max_jwks_cache_ttl_seconds: float = Field(default=86400, ge=0)
    signature_cache_size: int = Field(default=100_000, gt=0)


class Config(_Section):
    issuers: tuple[IssuerConfig, ...] = Field(min_length=1)
    services: tuple[ServiceConfig, ...] = Field(min_length=1)
    kafka: KafkaConfig = KafkaConfig()
    store: StoreConfig = StoreConfig()
    classify: ClassifyConfig = ClassifyConfig()
    dashboard: DashboardConfig = DashboardConfig()
    source: str = Field(default="<defaults>", exclude=True, description="Where the config came from.")

    @model_validator(mode="after")
    def _references_resolve(self) -> Config:
        names = [i.name for i in self.issuers]
        if len(set(names)) != len(names):
            raise ValueError(f"issuer names must be unique, got {names}")
        service_names = [s.name for s in self.services]
        if len(set(service_names)) != len(service_names):
            raise ValueError(f"service names must be unique, got {service_names}")
        for service in self.services:
            missing = [n for n in service.issuers if n not in names]
            if missing:
                raise ValueError(f"service {service.name!r} names unknown issuer(s) {missing}; known: {names}")
        return self

    def service(self, name: str) -> ServiceConfig | None:
        return next((s for s in self.services if s.name == name), None)

    def issuer_by_name(self, name: str) -> IssuerConfig:
        return next(i for i in self.issuers if i.name == name)


def resolve_config_path(flag: str | None, environ: Mapping[str, str]) -> Path:
    """`--config`, else `JWTRIAGE_CONFIG`, else `./jwtriage.toml`."""
    return Path(flag or environ.get(f"{ENV_PREFIX}CONFIG") or DEFAULT_CONFIG_PATH)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    tables: dict[str, dict[str, str]] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key == "db":
            tables.setdefault("store", {})["path"] = value
        elif key == "hash_key":
            tables.setdefault("store", {})["hash_key"] = value
        elif "__" in key:
            table, _, field = key.partition("__")
            tables.setdefault(table, {})[field] = value
    return tables


def _format_error(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: invalid configuration"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {key}: {item['msg']}")
    return "\n".join(lines)


def load_config(
    path: Path, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Config:
    """Read `path`, overlay the environment and then `overrides` (`{"store": {"path": ...}}`)."""
    environ = os.environ if environ is None else environ
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found (hint: pass --config, set JWTRIAGE_CONFIG, "
            "or start from examples/jwtriage.toml)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for layer in (_env_overrides(environ), overrides or {}):
        for table, values in layer.items():
            if table in {"issuers", "services"}:
                raise ConfigError(f"{path}: [[{table}]] can only be set in the file")
            current = raw.get(table, {})
            if not isinstance(current, dict):
                raise ConfigError(f"{path}: {table}: must be a table")
            raw[table] = {**current, **{k: v for k, v in values.items() if v is not None}}
    try:
        return Config.model_validate({**raw, "source": str(path)})
    except ValidationError as exc:
        raise ConfigError(_format_error(path, exc)) from None
