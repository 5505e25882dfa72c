"""`jwtriage report`: the weekly IAM health report, as Markdown or one self-contained HTML page.

From the store alone (no config, no network), for one ISO week (UTC, Monday to Monday),
compared with the week before:

1. failures by cause (code, label, change, remediation) and by day; by service;
2. each key rotation step in the week: the failures it caused per service and when they stopped;
3. services whose JWKS cache outlives the issuer's rotation overlap (publish → first use);
4. rotation hygiene per issuer: key age, time from publishing to first use, from last use to removal;
5. token lifetimes over the policy (`--max-token-lifetime`, default 1 h), verified tokens only;
6. algorithms in use; 7. attacks; 8. dead letters received.

The report itself lives in `pipeline/report/` (model, build, sections, markdown, html_page);
this module is the command. A week without events (or an empty store) gives a short report
that says so, with exit status 0: a cron job gets a report every week. Exit 2 for a bad
--week or a missing store.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import duckdb

from pipeline.commands.common import EXIT_OK, reader_store_flags, store_path
from pipeline.report import (
    DEFAULT_MAX_KEY_AGE,
    DEFAULT_MAX_TOKEN_LIFETIME,
    ReportError,
    build_report,
    parse_duration,
    parse_week,
    render_html,
    render_markdown,
    spark_text,
    week_name,
)

__all__ = [
    "ReportError",
    "build_report",
    "parse_duration",
    "parse_week",
    "register",
    "render_html",
    "render_markdown",
    "spark_text",
    "week_name",
]


def _duration_arg(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ReportError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_report(args: argparse.Namespace, stdin: IO[bytes], stdout: IO[str]) -> int:
    from pipeline.errors import UsageError
    from pipeline.io.store_readers import connect_readonly

    fmt = args.format or ("html" if args.out and str(args.out).lower().endswith((".html", ".htm")) else "md")
    if args.week:
        try:
            parse_week(args.week)
        except ReportError as exc:
            raise UsageError(str(exc)) from None
    path = store_path(args)
    con = connect_readonly(path)  # a StoreError is a JwtriageError: one line, exit 2
    try:
        report = build_report(
            con,
            args.week,
            max_token_lifetime=args.max_token_lifetime,
            max_key_age=args.max_key_age,
            store=Path(path).name,
        )
    except duckdb.CatalogException as exc:
        raise UsageError(f"{path} is not a jwtriage store: {exc}") from None
    finally:
        con.close()
    text = render_html(report) if fmt == "html" else render_markdown(report)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        state = "no data" if report.no_data else f"{report.events:,} events"
        print(f"wrote {out} ({fmt}, {report.week}, {state})", file=stdout)
    else:
        stdout.write(text)
    return EXIT_OK


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "report",
        help="the weekly IAM health report (Markdown or self-contained HTML) from the store",
        description="The weekly IAM health report for one ISO week (UTC), from the store alone: failures by cause "
        "and service with the change from the week before; each rotation's impact and recovery; services whose "
        "JWKS caches outlive the rotation overlap; rotation hygiene per issuer; token lifetimes over policy; "
        "algorithms in use; attacks. The HTML has its charts inline and opens offline. A week without events "
        "gives a short report saying so (exit 0); a bad --week or a missing store exits 2.",
        epilog="Examples: jwtriage report --db jwtriage-demo.duckdb; "
        "jwtriage report --week 2026-W47 --format html --out report.html",
    )
    reader_store_flags(parser)
    parser.add_argument("--week", metavar="YYYY-Www", help="ISO week, e.g. 2026-W47 (default: the latest with events)")
    parser.add_argument(
        "--format", choices=("md", "html"), help="output format (default: html when --out ends in .html, else md)"
    )
    parser.add_argument("--out", metavar="FILE", help="write the report here (default: stdout)")
    parser.add_argument(
        "--max-token-lifetime",
        type=_duration_arg,
        default=DEFAULT_MAX_TOKEN_LIFETIME,
        metavar="DURATION",
        help="token lifetime policy, e.g. 1h, 30m, 12h (default 1h)",
    )
    parser.add_argument(
        "--max-key-age",
        type=_duration_arg,
        default=DEFAULT_MAX_KEY_AGE,
        metavar="DURATION",
        help="flag signing keys older than this (default 90d)",
    )
    parser.set_defaults(handler=cmd_report)
