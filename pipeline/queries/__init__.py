"""The questions the dashboard, the weekly report, `triage`, `explain` and the demo ask of the store.

One package, so every view counts the same way. Each function takes a DuckDB connection
(read-only is enough) and returns plain rows; aggregation happens in DuckDB, never in
Python, so a 10M-row store stays fast. Time windows are half-open: `since <= ts < until`.
Cause lists reach SQL as parameters, from `pipeline.causes`.

| module | questions |
|---|---|
| base | `Filters` (the filters every view shares), rows as dicts, bucket widths, rotation damage as SQL |
| coverage | what the store holds raw and where hourly rollups take over; the note a view shows about it |
| rolled | the counting questions over rollups and raw rows together (the others call it when rollups apply) |
| failures | counts per cause, service or bucket; comparisons with earlier windows; top lists |
| events | the newest events, one event's evidence, a token's history, filter values, dead letters, positions |
| rotations | rotation damage, each step's failures, time to recover, issuer faults, cache ages (one query each) |
| keys | key hygiene (each key's life and uses, from rollups where they exist), one key's use per service |
| tokens | attack patterns and their clients, algorithms in use, token lifetimes |
"""

from __future__ import annotations

from pipeline.queries.base import RANKABLE, Filters
from pipeline.queries.coverage import Coverage, coverage, expired_note, expired_text
from pipeline.queries.events import (
    dead_letter_counts,
    dead_letter_reasons,
    dead_letter_records,
    dead_letters_in,
    dead_letters_received,
    event_evidence,
    events,
    filter_values,
    services_seen,
    source_positions,
    store_summary,
    token_history,
)
from pipeline.queries.failures import (
    cause_counts,
    cause_counts_vs_previous,
    confidence_counts,
    failures_over_time,
    failures_per_bucket,
    first_event,
    same_window_by_day,
    service_counts_vs_previous,
    time_range,
    top,
    top_by_cause,
    total_events,
    window_buckets,
    window_time_range,
)
from pipeline.queries.keys import key_hygiene, key_usage
from pipeline.queries.rotations import (
    cache_age_by_service,
    cache_lifetime_by_service_issuer,
    issuer_faults,
    rotation_damage_count,
    rotation_effects,
    rotation_impact,
    rotation_services,
    rotation_step_series,
    rotation_step_series_many,
    rotations,
    step_failure_counts,
    step_failures_over_time,
)
from pipeline.queries.tokens import (
    algorithms_in_use,
    attack_client_ids,
    attack_clients,
    attack_kinds_by_cause,
    attacks,
    token_lifetimes,
)

__all__ = [
    "RANKABLE",
    "Coverage",
    "Filters",
    "algorithms_in_use",
    "attack_client_ids",
    "attack_clients",
    "attack_kinds_by_cause",
    "attacks",
    "cache_age_by_service",
    "cache_lifetime_by_service_issuer",
    "cause_counts",
    "cause_counts_vs_previous",
    "confidence_counts",
    "coverage",
    "dead_letter_counts",
    "dead_letter_reasons",
    "dead_letter_records",
    "dead_letters_in",
    "dead_letters_received",
    "event_evidence",
    "events",
    "expired_note",
    "expired_text",
    "failures_over_time",
    "failures_per_bucket",
    "filter_values",
    "first_event",
    "issuer_faults",
    "key_hygiene",
    "key_usage",
    "rotation_damage_count",
    "rotation_effects",
    "rotation_impact",
    "rotation_services",
    "rotation_step_series",
    "rotation_step_series_many",
    "rotations",
    "same_window_by_day",
    "service_counts_vs_previous",
    "services_seen",
    "source_positions",
    "step_failure_counts",
    "step_failures_over_time",
    "store_summary",
    "time_range",
    "token_history",
    "token_lifetimes",
    "top",
    "top_by_cause",
    "total_events",
    "window_buckets",
    "window_time_range",
]
