"""Triage on the terminal: the header, the lines to read first, and one table per finding (rich)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from pipeline.causes import cause_label, confidence_text
from pipeline.tables import keep_words_whole, summary_table
from pipeline.text import sparkline, utc_text
from pipeline.triage.sentences import baseline_label, client_text
from pipeline.triage.summary import BUCKETS, SPIKE_MIN_EVENTS, SPIKE_RATIO, Summary, clock, span


def render(console: Console, summary: Summary) -> None:
    length = span(summary.window)
    scope = f" · service {escape(summary.service)}" if summary.service else ""
    console.print(
        f"[bold]jwtriage triage[/] · last {length} up to {utc_text(summary.reference)} "
        f"({escape(summary.reference_note)})"
        f"{scope} · {escape(summary.store)}"
    )
    if summary.coverage_note:
        console.print(Text(summary.coverage_note, style="dim"))
    if summary.message:
        console.print(Text(summary.message))
        return
    compared = "  ".join(
        f"{_COMPARISON_LABEL[c.name](length)}: {c.shown(c.total if c.usable else None)}" for c in summary.comparisons
    )
    console.print(f"{summary.total:,} failures  ({compared})  [dim]times UTC[/]")
    console.print(f"[dim]confidence: {confidence_text(summary.confidence)}[/]\n")

    console.print("[bold]Read first[/]")
    for n, line in enumerate(summary.read_first, 1):
        console.print(Text(f" {n}. {line}"))
    console.print()
    console.print(_causes_table(summary, length, console.width))
    if summary.spikes:
        spikes = _spikes_table(summary)
        keep_words_whole(spikes, console.width)
        console.print(spikes)
    if summary.rotations:
        console.print(_fitted(console, lambda trend: _rotations_table(summary, trend)))
    if summary.attacks:
        console.print(_fitted(console, lambda trend: _attacks_table(summary, trend)))
    console.print(
        f"[dim]Sparklines: {BUCKETS} buckets of {span(summary.window / BUCKETS)} over the window, "
        "each row scaled to its own peak. "
        f"Spike: ≥ {SPIKE_MIN_EVENTS} events and ≥ {SPIKE_RATIO:g}x the baseline ("
        + (baseline_label(summary) if summary.baseline else "none: the store does not reach back far enough")
        + "), or new. ~N: scaled from partial history; –: no history that far back.[/]"
    )


_COMPARISON_LABEL = {
    "previous": lambda length: f"{length} before",
    "day_before": lambda length: "a day earlier",
    "week_before": lambda length: "a week earlier",
}


def _fitted(console: Console, build: Callable[[bool], Table]) -> Table:
    """The table with its trend column where every word then fits whole at this width, else without it."""
    table = build(True)
    if keep_words_whole(table, console.width):
        return table
    table = build(False)
    keep_words_whole(table, console.width)
    return table


def _causes_table(summary: Summary, length: str, width: int) -> Table:
    table = summary_table("Failures by cause")
    table.add_column("cause", no_wrap=True)
    table.add_column("events", justify="right", no_wrap=True)
    for c in summary.comparisons:
        label = _COMPARISON_LABEL[c.name](length)
        table.add_column(label, justify="right", overflow="fold", min_width=max(map(len, label.split())))
    table.add_column("trend", no_wrap=True, min_width=BUCKETS)
    table.add_column("spike", no_wrap=True)
    labels = width >= 110  # the cause's label only where it does not push the trend off the line
    spikes = {s.cause: s for s in summary.spikes}
    for row in summary.causes:
        cause = row["cause"]
        spike = spikes.get(cause)
        mark = f"[bold red]▲ {spike.label}[/]" if spike else ""
        table.add_row(
            f"{cause} [dim]{escape(cause_label(cause))}[/]" if labels else cause,
            f"{row['events']:,}",
            *(c.shown(c.count(cause)) for c in summary.comparisons),
            sparkline(summary.sparklines.get(cause, [0] * BUCKETS)),
            mark,
        )
    return table


def _spikes_table(summary: Summary) -> Table:
    table = summary_table("Spikes")
    for column in ("cause", "events", "vs baseline", "since", "services", "clients"):
        table.add_column(
            column, justify="right" if column == "events" else "left", no_wrap=column == "cause", overflow="fold"
        )
    baseline = summary.baseline
    for s in summary.spikes:
        since = f"before {clock(summary, s.onset_before)}" if s.onset_before else clock(summary, s.onset)
        # "~" only when scaled from partial history, as in the causes table (the legend's "~N")
        was = f"{s.baseline:,.0f}" if baseline is None else baseline.shown(s.baseline)
        table.add_row(
            s.cause,
            f"{s.events:,}",
            s.label if s.ratio is None else f"{s.label} ({was})",
            since,
            Text(", ".join(f"{x['service']} {x['events']:,}" for x in s.services)),
            Text(", ".join(f"{client_text(x['client_id'])} {x['events']:,}" for x in s.clients)),
        )
    return table


def _rotations_table(summary: Summary, trend: bool) -> Table:
    table = summary_table("Key rotations in or near the window, and the failures they caused in it")
    for column in ("when", "issuer", "step", "failures", "services", "trend")[: None if trend else -1]:
        table.add_column(
            column,
            justify="right" if column == "failures" else "left",
            overflow="fold",
            no_wrap=column == "trend",
            min_width=BUCKETS if column == "trend" else None,
        )
    for step in summary.rotations:
        when = clock(summary, step["ts"]) + ("" if step["in_window"] else " [dim](before)[/]")
        if step["ts"] >= summary.until:
            when = clock(summary, step["ts"]) + " [dim](after)[/]"
        services = ", ".join(_service_effect(s) for s in step["services"][:4]) + (
            " …" if len(step["services"]) > 4 else ""
        )
        table.add_row(
            when,
            Text(step["issuer_name"]),
            Text(f"{step['action']} {step['kid']}"),
            f"{step['failures']:,}",
            Text(services or "none so far"),
            *([sparkline(step["sparkline"])] if trend else []),
        )
    return table


def _service_effect(entry: dict[str, Any]) -> str:
    causes = entry["causes"]
    if len(causes) == 1:
        return f"{entry['service']} {entry['failures']:,} ({next(iter(causes))})"
    parts = ", ".join(f"{cause} {count:,}" for cause, count in sorted(causes.items(), key=lambda kv: -kv[1]))
    return f"{entry['service']} {entry['failures']:,} ({parts})"


def _attacks_table(summary: Summary, trend: bool) -> Table:
    table = summary_table("Attack bursts")
    for column in ("attack", "events", "services", "clients", "first–last", "trend")[: None if trend else -1]:
        table.add_column(
            column,
            justify="right" if column == "events" else "left",
            overflow="fold",
            no_wrap=column in ("attack", "first–last", "trend"),
            min_width=BUCKETS if column == "trend" else None,
        )
    for a in summary.attacks:
        table.add_row(
            a["attack"],
            f"{a['events']:,}",
            Text(", ".join(a["services"])),
            Text(", ".join(f"{client_text(c['client_id'])} {c['events']:,}" for c in a["clients"])),
            f"{clock(summary, a['first_seen'])}–{clock(summary, a['last_seen'])}",
            *([sparkline(a["sparkline"])] if trend else []),
        )
    return table
