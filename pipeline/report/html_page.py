"""The report as one self-contained HTML page: inline CSS and SVG charts, no scripts, opens offline."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from pipeline.causes import CAUSE_COLOURS, CAUSE_LABELS
from pipeline.report.model import (
    SPARK_BUCKET,
    Cell,
    Code,
    Column,
    DayStack,
    Prose,
    Report,
    Spark,
    day_text,
)
from pipeline.text import human_duration, utc_text

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1d2330;
margin:0;background:#f5f6f8}
main{max-width:1180px;margin:0 auto;padding:24px 32px 48px;background:#fff}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 6px;padding-top:8px;border-top:1px solid #e3e6eb}
.meta,.intro,.note,.empty{color:#5b6473}.intro{max-width:900px;margin:0 0 10px}
ul.summary{background:#f0f4fa;border-left:4px solid #3b6fd8;padding:10px 14px 10px 30px;margin:16px 0}
table{border-collapse:collapse;width:100%;margin:6px 0 4px;font-size:13px}
th,td{border-bottom:1px solid #e3e6eb;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f7f8fa;font-weight:600}h3{font-size:14px;margin:14px 0 2px}
td.num,th.num{text-align:right}td.num{white-space:nowrap}small{color:#5b6473}
tbody tr:hover{background:#fafbfd}code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
background:#f1f3f6;padding:1px 4px;border-radius:3px;white-space:nowrap}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;margin:4px 0 8px;font-size:12px}
.scroll{overflow-x:auto}td.nowrap{white-space:nowrap}
span.swatch{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px;vertical-align:-1px}
td.fix{font-size:12px;color:#3d4452;max-width:420px}.bad{color:#b3261e;font-weight:600}
svg text{font:11px system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;fill:#5b6473}
footer{margin-top:36px;color:#8a92a0;font-size:12px}
""".strip()


def _h(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_text(text: str) -> str:
    parts = text.split("`")
    return "".join(f"<code>{_h(p)}</code>" if i % 2 else _h(p) for i, p in enumerate(parts))


def _html_cell(cell: Cell, column: Column) -> str:
    css = [name for name, on in (("num", column.numeric), ("nowrap", column.nowrap)) if on]
    if isinstance(cell, Code):
        swatch = f'<span class="swatch" style="background:{cell.colour}"></span>' if cell.colour else ""
        note = f"<br><small>{_h(cell.note)}</small>" if cell.note else ""
        body = f"{swatch}<code>{_h(cell.text)}</code>{note}"
    elif isinstance(cell, Prose):
        css.append("fix")
        body = _html_text(cell.text)
    elif isinstance(cell, Spark):
        body = spark_svg(cell.values, cell.marker, cell.caption)
    else:
        body = _h(cell)
        if cell.startswith(("outlives", "signed before", "used ")) or "after removal" in cell:
            body = f'<span class="bad">{body}</span>'
    return f'<td class="{" ".join(css)}">{body}</td>' if css else f"<td>{body}</td>"


def _nice_max(value: int) -> int:
    if value <= 0:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return int(step * magnitude)
    return int(10 * magnitude)


def stacked_bars_svg(daily: DayStack, width: int = 760, height: int = 260) -> str:
    """An inline SVG: one bar per day, stacked by cause, with a y axis and a <title> per segment."""
    left, right, top, bottom = 56, 12, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(v[n] for v in daily.counts.values()) for n in range(len(daily.days))]
    y_max = _nice_max(max(totals) if totals else 0)
    slot = plot_w / max(1, len(daily.days))
    bar = slot * 0.62
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'role="img" aria-label="Failures per day, stacked by cause">'
    ]
    for tick in range(5):
        value = y_max * tick / 4
        y = top + plot_h - plot_h * tick / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e6eb"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{int(value):,}</text>')
    for n, day in enumerate(daily.days):
        x = left + slot * n + (slot - bar) / 2
        y = top + plot_h
        for cause, values in daily.counts.items():
            count = values[n]
            if not count:
                continue
            h = plot_h * count / y_max
            y -= h
            tip = f"{day_text(day)} · {cause.value} ({CAUSE_LABELS[cause]}): {count:,}"
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{CAUSE_COLOURS[cause]}">'
                f"<title>{_h(tip)}</title></rect>"
            )
        label_x = left + slot * n + slot / 2
        parts.append(f'<text x="{label_x:.1f}" y="{height - 8}" text-anchor="middle">{_h(day_text(day))}</text>')
        if totals[n]:
            parts.append(f'<text x="{label_x:.1f}" y="{y - 4:.1f}" text-anchor="middle">{totals[n]:,}</text>')
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#8a92a0"/>')
    parts.append("</svg>")
    return "".join(parts)


def spark_svg(values: Sequence[int], marker: int, caption: str, width: int = 140, height: int = 34) -> str:
    """An inline SVG line of failures per bucket with a dashed marker at the step."""
    pad = 3
    top = max(values) if values else 0
    count = max(1, len(values) - 1)
    points = []
    for n, value in enumerate(values):
        x = pad + (width - 2 * pad) * n / count
        y = height - pad - (height - 2 * pad) * (value / top if top else 0)
        points.append(f"{x:.1f},{y:.1f}")
    marker_x = pad + (width - 2 * pad) * marker / count
    area = f"{pad},{height - pad} " + " ".join(points) + f" {width - pad},{height - pad}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{_h(caption)}"><title>{_h(caption)} (peak {top:,} per '
        f"{_h(human_duration(SPARK_BUCKET.total_seconds()))})</title>"
        f'<polygon points="{area}" fill="#fde2e1"/>'
        f'<polyline points="{" ".join(points)}" fill="none" stroke="#d62728" stroke-width="1.5"/>'
        f'<line x1="{marker_x:.1f}" x2="{marker_x:.1f}" y1="0" y2="{height}" stroke="#1d2330" '
        'stroke-dasharray="2,2"/></svg>'
    )


def render_html(report: Report) -> str:
    title = f"jwtriage weekly IAM health report — {report.week}"
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_h(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_h(title)}</h1>",
        f'<p class="meta">{_h(day_text(report.since))} – {_h(day_text(report.until - timedelta(days=1)))} (UTC), '
        "compared "
        f"with the week before. Generated {_h(utc_text(report.generated_at, 'generated'))} UTC"
        + (f" from <code>{_h(report.store)}</code>." if report.store else ".")
        + "</p>",
    ]
    if report.no_data:
        out += ["<h2>No data</h2>", f"<p>{_html_text(report.no_data)}</p>"]
    else:
        out.append('<ul class="summary">' + "".join(f"<li>{_html_text(s)}</li>" for s in report.summary) + "</ul>")
        for section in report.sections:
            out.append(f'<section id="{section.key}"><h2>{_h(section.title)}</h2>')
            out.append(f'<p class="intro">{_html_text(section.intro)}</p>')
            if section.key == "causes" and report.daily is not None:
                out.append(stacked_bars_svg(report.daily))
                out.append(
                    '<div class="legend">'
                    + "".join(
                        f'<span><span class="swatch" style="background:{CAUSE_COLOURS[c]}"></span>'
                        f"<code>{_h(c.value)}</code> {_h(CAUSE_LABELS[c])}</span>"
                        for c in report.daily.counts
                    )
                    + "</div>"
                )
            if not section.rows:
                out.append(f'<p class="empty">{_h(section.empty)}</p>')
            head = "".join(
                f'<th class="num">{_h(c.title)}</th>' if c.numeric else f"<th>{_h(c.title)}</th>"
                for c in section.columns
            )
            for heading, rows in section.tables() if section.rows else []:
                if heading:
                    out.append(f"<h3>{_h(heading)}</h3>")
                body = "".join(
                    "<tr>" + "".join(_html_cell(cell, col) for cell, col in zip(row, section.columns, strict=True))
                    + "</tr>"
                    for row in rows
                )  # fmt: skip
                out.append(
                    f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
                )
            out += [f'<p class="note">{_html_text(note)}</p>' for note in section.notes]
            out.append("</section>")
    out.append(
        "<footer>Built by <code>jwtriage report</code> from the store alone. No token, fingerprint or subject "
        "appears in this report; token-supplied strings are escaped and shortened. Opens offline: no scripts, "
        "fonts or images are fetched.</footer></main></body></html>"
    )
    return "\n".join(out) + "\n"
