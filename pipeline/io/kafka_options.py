"""The pass-through table: every option of the installed kafka-python, settable from `[kafka]`.

The table is read from kafka-python itself (`KafkaConsumer.DEFAULT_CONFIG`,
`KafkaProducer.DEFAULT_CONFIG`, `KafkaAdminClient.DEFAULT_CONFIG`), never copied by hand, so
a kafka-python upgrade brings its new options with it. A key in `[kafka]` that is not one of
jwtriage's own goes to every client that knows it; `[kafka.consumer]`, `[kafka.producer]` and
`[kafka.admin]` hold options for one kind of client (they win over `[kafka]`). Each value is
checked against the type of kafka-python's default (an environment variable's text is
converted), and no message repeats a value.

Three kinds of option are not passed through as given:

- `REFUSED`: jwtriage sets them itself (its offsets, its bytes, its static membership); a
  config that names one is refused with the reason.
- `BUILT`: they take a Python object, built here from plain keys: `ssl_context` from the
  `ssl_*` files, `sasl_oauth_token_provider` from `sasl_oauth_token_file` (re-read on every
  connection: a rotating, mounted token), `_env` or the token itself.
- `SECRETS`: read from `<name>_file` or `<name>_env` as well as the key itself, kept as
  `SecretStr`, and handed to kafka-python as a `str` whose `repr` is masked, so that a client
  logging its whole configuration (KafkaAdminClient does, at DEBUG) does not print them.

AWS MSK IAM (`sasl_mechanism = "AWS_MSK_IAM"`) has no credential option in kafka-python: it
signs with botocore's default chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/
`AWS_SESSION_TOKEN`, `AWS_PROFILE`, a web-identity token file, the instance role) and
needs `AWS_DEFAULT_REGION` (or a profile's region); jwtriage checks that botocore is there.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import ssl
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

CLIENTS = ("consumer", "producer", "admin")

#: Secrets jwtriage reads from a key, `<name>_file` or `<name>_env` (never logged, never echoed).
SECRETS = ("sasl_plain_password", "ssl_password", "sasl_oauth_token")

_OBJECT = "takes a Python object, which a config file cannot hold"
#: Options jwtriage sets itself, with the reason a config may not.
REFUSED: dict[str, str] = {
    "group_id": "the group is [kafka] group_id, shared by every consumer of one store",
    "enable_auto_commit": "jwtriage commits offsets itself, after the store has committed the rows "
    "(an automatic commit could skip events after a crash)",
    "auto_offset_reset": "positions come from the store and the group's commits; a partition never read starts "
    "at its beginning",
    "group_instance_id": "static membership is jwtriage-<instance> (consume --instance)",
    "max_poll_records": "jwtriage sets it from its own batch size",
    "consumer_timeout_ms": "the consume loop polls with its own timeout (this one would end it)",
    "key_deserializer": "jwtriage reads raw bytes and decodes them itself",
    "value_deserializer": "jwtriage reads raw bytes and decodes them itself",
    "key_serializer": "jwtriage writes bytes it has encoded itself",
    "value_serializer": "jwtriage writes bytes it has encoded itself",
    "transactional_id": "jwtriage's producers are not transactional (the store records what was read)",
    "default_offset_commit_callback": _OBJECT,
    "partitioner": _OBJECT,
    "kafka_client": _OBJECT,
    "selector": _OBJECT,
    "metric_reporters": _OBJECT,
}

#: Options that take an object, and the plain keys jwtriage builds it from.
BUILT: dict[str, str] = {
    "ssl_context": "it is built from ssl_cafile, ssl_certfile, ssl_keyfile, ssl_password, ssl_crlfile, "
    "ssl_ciphers and ssl_check_hostname",
    "sasl_oauth_token_provider": "it is built from sasl_oauth_token_file (re-read on every connection), "
    "sasl_oauth_token_env or sasl_oauth_token, and sasl_oauth_extensions",
}


@functools.cache
def option_table() -> dict[str, dict[str, Any]]:
    """Option name → {client kind: kafka-python's default}, for every client that takes it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # kafka-python 3.0 on Python 3.11
        from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    table: dict[str, dict[str, Any]] = {}
    for client, cls in zip(CLIENTS, (KafkaConsumer, KafkaProducer, KafkaAdminClient), strict=True):
        for name, default in cls.DEFAULT_CONFIG.items():
            table.setdefault(name, {})[client] = default
    return table


def settable(client: str | None = None) -> list[str]:
    """The names a config may set (in `[kafka]`, or in `[kafka.<client>]`), sorted."""
    table = option_table()
    return sorted(n for n, by in table.items() if (client is None or client in by) and n not in REFUSED | BUILT)


def closest(name: str, candidates: list[str]) -> str:
    near = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean {near[0]!r}?)" if near else ""


class OptionError(ValueError):
    """One pass-through key that cannot be used; the message names the key, never its value."""


def check_options(values: Mapping[str, Any], client: str | None, own: frozenset[str] = frozenset()) -> dict[str, Any]:
    """`values` (a `[kafka]` or `[kafka.<client>]` table's pass-through keys) checked and typed.

    `own` are `[kafka]`'s own keys: the connection (bootstrap servers, SASL, TLS) is set there only, the
    same for every client. Raises `OptionError`.
    """
    table = option_table()
    section = "[kafka]" if client is None else f"[kafka.{client}]"
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name in REFUSED:
            raise OptionError(f"{section}: {name} cannot be set: {REFUSED[name]}")
        if name in BUILT:
            raise OptionError(f"{section}: {name} cannot be set: {BUILT[name]}")
        if client is not None and name in own:
            raise OptionError(f"{section}: set {name} in [kafka]: it is the same for every client")
        by_client = table.get(name, {})
        if not by_client or (client is not None and client not in by_client):
            candidates = sorted(set(settable(client)) - own) if client else sorted({*settable(), *own})
            where = "kafka-python option" if client is None else f"kafka-python {client} option"
            raise OptionError(f"{section}: unknown key {name!r}: not a jwtriage key nor a {where}"
                              f"{closest(name, candidates)}")
        default = by_client[client] if client is not None else next(iter(by_client.values()))
        out[name] = _typed(section, name, value, default)
    return out


def _typed(section: str, name: str, value: Any, default: Any) -> Any:
    """`value` in the type of kafka-python's default; text (an environment variable) converted."""
    def wrong(kind: str) -> OptionError:
        return OptionError(f"{section}: {name} must be {kind} (kafka-python's default: {default!r})")

    if isinstance(default, bool):
        if isinstance(value, str) and value.strip().lower() in {"true", "false", "1", "0", "yes", "no"}:
            return value.strip().lower() in {"true", "1", "yes"}
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if isinstance(default, int | float) or (default is None and name.endswith(("_ms", "_bytes"))):
        kind = float if isinstance(default, float) else int
        if isinstance(value, str):
            try:
                value = kind(value.strip())
            except ValueError:
                raise wrong("a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
            raise wrong("an integer" if kind is int else "a number")
        return kind(value)
    if name == "api_version":  # "3.7" or [3, 7] → (3, 7)
        parts = value.split(".") if isinstance(value, str) else value
        try:
            return tuple(int(p) for p in parts)
        except (TypeError, ValueError):
            raise wrong('a version, "3.7" or [3, 7]') from None
    if name == "partition_assignment_strategy":  # ["range", "roundrobin"] → the assignor classes
        known = _assignors(default)
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list | tuple) or not names or any(n not in known for n in names):
            raise wrong(f"a list of assignor names from {sorted(known)}")
        return tuple(names)  # names in the config (it stays plain data); classes for the client (`resolved`)
    if isinstance(default, list | tuple):
        if not isinstance(value, list | tuple):
            raise wrong("a list")
        items = [tuple(v) if isinstance(v, list) else v for v in value]  # socket_options: [[6, 1, 1]]
        return tuple(items) if isinstance(default, tuple) else items
    if isinstance(default, str) or default is None:
        if isinstance(value, dict):
            raise wrong("a value, not a table")
        return value
    raise OptionError(f"{section}: {name} cannot be set: {_OBJECT}")


def _assignors(default: Any) -> dict[str, Any]:
    known = {getattr(cls, "name", ""): cls for cls in default}
    try:
        from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor

        known[CooperativeStickyAssignor.name] = CooperativeStickyAssignor
    except ImportError:  # an older kafka-python
        pass
    return {k: v for k, v in known.items() if k}


def resolved(options: dict[str, Any]) -> dict[str, Any]:
    """Checked options as kafka-python takes them: assignor names → their classes."""
    names = options.get("partition_assignment_strategy")
    if names:
        known = _assignors(option_table()["partition_assignment_strategy"]["consumer"])
        options = {**options, "partition_assignment_strategy": tuple(known[n] for n in names)}
    return options


def for_client(options: Mapping[str, Any], client: str) -> dict[str, Any]:
    """The `[kafka]` pass-through options that this kind of client takes."""
    table = option_table()
    return {k: v for k, v in options.items() if client in table.get(k, {})}


class Masked(str):
    """A secret as kafka-python needs it (a `str`), whose `repr` hides it: clients log their config dicts."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'**********'"

    def __reduce__(self) -> tuple[Any, ...]:  # pickled (a reporter's child) as itself, masked again there
        return (Masked, (str(self),))


def token_provider_base() -> type:
    """kafka-python's `AbstractTokenProvider`, wherever this version keeps it."""
    import importlib

    for module in ("kafka.net.sasl.oauth", "kafka.sasl.oauth", "kafka.oauth.abstract"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return importlib.import_module(module).AbstractTokenProvider
        except (ImportError, AttributeError):
            continue
    raise ConfigError("[kafka] sasl_mechanism OAUTHBEARER: this kafka-python has no AbstractTokenProvider")


@functools.cache
def token_provider(path: str | None, token: str | None, extensions: tuple[tuple[str, str], ...]) -> Any:
    """An OAUTHBEARER provider: the token file read again on every call (a rotating, mounted
    token), else the fixed token; one object per setting, so every client shares it."""
    base = token_provider_base()

    class ConfiguredTokenProvider(base):  # type: ignore[valid-type,misc]
        def token(self) -> str:
            if path is None:
                return str(token)
            try:
                text = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"[kafka] sasl_oauth_token_file: cannot read {path}: {exc.strerror}") from None
            if not text:
                raise ConfigError(f"[kafka] sasl_oauth_token_file: {path} is empty")
            return text

        def extensions(self) -> dict[str, str]:
            return dict(extensions)

        def __repr__(self) -> str:
            return f"<token provider: {'file ' + path if path else 'a fixed token'}>"

    return ConfiguredTokenProvider()


@functools.cache
def ssl_context(cafile: str | None, certfile: str | None, keyfile: str | None, password: str | None,
                crlfile: str | None, ciphers: str | None, check_hostname: bool) -> ssl.SSLContext:
    """The context kafka-python would build from the same keys (TLS >= 1.2), built at start-up so that
    a missing file or a wrong passphrase is a config error with a hint, not a traceback at the first connect."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = check_hostname
    step = "ssl_cafile"
    try:
        if cafile:
            ctx.load_verify_locations(cafile)
        else:
            ctx.load_default_certs()
        if certfile:
            step = "ssl_certfile/ssl_keyfile"
            ctx.load_cert_chain(certfile=certfile, keyfile=keyfile, password=password)
        if crlfile:
            step = "ssl_crlfile"
            ctx.load_verify_locations(crlfile)
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        if ciphers:
            step = "ssl_ciphers"
            ctx.set_ciphers(ciphers)
    except OSError as exc:  # ssl.SSLError is one
        reason = exc.strerror or getattr(exc, "reason", None) or type(exc).__name__
        hint = " (hint: is ssl_password the key's passphrase, and the key the certificate's?)" if "cert" in step else ""
        raise ConfigError(f"[kafka] {step}: cannot load: {reason}{hint}") from None
    return ctx


def check_mechanism(mechanism: str | None, protocol: str) -> None:
    """What kafka-python would only say at the first connection: a SASL mechanism that cannot work here."""
    if mechanism == "AWS_MSK_IAM":
        if protocol != "SASL_SSL":
            raise ConfigError("[kafka] sasl_mechanism AWS_MSK_IAM needs security_protocol = \"SASL_SSL\"")
        if importlib.util.find_spec("botocore") is None:
            raise ConfigError("[kafka] sasl_mechanism AWS_MSK_IAM needs the botocore package "
                              "(hint: pip install botocore; credentials come from the AWS default chain)")


def markdown() -> str:
    """docs/kafka-options.md's table, from the installed kafka-python (`python -m pipeline.io.kafka_options`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka.version import __version__
    rows = [f"<!-- generated by `python -m pipeline.io.kafka_options` from kafka-python {__version__} -->",
            "| option | clients | kafka-python's default | in jwtriage |", "|---|---|---|---|"]
    from pipeline.config import KafkaConfig  # the config imports this module lazily: no cycle

    own = set(KafkaConfig.model_fields)
    for name, by in sorted(option_table().items()):
        default = next(iter(by.values()))
        shown = repr(default) if isinstance(default, int | float | str | bool | type(None)) else "(an object)"
        if name in REFUSED:
            use = f"refused: {REFUSED[name]}"
        elif name in BUILT:
            use = f"built: {BUILT[name]}"
        elif name in own:
            use = "`[kafka]` only (a jwtriage key" + (", also `_file`/`_env`)" if name in SECRETS else ")")
        else:
            use = "`[kafka]`, " + ", ".join(f"`[kafka.{client}]`" for client in by)
        clients = "all" if len(by) == len(CLIENTS) else ", ".join(by)
        rows.append(f"| `{name}` | {clients} | `{shown}` | {use.replace('|', '/')} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
