"""`jwtriage triage`'s findings: what is failing now, what changed, since when.

| module | role |
|---|---|
| summary | `summarize`: the window, comparisons, spikes, rotations and attacks, from `pipeline.queries` |
| sentences | `read_first`: the one or two lines to read first, with what to do |
| terminal | `render`: the header and tables on a rich console |
| window | `window_end`: where "the last N" ends (now while live, else the store's last event), the dashboard's too |
"""

from __future__ import annotations

from pipeline.triage.sentences import read_first
from pipeline.triage.summary import BUCKETS, SPIKE_MIN_EVENTS, SPIKE_RATIO, Comparison, Spike, Summary, span, summarize
from pipeline.triage.terminal import render

__all__ = [
    "BUCKETS",
    "SPIKE_MIN_EVENTS",
    "SPIKE_RATIO",
    "Comparison",
    "Spike",
    "Summary",
    "read_first",
    "render",
    "span",
    "summarize",
]
