"""jwtriage: why was that JWT rejected? Re-validate it without trusting it, classify the root cause."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("jwtriage")
except PackageNotFoundError:  # a checkout that was never installed
    __version__ = "0+unknown"
