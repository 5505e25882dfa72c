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

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

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
        values[name] = _readable(str(path), f"{name}_file")
    return values


def _readable(path: str, key: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"{key}: cannot read {path}: {reason}") from None
    if not text:
        raise ValueError(f"{key}: {path} is empty")
    return text


def _secrets_from_env(values: Any, names: tuple[str, ...], environ: Mapping[str, str]) -> Any:
    """Each `<name>_env` given names the variable `<name>` is read from (never both given)."""
    if not isinstance(values, dict):
        return values
    values = dict(values)
    for name in names:
        variable = values.get(f"{name}_env")
        if variable is None:
            continue
        if values.get(name) is not None or values.get(f"{name}_file") is not None:
            raise ValueError(f"set one of {name}, {name}_file and {name}_env")
        if not str(variable).strip() or not environ.get(str(variable), "").strip():
            raise ValueError(f"{name}_env: the variable {variable} is not set or empty")
        values[name] = environ[str(variable)].strip()
    return values


def _passthrough(values: Any, model: type[BaseModel]) -> Any:
    """`[kafka]`'s keys that are kafka-python options → `options`, checked against the installed
    kafka-python (pipeline/io/kafka_options.py); `[kafka.<client>]` likewise. Unknown keys stay
    where they are, for the "unknown key, did you mean" error."""
    if not isinstance(values, dict):
        return values
    own = set(model.model_fields)
    extra = {k: v for k, v in values.items() if k not in own}
    sections = [c for c in ("consumer", "producer", "admin") if values.get(c)]
    if not extra and not sections and not values.get("options"):
        return values  # kafka-python is not even imported
    from pipeline.io import kafka_options  # imports no config: no cycle

    table = kafka_options.option_table()
    passing = {k: v for k, v in extra.items() if k in table or k in kafka_options.REFUSED}
    values = {k: v for k, v in values.items() if k not in passing}
    try:
        own_keys = frozenset(own)
        values["options"] = kafka_options.check_options({**(values.get("options") or {}), **passing}, None, own_keys)
        for client in sections:
            if not isinstance(values[client], dict):
                raise ValueError(f"[kafka.{client}] must be a table")
            values[client] = kafka_options.check_options(values[client], client, own_keys)
    except kafka_options.OptionError as exc:
        raise PydanticCustomError("kafka_option", str(exc)) from None
    return values


class IssuerConfig(_Section):
    name: str = Field(min_length=1)
    issuer: str = Field(min_length=1, description="The exact `iss` value.")
    jwks_uri: str | None = Field(
        default=None, min_length=1, description="Unset: found by OIDC discovery from `issuer` (jwks-watch)."
    )
    algorithms: tuple[str, ...] = Field(min_length=1, description="The only algs accepted for this issuer.")

    @field_validator("algorithms")
    @classmethod
    def _known_algorithms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [alg for alg in value if alg not in SUPPORTED_ALGORITHMS]
        if unknown:
            raise ValueError(f"unsupported algorithm(s) {unknown}; choose from {sorted(SUPPORTED_ALGORITHMS)}")
        return value


def normalise_host(value: str) -> str:
    """A Host/authority as a gateway logs it → the name a `hosts` entry matches: no port, lower case, no final dot.

    `API.Acme.test:8443` → `api.acme.test`; `[::1]:8080` → `::1`; a bare IPv6 address stays as it is.
    """
    host = value.strip().lower()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


class ServiceConfig(_Section):
    name: str = Field(min_length=1)
    issuers: tuple[str, ...] = Field(min_length=1)
    audience: str = Field(min_length=1)
    leeway_seconds: float = Field(default=0, ge=0)
    required_claims: tuple[str, ...] = ("exp",)
    authorized_parties: tuple[str, ...] | None = None
    jwks_cache_ttl_seconds: float | None = Field(
        default=None,
        ge=0,
        description="How long this service caches its JWKS, if known; else `max_jwks_cache_ttl_seconds` is assumed.",
    )
    hosts: tuple[str, ...] = Field(
        default=(), description="Host/authority names a gateway log names for this service (any case, any port)."
    )

    @field_validator("hosts")
    @classmethod
    def _plain_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for host in value:
            if not normalise_host(host) or any(c.isspace() or c in "/\\\"" for c in host.strip()):
                raise ValueError(f"{host!r} is not a host name (give it as a gateway logs it, e.g. 'api.acme.test')")
        return value


class KafkaSourceConfig(_Section):
    """A `[[kafka.sources]]` entry: a topic whose records are events in a gateway's own format."""

    topic: str = Field(min_length=1)
    format: str = Field(min_length=1, description="An event format: jwtriage, envoy, kong, aws-httpapi, nginx.")

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        from pipeline.io.formats import known_formats  # the registry imports no config: no cycle

        if value not in known_formats():
            raise ValueError(f"unknown event format {value!r}; choose from {sorted(known_formats())}")
        return value


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
    sasl_plain_password_env: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None  # a path, not a secret; the key file's passphrase is:
    ssl_password: SecretStr | None = None
    ssl_password_file: str | None = None
    ssl_password_env: str | None = None
    sasl_oauth_token: SecretStr | None = Field(default=None, description="OAUTHBEARER: a fixed token (or _env).")
    sasl_oauth_token_file: str | None = Field(
        default=None, description="OAUTHBEARER: a token file, read again on every connection (a rotating token)."
    )
    sasl_oauth_token_env: str | None = None
    sasl_oauth_extensions: dict[str, str] = Field(default_factory=dict, description="OAUTHBEARER SASL extensions.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="kafka-python options for every client that takes them (any other key)."
    )
    consumer: dict[str, Any] = Field(default_factory=dict, description="[kafka.consumer]: consumers' options.")
    producer: dict[str, Any] = Field(default_factory=dict, description="[kafka.producer]: producers' options.")
    admin: dict[str, Any] = Field(default_factory=dict, description="[kafka.admin]: the topic admin's options.")
    sources: tuple[KafkaSourceConfig, ...] = Field(
        default=(), description="More event topics, each in its own format (read by the group, like failures_topic)."
    )

    @model_validator(mode="after")
    def _distinct_source_topics(self) -> KafkaConfig:
        topics = [source.topic for source in self.sources]
        if len(set(topics)) != len(topics):
            raise ValueError(f"[[kafka.sources]] topics must be unique, got {topics}")
        clash = {self.samples_topic, self.jwks_topic, self.dead_letter_topic} & set(topics)
        if clash:
            raise ValueError(f"[[kafka.sources]] topic {sorted(t for t in clash if t)} is not an event topic")
        return self

    @model_validator(mode="before")
    @classmethod
    def _read_files(cls, values: Any, info: ValidationInfo) -> Any:
        environ = (info.context or {}).get("environ", os.environ)
        values = _secrets_from_env(values, ("sasl_plain_password", "ssl_password", "sasl_oauth_token"), environ)
        return _passthrough(_secrets_from_files(values, ("sasl_plain_password", "ssl_password")), cls)

    @model_validator(mode="after")
    def _one_token_source(self) -> KafkaConfig:
        if self.sasl_oauth_token is not None and self.sasl_oauth_token_file is not None:
            raise ValueError("set sasl_oauth_token_file or sasl_oauth_token (or _env), not both")
        if self.sasl_oauth_token_file is not None:
            _readable(self.sasl_oauth_token_file, "sasl_oauth_token_file")
        return self


class StoreConfig(_Section):
    path: str = "jwtriage.duckdb"
    retention_days: int = Field(default=30, ge=1, description="Days of raw verdict rows a consumer's store keeps.")
    rollup_retention_days: int = Field(default=400, ge=1, description="Days of hourly rollups it keeps.")
    data_path: str | None = Field(
        default=None, description="For a `ducklake:` store path: where the lake's Parquet files go (s3://bucket/prefix/)."
    )
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
    #: reuse the time-independent checks of a repeated token (`pipeline.engine.reuse`); false judges all afresh
    reuse_judgements: bool = True


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
        owners: dict[str, str] = {}
        for service in self.services:
            for host in service.hosts:
                other = owners.setdefault(normalise_host(host), service.name)
                if other != service.name:
                    raise ValueError(f"host {host!r} is in the hosts of both {other!r} and {service.name!r}")
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


def _env_names(environ: Mapping[str, str]) -> dict[tuple[str, str], str]:
    """(table, key) → the environment variable that set it (for blaming the variable, not the file)."""
    names: dict[tuple[str, str], str] = {}
    for name in environ:
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key == "db":
            names[("store", "path")] = name
        elif "__" in key:
            table, _, field = key.partition("__")
            names[(table, field)] = name
    return names


def _location(loc: tuple[Any, ...]) -> str:
    """('services', 0, 'audience') → 'services[0].audience'."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The config model that the key at `loc` lives in (to suggest its valid keys)."""
    model: type[BaseModel] | None = Config
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        model = _inner_model(field.annotation)
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _error_line(item: Any, env: dict[tuple[str, str], str]) -> tuple[str, str, bool]:
    """(where, what, from the environment) for one pydantic error, in plain words."""
    loc = tuple(item["loc"])
    variable = env.get((str(loc[0]), str(loc[1]))) if len(loc) == 2 else None
    if item["type"] == "extra_forbidden":
        parent, key = loc[:-1], str(loc[-1])
        model = _model_at(parent)
        valid = sorted(model.model_fields) if model is not None else []
        valid = [k for k in valid if k not in {"source", "options"}]
        near = difflib.get_close_matches(key, valid, n=1)
        if model is KafkaConfig:  # or a kafka-python option
            from pipeline.io.kafka_options import settable

            near = difflib.get_close_matches(key, [*valid, *settable()], n=1)
            valid = [] if near else ["one of jwtriage's keys or kafka-python's options (docs/kafka-options.md)"]
        if variable:
            hint = f" (did you mean {ENV_PREFIX}{str(loc[0]).upper()}__{near[0].upper()}?)" if near else ""
            return variable, f"unknown key {key!r} in [{loc[0]}]{hint}", True
        hint = f" (did you mean {near[0]!r}?)" if near else (f" (valid: {', '.join(valid)})" if valid else "")
        return _location(parent), f"unknown key {key!r}{hint}", False
    message = str(item["msg"])
    if variable:
        return f"{variable} ({_location(loc)})", message, True  # never the value: it may be a password
    return _location(loc), message, False


def _format_error(path: Path, error: ValidationError, environ: Mapping[str, str] | None = None) -> str:
    """Pydantic's errors as a person reads them: the key's path, an unknown key's nearest valid key, the
    environment variable when one set the bad value, and no echo of a container whose items failed."""
    env = _env_names(environ or {})
    items = error.errors()
    failed = [tuple(i["loc"]) for i in items]
    lines: dict[str, list[str]] = {}
    blamed_env = blamed_file = False
    for item in items:
        loc = tuple(item["loc"])
        if any(len(other) > len(loc) and other[: len(loc)] == loc for other in failed):
            continue  # e.g. "services: at least 1 item" only because every service failed
        where, what, from_env = _error_line(item, env)
        blamed_env, blamed_file = blamed_env or from_env, blamed_file or not from_env
        lines.setdefault(what, []).append(where)
    if blamed_env and not blamed_file:
        head = f"invalid configuration in the environment (the file {path} is fine)"
    else:
        head = f"{path}: invalid configuration"
    out = [head]
    for what, places in lines.items():
        shown = places[0] if len(places) == 1 else f"{', '.join(places[:2])}" + (
            f" and {len(places) - 2} more" if len(places) > 2 else ""
        )
        out.append(f"  {shown}: {what}")
    return "\n".join(out)


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
        return Config.model_validate({**raw, "source": str(path)}, context={"environ": environ})
    except ValidationError as exc:
        raise ConfigError(_format_error(path, exc, environ)) from None
