"""One exception root for everything jwtriage raises on purpose; `jwtriage` turns it into one line and exit 2.

    JwtriageError                  the root: `cli.main` prints "jwtriage: <message>", exit 2
    ├── UsageError                 the command line or a file it names (errors.py)
    ├── ConfigError                the TOML file or a JWTRIAGE_* variable (errors.py)
    ├── StoreError                 the store: missing, held by another writer, a newer schema (errors.py)
    ├── ReportError                a report parameter, e.g. a bad --week (report/model.py)
    ├── FetchError                 jwks-watch could not get a usable key set (jwks_watcher.py)
    └── ValueError mix-ins, raised and caught inside the stream, never reaching the command line:
        ├── RecordError            one record does not fit its wire model → a dead letter (records.py)
        ├── MalformedToken         a token is not a compact JWS → the verdict `malformed` (engine/tokens.py)
        └── BadJwk                 a published key cannot be used → skipped, logged (engine/keys.py)

The message is written for the person at the terminal: what is wrong, where, and a hint.
"""

from __future__ import annotations


class JwtriageError(Exception):
    """Something jwtriage refuses on purpose, with a message a person can act on."""


class UsageError(JwtriageError):
    """A problem with the command line or the files it names; printed with a hint, exit 2."""


class ConfigError(JwtriageError):
    """The configuration cannot be used; the message names the file (or variable) and the key."""


class StoreError(JwtriageError):
    """The store cannot be opened or written as asked; the message says why and what to do."""
