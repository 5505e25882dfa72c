"""Where "the last N" ends, for triage and the dashboard alike (the dashboard imports this rule).

The store is live (a consumer is writing) when its newest event is within `LIVE_WITHIN` of
the wall clock, either side: windows then end now (or at that event, when it is ahead of
this machine's clock). Otherwise they end at the store's newest event, whether it is an old
or simulated store or a live one whose consumer stopped: a window that ended "now" would
count the stall as quiet, and a longer window could show fewer failures than a shorter one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

#: The store counts as live (a consumer is writing) when its newest event is this close to the wall clock.
LIVE_WITHIN = timedelta(minutes=15)


def window_end(last: datetime | None, now: datetime) -> tuple[datetime, bool]:
    """The moment "the last N" ends, and whether the store is live: now while live, else its newest event.

    While live, the later of now and the newest event (a writer's clock may run a little ahead).
    An empty store ends now.
    """
    if last is None:
        return now, False
    if abs(now - last) <= LIVE_WITHIN:
        return max(now, last), True
    return last, False
