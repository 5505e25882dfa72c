"""Crash points for the reliability tests: where a kill -9 is most likely to lose or duplicate data.

`JWTRIAGE_CRASH_AT=name[:n]` makes the process SIGKILL itself the n-th time (default 1st) it
reaches the point `name`. Unset (always, outside tests), `crash_point` is a dict lookup and a
return. The points sit inside the store's transaction and around the group commit, which no
external kill can hit reliably.
"""

from __future__ import annotations

import os
import signal

POINTS = ("batch_start", "after_rows", "before_commit", "after_commit", "before_group_commit", "after_publish")

_target, _, _count = (os.environ.get("JWTRIAGE_CRASH_AT") or "").partition(":")
_remaining = int(_count or 1)


def crash_point(name: str) -> None:
    """Die here, with no chance to clean up, when the test asked for it."""
    global _remaining
    if name != _target:
        return
    _remaining -= 1
    if _remaining <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
