"""What every gateway adapter shares: reading a line without trusting it, hosts → service, ids, times.

A gateway line is hostile input like any record: every reader here is total (a value of
the wrong type is absent, not an exception), sizes are capped before anything is parsed,
and every problem a person must fix is a `RecordError` (a dead letter with its reason).
`Gateway.decoder` wraps an adapter's `read` so that nothing else can escape.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pipeline.config import normalise_host
from pipeline.models import AuthFailureEvent
from pipeline.records import RecordError

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.io.formats import EventDecoder

#: The longest string kept from a line (a message, an id); longer ones are cut (messages say enough by then).
MAX_TEXT = 2_048
#: A request id longer than this is not one (the event id is the hash of the line instead).
MAX_ID = 256
#: Values gateways write for "no value".
_EMPTY = frozenset({"", "-", "null", "none"})

#: An adapter: the line, the gateway (hosts, ids) → the event, or None to skip.
Reader = Callable[[bytes, "Gateway"], AuthFailureEvent | None]


class Gateway:
    """The config's `hosts` as a lookup, and the line-level helpers every adapter uses."""

    def __init__(self, config: Config, name: str) -> None:
        self.name = name
        self.hosts: dict[str, str] = {
            normalise_host(host): service.name for service in config.services for host in service.hosts
        }

    def service(self, host: object) -> str:
        """The service whose `hosts` names `host` (any case, any port); a `RecordError` when none does."""
        text = string(host, MAX_TEXT)
        if text is None:
            raise RecordError(f"{self.name} line names no host (authority): cannot tell which service it is")
        service = self.hosts.get(normalise_host(text))
        if service is None:
            known = ", ".join(sorted(self.hosts)) or "none: add `hosts` to [[services]]"
            raise RecordError(f"unknown service: host {text[:200]!r} is in no [[services]] hosts (known: {known})")
        return service

    def decoder(self, read: Reader) -> EventDecoder:
        """`read` as an `EventDecoder`: the size cap first, and only `RecordError` ever escapes."""

        def decode(raw: bytes, max_bytes: int) -> AuthFailureEvent | None:
            if len(raw) > max_bytes:
                raise RecordError(f"record is {len(raw):,} bytes, over the {max_bytes:,}-byte limit")
            try:
                return read(raw, self)
            except RecordError:
                raise
            except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError, OverflowError) as exc:
                raise RecordError(f"unreadable {self.name} line ({type(exc).__name__})") from None

        decode.__name__ = f"decode_{self.name.replace('-', '_')}"
        return decode


def json_object(raw: bytes, what: str) -> dict[str, Any]:
    """The line as a JSON object, or a `RecordError` saying why it is not one."""
    try:
        value = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise RecordError(f"not UTF-8 (byte {exc.start})") from None
    except RecursionError:
        raise RecordError("not JSON: nested too deeply") from None
    except ValueError as exc:
        raise RecordError(f"not JSON: {str(exc)[:200]}") from None
    if not isinstance(value, dict):
        raise RecordError(f"not {what} JSON object (got {type(value).__name__})")
    return value


def string(value: object, limit: int = MAX_TEXT) -> str | None:
    """A non-empty string value (numbers as text), cut at `limit`; None for absent, "-", null or other types."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.lower() in _EMPTY:
        return None
    return text[:limit]


def first(obj: Mapping[str, Any], *keys: str) -> Any:
    """The first of `keys` that `obj` holds with a value (gateways and shippers name fields differently)."""
    for key in keys:
        value = obj.get(key)
        if (isinstance(value, dict | list) and value) or string(value) is not None:
            return value
    return None


def nested(obj: object, *path: str) -> Any:
    """obj[path[0]][path[1]]..., None when a step is missing or not an object."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def status(value: object) -> int | None:
    """An HTTP status from a number or a numeric string."""
    text = string(value, 8)
    if text is None or not text.isdigit():
        return None
    return int(text)


def event_id(request_id: object, raw: bytes) -> str:
    """The request id when the line has a usable one, else a hash of the line (the same line, the same id)."""
    text = string(request_id, MAX_ID + 1)
    if text is not None and len(text) <= MAX_ID and text.isprintable():
        return text
    return "line-sha256:" + hashlib.sha256(raw).hexdigest()[:32]


def token_sha256(value: object) -> str | None:
    """A shipper's `token_sha256` (64 hex digits), lower-cased; a `RecordError` when present but not one."""
    text = string(value, 80)
    if text is None:
        return None
    if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise RecordError("token_sha256: not 64 hex digits (the SHA-256 of the compact token)")
    return text.lower()


def epoch(value: object) -> datetime | None:
    """Seconds or milliseconds since 1970 (a number or digits); ms when it is past the year 5138 as seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text) if text and len(text) < 32 else None
        except ValueError:
            return None
    if not isinstance(value, int | float) or value != value or value <= 0:
        return None
    seconds = value / 1000 if value > 1e11 else value
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def rfc3339(value: object) -> datetime | None:
    """An RFC 3339 / ISO 8601 time with an offset (a `Z` included); naive times are UTC."""
    text = string(value, 64)
    if text is None:
        return None
    if text.startswith("[") and text.endswith("]"):  # Envoy's text-format START_TIME
        text = text[1:-1]
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def require_time(found: datetime | None, what: str) -> datetime:
    if found is None:
        raise RecordError(f"no readable time in the line ({what})")
    return found


def make_event(
    *,
    raw: bytes,
    request_id: object,
    ts: datetime,
    service: str,
    reported: str | None,
    sha256: str | None = None,
    client_id: object = None,
) -> AuthFailureEvent:
    """The event, with the fields a gateway line can give (never a token: gateways ship its hash at most)."""
    eid = event_id(request_id, raw)
    return AuthFailureEvent(
        event_id=eid,
        ts=ts,
        service=service,
        token_sha256=sha256,
        reported_error=reported,
        client_id=string(client_id, MAX_ID),
        request_id=None if eid.startswith("line-sha256:") else eid,
    )
