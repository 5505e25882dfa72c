"""The Altair (Vega-Lite) charts. Pure functions: data frames in, a chart out.

Time axes use UTC scales (the browser's zone never shifts a bucket), and tooltips show
pre-formatted UTC times. Causes keep one colour on every chart (`ui.CAUSE_COLORS`), the
rotation causes stacked first.
"""

from __future__ import annotations

from datetime import datetime

import altair as alt
import pandas as pd

from dashboards import ui
from dashboards.data import BUCKET_WIDTH

TIME_AXIS = alt.Axis(format="%a %H:%M", labelAngle=0, labelOverlap=True, title=None, tickCount=8)


def _iso(when: datetime | pd.Timestamp) -> str:
    # A temporal domain as ISO strings: Vega-Lite (as Streamlit embeds it) draws nothing with epoch numbers.
    return pd.Timestamp(when).isoformat()


def _time_x(since: datetime, until: datetime, field: str = "bucket", axis: alt.Axis | None = TIME_AXIS) -> alt.X:
    return alt.X(f"{field}:T", scale=alt.Scale(type="utc", domain=[_iso(since), _iso(until)]), axis=axis, title=None)


def cause_color(causes: pd.Series, title: str = "cause", legend: alt.Legend | None = None) -> alt.Color:
    present = set(causes)
    order = [c for c in ui.CAUSE_ORDER if c in present] + sorted(present - set(ui.CAUSE_ORDER))
    return alt.Color(
        "cause_name:N",
        title=title,
        scale=alt.Scale(
            domain=[ui.cause_name(c) for c in order], range=[ui.CAUSE_COLORS.get(c, "#bdc1c6") for c in order]
        ),
        legend=legend or alt.Legend(labelLimit=280, symbolType="square"),
    )


def _with_causes(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["cause_name"] = out["cause"].map(ui.cause_name)
    out["rank"] = out["cause"].map(ui.cause_rank)
    return out


def _span_x() -> alt.X:
    # Bars from x to x2 take no explicit scale domain (Vega-Lite then warns and computes an infinite
    # extent); `_extent` widens the axis to the whole window instead.
    return alt.X("bucket:T", scale=alt.Scale(type="utc"), axis=TIME_AXIS, title=None)


def _extent(since: datetime, until: datetime) -> alt.Chart:
    """An invisible layer at both ends of the window, so the time axis spans all of it."""
    ends = pd.DataFrame({"bucket": [pd.Timestamp(since), pd.Timestamp(until)]})
    return alt.Chart(ends).mark_point(opacity=0).encode(x=alt.X("bucket:T", scale=alt.Scale(type="utc")))


def _spans(series: pd.DataFrame, bucket: str) -> pd.DataFrame:
    """Buckets with their end, so that a bar covers its whole bucket (with a pixel's gap)."""
    out = series.copy()
    out["bucket_end"] = out["bucket"] + BUCKET_WIDTH[bucket] * 0.92
    out["when"] = out["bucket"].map(ui.fmt_ts)
    return out


def _rotation_frame(rotations: pd.DataFrame) -> pd.DataFrame:
    rot = rotations.copy()
    rot["issuer_host"] = rot["issuer"].map(ui.issuer_host)
    rot["when"] = rot["ts"].map(lambda t: ui.fmt_ts(t, seconds=True))
    rot["step"] = rot["action"] + " " + rot["kid"].fillna("(no kid)")
    return rot


def _action_scale() -> alt.Scale:
    return alt.Scale(domain=list(ui.ACTION_COLORS), range=list(ui.ACTION_COLORS.values()))


#: The left axis of the two stacked overview charts takes the same width, so their time axes line up.
LEFT_AXIS = 150


def failures_chart(
    series: pd.DataFrame, rotations: pd.DataFrame, since: datetime, until: datetime, bucket: str
) -> alt.TopLevelMixin:
    """Failures per minute stacked by cause; a rule at every key rotation (green: added, black dashed: removed)."""
    df = _with_causes(series)
    df["when"] = df["bucket"].map(ui.fmt_ts)
    area = (
        alt.Chart(df)
        .mark_area(opacity=0.9)
        .encode(
            x=_time_x(since, until),
            y=alt.Y(
                "per_minute:Q",
                stack="zero",
                axis=alt.Axis(title="failures per minute", minExtent=LEFT_AXIS, maxExtent=LEFT_AXIS),
            ),
            color=cause_color(df["cause"], legend=alt.Legend(orient="bottom", columns=3, labelLimit=300, title=None)),
            order=alt.Order("rank:Q", sort="ascending"),
            tooltip=[
                alt.Tooltip("when:N", title=f"{bucket} from"),
                alt.Tooltip("cause_name:N", title="cause"),
                alt.Tooltip("events:Q", title="failures", format=","),
                alt.Tooltip("per_minute:Q", title="per minute", format=",.1f"),
            ],
        )
        .properties(height=420)  # the legend below takes about 100 px of it
    )
    if rotations.empty:
        return area
    rot = _rotation_frame(rotations)
    rules = (
        alt.Chart(rot)
        .mark_rule(strokeWidth=1.5)
        .encode(
            x=alt.X("ts:T", scale=alt.Scale(type="utc")),
            stroke=alt.Stroke("action:N", scale=_action_scale(), legend=None),  # the lane above has the legend
            strokeDash=alt.StrokeDash(
                "action:N", scale=alt.Scale(domain=["added", "removed"], range=[[1, 0], [5, 3]]), legend=None
            ),
            tooltip=_rotation_tooltip(),
        )
    )
    return alt.layer(area, rules)


def _rotation_tooltip() -> list[alt.Tooltip]:
    return [
        alt.Tooltip("when:N", title="when"),
        alt.Tooltip("issuer:N", title="issuer"),
        alt.Tooltip("step:N", title="rotation"),
    ]


def rotation_lane(rotations: pd.DataFrame, since: datetime, until: datetime) -> alt.TopLevelMixin:
    """Every key rotation as a marker on its issuer's lane (▲ key added, ▼ key removed), on the same time axis."""
    rot = _rotation_frame(rotations)
    base = alt.Chart(rot).encode(
        x=_time_x(since, until, "ts", axis=alt.Axis(format="%a %H:%M", labels=False, ticks=False, title=None)),
        y=alt.Y(
            "issuer_host:N",
            axis=alt.Axis(title="key rotations", minExtent=LEFT_AXIS, maxExtent=LEFT_AXIS, labelLimit=LEFT_AXIS - 10),
        ),
        tooltip=_rotation_tooltip(),
    )
    markers = base.mark_point(filled=True, size=140, opacity=1).encode(
        color=alt.Color("action:N", scale=_action_scale(), legend=alt.Legend(orient="top", title=None)),
        shape=alt.Shape(
            "action:N",
            scale=alt.Scale(domain=["added", "removed"], range=["triangle-up", "triangle-down"]),
            legend=alt.Legend(orient="top", title=None),
        ),
    )
    labels = base.mark_text(align="left", dx=9, fontSize=11, color="#3c4043").encode(text="kid:N")
    return alt.layer(markers, labels).properties(height=alt.Step(28))


def step_chart(series: pd.DataFrame, step: dict, since: datetime, until: datetime, bucket: str) -> alt.TopLevelMixin:
    """The failures one rotation step caused, per service and time bucket, with the step marked."""
    df = _spans(series, bucket)
    bars = (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=_span_x(),
            x2="bucket_end:T",
            y=alt.Y("sum(events):Q", title=f"failures per {bucket}"),
            color=alt.Color("service:N", title="service", scale=alt.Scale(scheme="tableau10")),
            tooltip=[
                alt.Tooltip("when:N", title=f"{bucket} from"),
                alt.Tooltip("service:N"),
                alt.Tooltip("events:Q", title="failures", format=","),
            ],
        )
        .properties(height=260)
    )
    mark = pd.DataFrame({"ts": [step["ts"]], "label": [f"key {step['action']}: {step['kid']}"]})
    rule = alt.Chart(mark).mark_rule(strokeWidth=2, color=ui.ACTION_COLORS[step["action"]]).encode(x="ts:T")
    text = (
        alt.Chart(mark)
        .mark_text(align="left", baseline="top", dx=5, fontSize=12, color=ui.ACTION_COLORS[step["action"]])
        .encode(x="ts:T", y=alt.value(4), text="label:N")
    )
    return alt.layer(bars, rule, text, _extent(since, until))


def same_window_chart(table: pd.DataFrame, window_label: str, past_label: str | None) -> alt.TopLevelMixin:
    """Per cause: this window, beside the median of the same window on past days when there are any."""
    periods = {"now": window_label, **({"past_median": past_label} if past_label else {})}
    long = table.melt(id_vars=["cause"], value_vars=list(periods), var_name="period", value_name="events")
    long["period"] = long["period"].map(periods)
    long = _with_causes(long)
    order = [ui.cause_name(c) for c in table["cause"]]
    labels = list(periods.values())
    return (
        alt.Chart(long)
        .mark_bar()
        .encode(
            y=alt.Y("cause_name:N", sort=order, title=None, axis=alt.Axis(labelLimit=300)),
            x=alt.X("events:Q", title="failures"),
            yOffset=alt.YOffset("period:N", sort=labels),
            color=alt.Color(
                "period:N",
                title=None,
                scale=alt.Scale(domain=labels, range=["#d93025", "#9aa0a6"][: len(labels)]),
                legend=alt.Legend(orient="top", labelLimit=400),
            ),
            tooltip=[
                alt.Tooltip("cause_name:N", title="cause"),
                alt.Tooltip("period:N"),
                alt.Tooltip("events:Q", format=",.0f"),
            ],
        )
        .properties(height=alt.Step(26 // len(labels)))
    )


def top_chart(top: pd.DataFrame, what: str) -> alt.TopLevelMixin:
    """The top values (services, clients, kids) as horizontal bars split by cause."""
    df = _with_causes(top)
    order = list(dict.fromkeys(df["value"]))
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            y=alt.Y("value:N", sort=order, title=None, axis=alt.Axis(labelLimit=220)),
            x=alt.X("events:Q", title="failures", stack="zero"),
            # Below the bars: a legend beside a short chart was cut after its first dozen causes.
            color=cause_color(df["cause"], legend=alt.Legend(orient="bottom", columns=3, labelLimit=300, title=None)),
            order=alt.Order("rank:Q", sort="ascending"),
            tooltip=[
                alt.Tooltip("value:N", title=what),
                alt.Tooltip("cause_name:N", title="cause"),
                alt.Tooltip("events:Q", title="failures", format=","),
                alt.Tooltip("total:Q", title=f"all failures of this {what}", format=","),
            ],
        )
        .properties(height=alt.Step(24))
    )


def live_chart(series: pd.DataFrame, since: datetime, until: datetime) -> alt.TopLevelMixin:
    """Failures per minute by cause over the live window."""
    df = _with_causes(_spans(series, "1 minute"))  # zero-filled: the axis spans the whole window
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=_span_x(),
            x2="bucket_end:T",
            y=alt.Y("sum(events):Q", stack="zero", title="failures per minute"),
            color=cause_color(df["cause"]),
            order=alt.Order("rank:Q", sort="ascending"),
            tooltip=[
                alt.Tooltip("when:N", title="minute"),
                alt.Tooltip("cause_name:N", title="cause"),
                alt.Tooltip("events:Q", title="failures", format=","),
            ],
        )
        .properties(height=260)
    )
