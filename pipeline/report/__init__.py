"""The weekly IAM health report (`jwtriage report`): its data, its numbers, and its two renderings.

| module | role |
|---|---|
| model | the report as data (sections of typed cells), weeks, and the formats every renderer shares |
| build | `build_report`: the summary, causes, services, and the daily stack, from `pipeline.queries` |
| sections | the sections about keys and tokens: rotations, caches, hygiene, lifetimes, algorithms, attacks |
| markdown | `render_markdown` |
| html_page | `render_html`: one self-contained page with inline SVG charts |
"""

from __future__ import annotations

from pipeline.report.build import build_report, latest_week
from pipeline.report.html_page import render_html
from pipeline.report.markdown import render_markdown, spark_text
from pipeline.report.model import (
    DEFAULT_MAX_KEY_AGE,
    DEFAULT_MAX_TOKEN_LIFETIME,
    Report,
    ReportError,
    parse_duration,
    parse_week,
    week_name,
)

__all__ = [
    "DEFAULT_MAX_KEY_AGE",
    "DEFAULT_MAX_TOKEN_LIFETIME",
    "Report",
    "ReportError",
    "build_report",
    "latest_week",
    "parse_duration",
    "parse_week",
    "render_html",
    "render_markdown",
    "spark_text",
    "week_name",
]
