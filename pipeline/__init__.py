"""jwtriage: why was that JWT rejected? Re-validate it without trusting it, classify the root cause.

The names a library user needs are importable from here (`from pipeline import Classifier`).
They load on first use (PEP 562): `jwtriage` imports this package on every start and must not
pay for pydantic, DuckDB or pyarrow before it knows the command.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("jwtriage")
except PackageNotFoundError:  # a checkout that was never installed
    __version__ = "0+unknown"

#: public name → the module that defines it
_EXPORTS: dict[str, str] = {
    # configuration
    "Config": "pipeline.config",
    "load_config": "pipeline.config",
    # the wire models and the verdict vocabulary
    "AuthFailureEvent": "pipeline.models",
    "SampledToken": "pipeline.models",
    "JwksSnapshot": "pipeline.models",
    "Classification": "pipeline.models",
    "Cause": "pipeline.models",
    "Attack": "pipeline.models",
    "Confidence": "pipeline.models",
    # the decision procedure
    "KeyTimeline": "pipeline.engine.keys",
    "Classifier": "pipeline.engine.classify",
    "Verdict": "pipeline.engine.classify",
    # the loop, its sources and sinks
    "Pipeline": "pipeline.runner",
    "PipelineLimits": "pipeline.runner",
    "RunStats": "pipeline.runner",
    "run": "pipeline.runner",
    "Source": "pipeline.io.base",
    "Sink": "pipeline.io.base",
    "ListSource": "pipeline.io.memory",
    "ListSink": "pipeline.io.memory",
    "FileSource": "pipeline.io.files",
    # the store
    "Store": "pipeline.io.store",
    "connect_readonly": "pipeline.io.store_readers",
    # errors
    "JwtriageError": "pipeline.errors",
    "UsageError": "pipeline.errors",
    "ConfigError": "pipeline.errors",
    "StoreError": "pipeline.errors",
}

__all__ = [  # `_EXPORTS` and `__version__`, spelt out for linters (tests/test_packaging.py checks they agree)
    "Attack",
    "AuthFailureEvent",
    "Cause",
    "Classification",
    "Classifier",
    "Confidence",
    "Config",
    "ConfigError",
    "FileSource",
    "JwksSnapshot",
    "JwtriageError",
    "KeyTimeline",
    "ListSink",
    "ListSource",
    "Pipeline",
    "PipelineLimits",
    "RunStats",
    "SampledToken",
    "Sink",
    "Source",
    "Store",
    "StoreError",
    "UsageError",
    "Verdict",
    "__version__",
    "connect_readonly",
    "load_config",
    "run",
]

if TYPE_CHECKING:  # what type checkers and editors see; at run time `__getattr__` imports on demand
    from pipeline.config import Config, load_config
    from pipeline.engine.classify import Classifier, Verdict
    from pipeline.engine.keys import KeyTimeline
    from pipeline.errors import ConfigError, JwtriageError, StoreError, UsageError
    from pipeline.io.base import Sink, Source
    from pipeline.io.files import FileSource
    from pipeline.io.memory import ListSink, ListSource
    from pipeline.io.store import Store
    from pipeline.io.store_readers import connect_readonly
    from pipeline.models import (
        Attack,
        AuthFailureEvent,
        Cause,
        Classification,
        Confidence,
        JwksSnapshot,
        SampledToken,
    )
    from pipeline.runner import Pipeline, PipelineLimits, RunStats, run


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup does not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
