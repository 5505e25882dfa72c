"""The report as Markdown: tables with escaped cells, the daily counts as a table, sparklines as text."""

from __future__ import annotations

import re
from datetime import timedelta

from pipeline.report.model import (
    Cell,
    Code,
    DayStack,
    Prose,
    Report,
    Spark,
    count_text,
    day_text,
)
from pipeline.text import sparkline, utc_text

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def _md_code(text: str) -> str:
    """A code span (a backtick inside would end it early: shown as a quote)."""
    return "`" + text.replace("`", "'").replace("\n", " ") + "`"


def _md(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text.replace("\n", " "))


def _md_cell(cell: Cell) -> str:
    if isinstance(cell, Prose):
        return _md_text(cell.text)
    if isinstance(cell, Code):
        code = f"`{cell.text}`" if "`" not in cell.text and "|" not in cell.text else _md(cell.text)
        return f"{code} ({_md(cell.note)})" if cell.note else code
    if isinstance(cell, Spark):
        return spark_text(cell.values, cell.marker)
    return _md(cell)


#: The report's Unicode sparkline is the shared one (kept under this name for the report's callers).
spark_text = sparkline


def render_markdown(report: Report) -> str:
    out = [
        f"# jwtriage weekly IAM health report — {report.week}",
        "",
        f"{day_text(report.since)} – {day_text(report.until - timedelta(days=1))} (UTC), "
        "compared with the week before. "
        f"Generated {utc_text(report.generated_at, 'generated')} UTC"
        + (f" from {_md_code(report.store)}." if report.store else "."),
        "",
    ]
    if report.no_data:
        out += ["## No data", "", _md_text(report.no_data), ""]
        return "\n".join(out)
    out += ["## Summary", ""]
    out += [f"- {_md_text(line)}" for line in report.summary]
    out.append("")
    for section in report.sections:
        out += [f"## {section.title}", "", _md_text(section.intro), ""]
        if section.key == "causes" and report.daily is not None:
            out += [*_md_daily(report.daily), ""]
        if not section.rows:
            out += [f"_{_md(section.empty)}_", ""]
        for heading, rows in section.tables() if section.rows else []:
            if heading:
                out += [f"### {_md(heading)}", ""]
            out.append("| " + " | ".join(_md(c.title) for c in section.columns) + " |")
            out.append("|" + "|".join("---:" if c.numeric else "---" for c in section.columns) + "|")
            for row in rows:
                out.append("| " + " | ".join(_md_cell(cell) for cell in row) + " |")
            out.append("")
        for note in section.notes:
            out += [_md_text(note), ""]
    out += ["---", "", "_No token, fingerprint or subject appears in this report; token-supplied strings are "
            "escaped and shortened._", ""]  # fmt: skip
    return "\n".join(out)


def _md_text(text: str) -> str:
    """Prose that may hold `code` spans of our own making: escape everything outside them."""
    parts = text.split("`")
    return "".join(f"`{p}`" if i % 2 else _md(p) for i, p in enumerate(parts))


def _md_daily(daily: DayStack) -> list[str]:
    causes = sorted(daily.counts, key=lambda c: -sum(daily.counts[c]))
    shown, rest = causes[:6], causes[6:]
    header = ["day", "events", *[f"`{c.value}`" for c in shown]] + (["other"] if rest else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for n, day in enumerate(daily.days):
        total = sum(daily.counts[c][n] for c in causes)
        cells = [day_text(day), count_text(total), *[count_text(daily.counts[c][n]) for c in shown]]
        if rest:
            cells.append(count_text(sum(daily.counts[c][n] for c in rest)))
        lines.append("| " + " | ".join(cells) + " |")
    return lines
