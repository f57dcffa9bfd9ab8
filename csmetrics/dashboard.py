"""The self-contained HTML dashboard of a report: headlines, data quality, trends, lists, definitions.

One HTML file with no external resource, so it opens without a network; charts are inline
SVG from :mod:`csmetrics.charts` (hover any mark for its value). Headlines show a complete
period (the partial period of as_of is named, not shown as a headline) with the change from
the period before, in percentage points for rates, with the number of answers and the
interval for NPS, CSAT and CES, and for rates and NPS whether the change is significant at
5% (:func:`csmetrics.compare_periods`). A selector shows the headlines of an earlier period.
Segmented metrics are combined first (exact re-aggregation), so the headlines are the
company-wide numbers; with ``--by`` a table gives the headline metrics per segment.
Needs jinja2 (the ``report`` extra).
"""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd

from csmetrics import catalog, stats
from csmetrics.charts import PALETTE, bar_chart, heatmap, line_chart, stacked_bars, waterfall
from csmetrics.frame import compare_periods, reaggregate, segment_columns
from csmetrics.validate import TABLES

__all__ = [
    "HEADLINES",
    "LABELS",
    "TEMPLATE",
    "bridge_layout",
    "company_view",
    "format_value",
    "render",
    "retention_curve",
]

HEADLINES = {
    "revenue": [
        "mrr",
        "net_new_mrr",
        "fx_effect_mrr",
        "nrr",
        "grr",
        "quick_ratio",
        "arpu",
        "asp",
        "gross_mrr_churn_rate",
        "net_mrr_churn_rate",
        "net_revenue_churn_rate",
    ],
    "customers": ["customers_end", "customers_new", "customers_churned", "logo_churn_rate", "renewal_rate"],
    "value": ["clv", "ltv_trailing6", "cac", "ltv_cac"],
    "support": [
        "tickets",
        "fcr_rate",
        "aht_seconds",
        "abandonment_rate",
        "backlog",
        "first_response_business_minutes_p50",
        "sla_first_response_rate",
        "sla_resolution_rate",
    ],
    "surveys": ["nps", "csat", "ces", "response_rate"],
    "engagement": ["mau", "dau", "stickiness", "avg_session_minutes"],
    "health": [
        "health_score_mean",
        "health_red_share",
        "health_green_share",
        "health_new_red",
        "health_score_change_mean",
    ],
}

#: People's names for the metrics the page shows (the catalog's snake_case names stay in the Parquet).
LABELS = {
    "mrr": "MRR",
    "net_new_mrr": "Net new MRR",
    "fx_effect_mrr": "FX effect on MRR",
    "nrr": "Net revenue retention",
    "grr": "Gross revenue retention",
    "quick_ratio": "Quick ratio",
    "arpu": "Revenue per customer (ARPU)",
    "asp": "Average sale price",
    "gross_mrr_churn_rate": "Gross MRR churn (ChartMogul)",
    "net_mrr_churn_rate": "Net MRR churn (ChartMogul)",
    "net_revenue_churn_rate": "Net revenue churn (Baremetrics)",
    "customers_end": "Customers",
    "customers_new": "New customers",
    "customers_churned": "Churned customers",
    "logo_churn_rate": "Logo churn",
    "renewal_rate": "Renewal rate",
    "clv": "Customer lifetime value",
    "ltv_trailing6": "LTV (6-month churn)",
    "cac": "Acquisition cost per customer",
    "ltv_cac": "LTV to CAC",
    "tickets": "Tickets",
    "fcr_rate": "First contact resolution",
    "aht_seconds": "Average handle time",
    "abandonment_rate": "Abandonment",
    "backlog": "Open tickets (backlog)",
    "first_response_business_minutes_p50": "First response, business time (median)",
    "sla_first_response_rate": "First response within SLA",
    "sla_resolution_rate": "Resolution within SLA",
    "nps": "NPS",
    "csat": "CSAT",
    "ces": "Customer effort (CES)",
    "response_rate": "Survey response rate",
    "mau": "Monthly active users",
    "dau": "Daily active users",
    "stickiness": "Stickiness (DAU / MAU)",
    "avg_session_minutes": "Session length",
    "health_score_mean": "Mean health score",
    "health_red_share": "Customers in red",
    "health_green_share": "Customers in green",
    "health_new_red": "Newly red customers",
    "health_score_change_mean": "Mean health score change",
    "logo_retention": "Logo retention",
    "revenue_retention": "Revenue retention",
}
#: survey headlines whose denominator is the number of answers
_ANSWERS = ("nps", "csat", "ces")
_SECTIONS = ("revenue", "customers", "value", "support", "surveys", "engagement", "health")
_SECTION_TABLES = {
    "revenue": "billing",
    "customers": "billing",
    "value": "billing",
    "support": "tickets",
    "surveys": "surveys",
    "engagement": "events",
    "health": "any of events, surveys, tickets, billing",
}


def label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " ").capitalize())


def format_value(value: float, unit: str, currency: str | None = None) -> str:
    """A value as a person reads it: currency with its code, rates in %, durations in minutes/hours."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if unit == "fraction":
        return f"{100 * value:.1f}%"
    if unit == "currency":
        return f"{currency + ' ' if currency else ''}{value:,.0f}"
    if unit == "seconds":
        return f"{value / 60:,.1f} min"
    if unit == "minutes":
        return f"{value:,.1f} min" if value < 120 else f"{value / 60:,.1f} h"
    if unit == "hours":
        return f"{value:,.1f} h"
    if unit in ("count", "users"):
        return f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:,.1f}"
    if unit == "score":
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def _change_text(change: float, unit: str, currency: str | None) -> str:
    """A change as a person reads it: rates in percentage points, others in the metric's unit."""
    if not math.isfinite(change):
        return "no previous period"
    arrow = "▲" if change > 0 else "▼" if change < 0 else "="
    if unit == "fraction":
        return f"{arrow} {abs(100 * change):.1f} pp"
    return f"{arrow} {format_value(abs(change), unit, currency)}"


def company_view(metrics: pd.DataFrame) -> pd.DataFrame:
    """Company-wide rows: a family's unsegmented rows as they are, segmented ones re-aggregated.

    Metrics that cannot be re-aggregated (MAU, CLV, quantiles) are shown only when
    their family was not split; feature adoption (per event) is left to the Parquet.
    """
    segments = [c for c in segment_columns(metrics) if c != "event"]
    metrics = metrics[metrics["event"].isna()] if "event" in metrics else metrics
    plain = metrics[segments].isna().all(axis=1) if segments else pd.Series(True, index=metrics.index)
    split_metrics = set(metrics.loc[~plain, "metric"])
    whole = metrics[plain & ~metrics["metric"].isin(split_metrics)][
        ["period", "freq", "metric", "value", "numerator", "denominator", "ci_low", "ci_high"]
    ]
    combined = reaggregate(metrics[metrics["metric"].isin(split_metrics)], by=()) if split_metrics else whole.iloc[:0]
    return pd.concat([whole, combined], ignore_index=True)


def _series(company: pd.DataFrame, metric: str) -> pd.Series:
    rows = company[company["metric"] == metric]
    return pd.Series(rows["value"].to_numpy(), index=rows["period"].to_numpy())


def bridge_layout(at: pd.Series) -> tuple[list, list, tuple[float, float] | None]:
    """The MRR bridge of one period (``at``: value by metric) as waterfall bars.

    Returns the signed steps (name, amount), the bars (name, bottom, height; the last is the
    end MRR) and the y-limits: zoomed on the movements when everything stays above 0, but
    always covering every bar, so no movement is cut off or hidden (None: from 0)."""
    steps = [
        ("start", float(at.get("mrr_start", 0.0))),
        ("new", float(at.get("new_mrr", 0.0))),
        ("reactivation", float(at.get("reactivation_mrr", 0.0))),
        ("expansion", float(at.get("expansion_mrr", 0.0))),
        ("contraction", -float(at.get("contraction_mrr", 0.0))),
        ("churn", -float(at.get("churned_mrr", 0.0))),
    ]
    if "fx_effect_mrr" in at:
        steps.append(("fx effect", float(at["fx_effect_mrr"])))
    bars, level = [], 0.0
    for name, amount in steps:
        bottom = 0.0 if name == "start" else (level if amount >= 0 else level + amount)
        bars.append((name, bottom, abs(amount)))
        level = amount if name == "start" else level + amount
    bars.append(("end", 0.0, level))
    # the movements' extent: every running total, the start's top and the end's top
    tops = [steps[0][1], level] + [b + h for _, b, h in bars[1:-1]] + [b for _, b, _ in bars[1:-1]]
    low, high = min(tops), max(tops)
    if low <= 0:
        return steps, bars, None
    pad = max(high - low, 1e-9) * 0.12
    return steps, bars, (max(low - pad, 0.0), high + pad)


def retention_curve(retention: pd.DataFrame) -> pd.DataFrame:
    """Usage retention by offset over all cohorts, weighted by cohort size, complete periods only:
    offset, cohorts, users, retention, retention_unbounded."""
    done = retention[~retention["partial"]] if "partial" in retention else retention
    if not len(done):
        return pd.DataFrame(columns=["offset", "cohorts", "users", "retention", "retention_unbounded"])
    fixed = ("cohort", "offset", "cohort_users", "active_users", "retention", "retention_unbounded", "partial")
    seg = [c for c in done.columns if c not in fixed]
    work = done.assign(unbounded=done["retention_unbounded"] * done["cohort_users"])
    if seg:
        work = work.groupby(["cohort", "offset"], as_index=False)[["cohort_users", "active_users", "unbounded"]].sum()
    grouped = work.groupby("offset")
    users = grouped["cohort_users"].sum()
    return pd.DataFrame(
        {
            "offset": users.index.to_numpy(),
            "cohorts": grouped.size().to_numpy(),
            "users": users.to_numpy(),
            "retention": (grouped["active_users"].sum() / users).to_numpy(),
            "retention_unbounded": (grouped["unbounded"].sum() / users).to_numpy(),
        }
    )


def _period_name(period: pd.Timestamp, freq: str) -> str:
    period = pd.Timestamp(period)
    if freq == "M":
        return f"{period:%B %Y}"
    if freq == "Q":
        return f"Q{period.quarter} {period.year}"
    if freq == "Y":
        return f"{period.year}"
    if freq == "W":
        return f"the week of {period:%d %b %Y}"
    return f"{period:%d %b %Y}"


def _short(period: pd.Timestamp, freq: str) -> str:
    period = pd.Timestamp(period)
    return {"M": f"{period:%b %Y}", "Q": f"Q{period.quarter} {period:%y}", "Y": f"{period.year}"}.get(
        freq, f"{period:%d %b %y}"
    )


# --------------------------------------------------------------------------
# Headlines
# --------------------------------------------------------------------------
def _cards(company: pd.DataFrame, period: pd.Timestamp, previous: pd.Timestamp | None, currency: str | None) -> dict:
    values = company[company["period"] == period].set_index("metric")
    prior = company[company["period"] == previous].set_index("metric") if previous is not None else values.iloc[:0]
    cards: dict[str, list[dict]] = {}
    tests = {}
    for family, names in HEADLINES.items():
        for name in names:
            if name not in values.index:
                continue
            info = catalog.get(name)
            row = values.loc[name]
            value = float(row["value"])
            before = float(prior.loc[name, "value"]) if name in prior.index else math.nan
            change = value - before
            direction = info.direction
            better = (
                "flat"
                if not math.isfinite(change) or change == 0 or direction == "none"
                else ("good" if (change > 0) == (direction == "up") else "bad")
            )
            note = ""
            if info.interval in ("wilson", "adjusted_wald") and previous is not None:
                if name not in tests:
                    test = compare_periods(company, name)
                    tests[name] = test
                hit = tests[name][tests[name]["period"] == period]
                if len(hit) and pd.notna(hit["significant"].iloc[0]):
                    note = "significant" if bool(hit["significant"].iloc[0]) else "not significant"
            detail = ""
            if name in _ANSWERS:
                answers = row["denominator"]
                if pd.notna(answers):
                    detail = f"{int(answers):,} answers"
                if pd.notna(row.get("ci_low")) and pd.notna(row.get("ci_high")):
                    low = format_value(float(row["ci_low"]), info.unit, currency)
                    high = format_value(float(row["ci_high"]), info.unit, currency)
                    detail += f" · 95% interval {low} to {high}"
            word = {"good": "better", "bad": "worse", "flat": ""}[better]
            cards.setdefault(family, []).append(
                {
                    "name": label(name),
                    "metric": name,
                    "text": format_value(value, info.unit, currency),
                    "change": _change_text(change, info.unit, currency)
                    if math.isfinite(value)
                    else "not defined this period",
                    "css": better,
                    "word": word,
                    "note": note,
                    "detail": detail,
                }
            )
    return cards


def _headline_blocks(company: pd.DataFrame, complete: list, freq: str, currency: str | None) -> list[dict]:
    """One block of cards per selectable period (the latest complete first, then up to 11 before)."""
    blocks = []
    periods = list(complete)
    for k in range(len(periods) - 1, max(len(periods) - 13, -1), -1):
        previous = periods[k - 1] if k > 0 else None
        blocks.append(
            {
                "id": f"p{len(periods) - 1 - k}",
                "name": _period_name(periods[k], freq),
                "sections": _cards(company, periods[k], previous, currency),
            }
        )
    return blocks


# --------------------------------------------------------------------------
# Charts
# --------------------------------------------------------------------------
def _charts(report, company: pd.DataFrame, complete: pd.Timestamp | None, currency: str | None) -> dict[str, list[str]]:
    freq = report.manifest.get("parameters", {}).get("freq", "M")
    money = lambda v: f"{v:,.0f}"  # noqa: E731  (the axis label carries the currency)
    pct = lambda v: f"{100 * v:.0f}%"  # noqa: E731
    out: dict[str, list[str]] = {name: [] for name in _SECTIONS}
    metrics = set(company["metric"]) if len(company) else set()
    periods = sorted(company["period"].unique()) if len(company) else []
    labels = [_short(p, freq) for p in periods]

    def series(metric: str) -> list[float]:
        return _series(company, metric).reindex(periods).to_numpy(dtype=float).tolist()

    if {"mrr_start", "new_mrr", "churned_mrr"} <= metrics and complete is not None:
        at = company[company["period"] == complete].set_index("metric")["value"]
        steps, bars, limits = bridge_layout(at)
        signed = [s[1] for s in steps] + [bars[-1][2]]
        out["revenue"].append(
            waterfall(
                [(name, bottom, height, signed[i]) for i, (name, bottom, height) in enumerate(bars)],
                limits,
                title=f"MRR bridge, {_period_name(complete, freq)} ({currency or 'base currency'})",
                y_label=f"MRR ({currency})" if currency else "MRR",
                fmt=money,
            )
        )
    if "mrr" in metrics and len(periods) > 1:
        out["revenue"].append(line_chart(labels, [("MRR", series("mrr"))], title=f"MRR ({currency or 'base currency'})",
                                         y_label=f"MRR ({currency})" if currency else "MRR", fmt=money))  # fmt: skip
    if {"nrr", "grr"} <= metrics and len(periods) > 1:
        out["revenue"].append(
            line_chart(
                labels,
                [("net revenue retention", series("nrr")), ("gross revenue retention", series("grr"))],
                title="Revenue retention per period",
                y_label="% of start MRR",
                fmt=pct,
            )  # fmt: skip
        )
    if "logo_churn_rate" in metrics and len(periods) > 1:
        out["customers"].append(
            line_chart(
                labels,
                [("logo churn", series("logo_churn_rate"))],
                title="Logo churn per period",
                y_label="% of start customers",
                fmt=lambda v: f"{100 * v:.1f}%",
            )  # fmt: skip
        )
    cohorts = getattr(report, "cohorts", None)
    if cohorts is not None and len(cohorts):
        for column, title in (
            ("logo_retention", "Cohort logo retention"),
            ("revenue_retention", "Cohort revenue retention"),
        ):
            grid = _cohort_grid(cohorts, column)
            if grid is not None:
                rows, cols, values = grid
                out["customers"].append(
                    heatmap(
                        [_short(r, freq) for r in rows],
                        [str(c) for c in cols],
                        values,
                        title=title + " (% of the cohort's start)",
                        row_label="cohort",
                        column_label="periods since start",
                        fmt=lambda v: f"{100 * v:.0f}%",
                    )  # fmt: skip
                )
    if "fcr_rate" in metrics and len(periods) > 1:
        out["support"].append(line_chart(labels, [("first contact resolution", series("fcr_rate"))],
                                         title="First contact resolution", y_label="% of resolved tickets", fmt=pct))  # fmt: skip
    if "aht_seconds" in metrics and len(periods) > 1:
        minutes = [v / 60 for v in series("aht_seconds")]
        out["support"].append(line_chart(labels, [("average handle time", minutes)], title="Average handle time",
                                         y_label="minutes", fmt=lambda v: f"{v:,.1f}"))  # fmt: skip
    if "nps" in metrics and len(periods) > 1:
        nps = company[company["metric"] == "nps"].set_index("period").reindex(periods)
        counts = {m: np.asarray(series(m), dtype=float) for m in ("promoters", "detractors")}
        low, high = stats.nps_interval(
            counts["promoters"], counts["detractors"], nps["denominator"].to_numpy(dtype=float)
        )
        out["surveys"].append(
            line_chart(
                labels,
                [("NPS", nps["value"].to_numpy(dtype=float).tolist())],
                title="NPS with its 95% interval",
                y_label="NPS (-100 to 100)",
                y_range=(-100, 100),
                fmt=lambda v: f"{v:.0f}",
                band=(np.asarray(low, dtype=float).tolist(), np.asarray(high, dtype=float).tolist(), "95% interval"),
            )  # fmt: skip
        )
    if "health_red_share" in metrics and len(periods) > 1:
        out["health"].append(
            stacked_bars(
                labels,
                [
                    (band, series(f"health_{band}_share"), color)
                    for band, color in (
                        ("red", PALETTE["vermillion"]),
                        ("yellow", PALETTE["orange"]),
                        ("green", PALETTE["green"]),
                    )
                ],
                title="Health bands",
                y_label="% of scored customers",
                fmt=pct,
            )  # fmt: skip
        )
    retention = getattr(report, "usage_retention", None)
    if retention is not None and len(retention):
        curve = retention_curve(retention)
        if len(curve) > 1:
            out["engagement"].append(
                line_chart(
                    [str(o) for o in curve["offset"]],
                    [
                        ("active in period k", curve["retention"].tolist()),
                        ("active in k or later", curve["retention_unbounded"].tolist()),
                    ],
                    title="Usage retention, all cohorts (complete periods)",
                    y_label="% of the cohort's users",
                    x_label=f"periods since the first event ({freq})",
                    fmt=pct,
                    y_range=(0, 1),
                )  # fmt: skip
            )
    days = getattr(report, "active_days", None)
    if days is not None and len(days) and complete is not None:
        last = days[days["period"] == complete]
        if len(last):
            out["engagement"].append(
                bar_chart(
                    [str(d) for d in last["active_days"]],
                    last["users"].tolist(),
                    title=f"Active days per user, {_period_name(complete, freq)}",
                    y_label="users",
                    x_label="active days in the period",
                )  # fmt: skip
            )
    return out


def _cohort_grid(cohorts: pd.DataFrame, column: str):
    segments = [c for c in cohorts.columns if c not in ("cohort", "period", "periods_since_start", "cohort_customers",
                                                         "customers_active", "logo_retention", "mrr", "revenue_retention")]  # fmt: skip
    table = cohorts
    if segments:  # the company-wide cohorts: sums over segments
        sums = cohorts.groupby(["cohort", "periods_since_start"], as_index=False)[
            ["cohort_customers", "customers_active", "mrr"]
        ].sum()
        first = sums[sums["periods_since_start"] == 0].set_index("cohort")["mrr"]
        sums["logo_retention"] = sums["customers_active"] / sums["cohort_customers"]
        sums["revenue_retention"] = sums["mrr"] / sums["cohort"].map(first)
        table = sums
    table = table[table["cohort"] >= sorted(table["cohort"].unique())[-min(18, table["cohort"].nunique())]]
    wide = table.pivot_table(index="cohort", columns="periods_since_start", values=column, aggfunc="first")
    wide = wide.loc[:, [c for c in wide.columns if c <= 12]]
    if wide.empty:
        return None
    return list(wide.index), list(wide.columns), wide.to_numpy(dtype=float)


# --------------------------------------------------------------------------
# Tables and panels
# --------------------------------------------------------------------------
def _fmt_cell(value: object, column: str, currency: str | None) -> str:
    if isinstance(value, pd.Timestamp):
        return f"{value:%d %b %Y}" if value == value.normalize() else f"{value:%d %b %Y %H:%M}"
    if value is None or (isinstance(value, float) and not math.isfinite(value)) or value is pd.NaT:
        return ""
    if isinstance(value, (float, np.floating)):
        if column in ("mrr", "renewal_mrr", "mrr_up_for_renewal"):
            return format_value(float(value), "currency", currency)
        return f"{value:,.1f}"
    return str(value)


def _table(
    frame: pd.DataFrame | None, columns: list[str], empty: str, currency: str | None = None, limit: int = 25
) -> str:
    if frame is None or frame.empty:
        return f"<p class='muted'>{html.escape(empty)}</p>"
    columns = [c for c in columns if c in frame.columns]
    head = "".join(
        f"<th scope='col'>{html.escape(label(c) if c in LABELS else c.replace('_', ' '))}</th>" for c in columns
    )
    body = []
    for row in frame.head(limit).itertuples(index=False):
        values = dict(zip(frame.columns, row))
        body.append(
            "<tr>" + "".join(f"<td>{html.escape(_fmt_cell(values[c], c, currency))}</td>" for c in columns) + "</tr>"
        )
    more = (
        f"<p class='muted'>First {limit} of {len(frame):,}; all in the Parquet file.</p>" if len(frame) > limit else ""
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def _quality(report, currency: str | None) -> str:
    manifest = report.manifest
    rows = []
    inputs = manifest.get("inputs", {})
    for name in TABLES:
        if name not in inputs:
            continue
        info = inputs[name]
        reasons = ""
        rejected = report.rejected.get(name)
        if rejected is not None and len(rejected) and "reason" in rejected:
            top = rejected["reason"].value_counts().head(3)
            reasons = "; ".join(f"{reason} ({count:,})" for reason, count in top.items())
        rows.append(
            f"<tr><td>{name}</td><td>{info['rows']:,}</td><td>{info['rows_rejected']:,}</td><td>{html.escape(reasons)}</td></tr>"
        )
    missing = [name for name in TABLES if name not in inputs]
    fx = manifest.get("currency", {}) or {}
    facts = [
        f"Base currency: <b>{html.escape(str(fx.get('base') or 'none (one currency, or no billing)'))}</b>, "
        f"FX mode: <b>{html.escape(str(fx.get('fx_mode') or '–'))}</b>.",
    ]
    partial = manifest.get("partial_period")
    freq = manifest.get("parameters", {}).get("freq", "M")
    if partial:
        facts.append(
            f"{_period_name(pd.Timestamp(partial), freq)} is partial (data to {_when(manifest.get('as_of'))}): its numbers are not headlines."
        )
    used = _components_used(report)
    if used is not None:
        caveat = " Health scores rest on fewer than 3 components: read them with care." if used < 3 else ""
        facts.append(f"Health components with data: <b>{used} of 4</b>.{caveat}")
    if missing:
        facts.append(
            "Tables not found (their sections are empty): " + ", ".join(f"<code>{m}</code>" for m in missing) + ". "
            "Name files &lt;table&gt;.parquet, &lt;table&gt;.csv or a &lt;table&gt;/ folder."
        )
    for warning in manifest.get("warnings", []) or []:
        facts.append(f"<b>Check the mapping:</b> {html.escape(warning)}")
    clv = manifest.get("clv") or {}
    if clv and not clv.get("fitted") and clv.get("reason") != "no billing":
        facts.append(f"Predictive CLV not fitted: {html.escape(str(clv.get('reason')))}.")
    table = (
        "<table><thead><tr><th scope='col'>table</th><th scope='col'>rows read</th><th scope='col'>rows rejected</th>"
        f"<th scope='col'>top reasons</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    return "".join(f"<p>{f}</p>" for f in facts) + table


def _components_used(report) -> int | None:
    present = [t for t in ("events", "surveys", "tickets", "billing") if t in report.manifest.get("inputs", {})]
    if "health" not in report.manifest.get("families", []):
        return None
    return len(present)


def _when(value: object) -> str:
    if value is None:
        return "–"
    stamp = pd.Timestamp(value)
    return f"{stamp:%d %b %Y %H:%M} UTC"


def _segments(report, complete: pd.Timestamp | None, currency: str | None) -> str:
    metrics = report.metrics
    by = [c for c in segment_columns(metrics) if c != "event"] if len(metrics) else []
    if not by or complete is None:
        return ""
    blocks = []
    names = [n for names in HEADLINES.values() for n in names]
    for column in by:
        rows = metrics[(metrics["period"] == complete) & metrics[column].notna() & metrics["metric"].isin(names)]
        others = [c for c in by if c != column]
        if others:
            rows = rows[rows[others].isna().all(axis=1)]
        if rows.empty:
            continue
        wide = rows.pivot_table(index=column, columns="metric", values="value", aggfunc="first")
        shown = [n for n in names if n in wide.columns][:8]
        head = "".join(f"<th scope='col'>{html.escape(label(n))}</th>" for n in shown)
        body = "".join(
            f'<tr data-segment="{html.escape(str(value))}"><th scope="row">{html.escape(str(value))}</th>'
            + "".join(
                f"<td>{format_value(float(wide.loc[value, n]), catalog.get(n).unit, currency)}</td>" for n in shown
            )
            + "</tr>"
            for value in wide.index
        )
        blocks.append(
            f"<h3>By {html.escape(column)}</h3><table class='segments'><thead><tr><th scope='col'>{html.escape(column)}</th>"
            f"{head}</tr></thead><tbody>{body}</tbody></table>"
        )
    return "".join(blocks)


TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>csmetrics report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#111827;background:#f9fafb;max-width:1400px}
h1{margin:0 0 4px}h2{margin-top:32px;border-bottom:1px solid #d1d5db;padding-bottom:4px}h3{margin:16px 0 6px;font-size:15px}
.muted{color:#4b5563}.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:10px 14px;min-width:170px;max-width:260px}
.card .name{font-size:12px;color:#374151}.card .value{font-size:22px;font-weight:600}.card .detail{font-size:11px;color:#4b5563}
.good{color:#0072B2}.bad{color:#D55E00}.flat{color:#4b5563}
.charts{display:flex;flex-wrap:wrap;gap:16px;margin-top:12px}.chart{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:8px;margin:0}
.chart svg{max-width:100%;height:auto}.ct{font-size:13px;font-weight:600}.cl{font-size:11px;fill:#374151}.tk{font-size:10px;fill:#4b5563}
.vl{font-size:10px;fill:#111827}.hv{font-size:9px}.grid{stroke:#e5e7eb}
.legend{font-size:11px;color:#374151;padding:2px 8px}.key{margin-right:14px;white-space:nowrap}.key svg{vertical-align:middle;margin-right:4px}
table{border-collapse:collapse;background:#fff;font-size:13px;margin-top:6px}td,th{border:1px solid #e5e7eb;padding:4px 8px;text-align:left}
thead th{background:#f3f4f6}.quality{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:4px 14px 12px}
select{font-size:14px;padding:2px 6px}[hidden]{display:none !important}
</style></head><body>
<h1>Customer-success report</h1>
<p class="muted">{{ subtitle }}</p>
<section aria-labelledby="quality"><h2 id="quality">Data quality</h2><div class="quality">{{ quality }}</div></section>
{% if blocks %}
<p><label for="period">Headlines for </label><select id="period" aria-label="headline period">
{% for b in blocks %}<option value="{{ b.id }}">{{ b.name }}{% if loop.first %} (latest complete){% endif %}</option>{% endfor %}
</select> <span class="muted">vs the period before. ▲/▼ show the direction; the words say whether it is better or worse.</span></p>
{% endif %}
{% for section in sections %}
<section aria-labelledby="s-{{ section.key }}"><h2 id="s-{{ section.key }}">{{ section.title }}</h2>
{% if section.empty %}<p class="muted">{{ section.empty }}</p>{% else %}
{% for b in blocks %}<div class="cards headline" data-period="{{ b.id }}"{% if not loop.first %} hidden{% endif %}>
{% for c in b.sections.get(section.key, []) %}
<div class="card" title="{{ c.metric }}"><div class="name">{{ c.name }}</div><div class="value">{{ c.text }}</div>
<div class="{{ c.css }}">{{ c.change }}{% if c.word %} ({{ c.word }}){% endif %}{% if c.note %} · {{ c.note }}{% endif %}</div>
{% if c.detail %}<div class="detail">{{ c.detail }}</div>{% endif %}</div>
{% endfor %}</div>{% endfor %}
{% if section.charts %}<div class="charts">{% for svg in section.charts %}{{ svg }}{% endfor %}</div>{% endif %}
{{ section.extra }}
{% endif %}</section>
{% endfor %}
{% if segments %}<section aria-labelledby="s-segments"><h2 id="s-segments">By segment, {{ complete_name }}</h2>
<p><label for="segment-filter">Filter segments </label><input id="segment-filter" type="search" aria-label="filter segments"></p>
{{ segments }}</section>{% endif %}
<section aria-labelledby="s-lists"><h2 id="s-lists">Lists to act on</h2>
<h3>At risk (red health, largest MRR first)</h3>{{ at_risk }}
<h3>Health movers (newly red, then the largest drops)</h3>{{ movers }}
<h3>Renewals ahead</h3>{{ renewals }}
<h3>Follow-ups (detractors and dissatisfied answers)</h3>{{ followups }}</section>
<section aria-labelledby="s-def"><h2 id="s-def">Definitions</h2>
<table><thead><tr><th scope="col">metric</th><th scope="col">name in the Parquet</th><th scope="col">unit</th><th scope="col">definition</th></tr></thead><tbody>
{% for m in definitions %}<tr><td>{{ m.label }}</td><td><code>{{ m.name }}</code></td><td>{{ m.unit }}</td><td>{{ m.definition }}</td></tr>{% endfor %}
</tbody></table></section>
<script>
(function () {
  var select = document.getElementById("period");
  if (select) select.addEventListener("change", function () {
    document.querySelectorAll(".headline").forEach(function (el) { el.hidden = el.dataset.period !== select.value; });
  });
  var filter = document.getElementById("segment-filter");
  if (filter) filter.addEventListener("input", function () {
    var q = filter.value.toLowerCase();
    document.querySelectorAll("tr[data-segment]").forEach(function (tr) {
      tr.hidden = q && tr.dataset.segment.toLowerCase().indexOf(q) < 0;
    });
  });
})();
</script>
</body></html>
"""


def render(report) -> str:
    """The dashboard of a :class:`csmetrics.report.Report` as one HTML string."""
    try:
        import jinja2
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the HTML dashboard needs the report extra: pip install 'csmetrics[report]'") from err

    manifest = report.manifest
    metrics = report.metrics
    freq = manifest.get("parameters", {}).get("freq", "M")
    currency = (manifest.get("currency") or {}).get("base")
    company = company_view(metrics) if len(metrics) else metrics
    periods = sorted(company["period"].unique()) if len(company) else []
    partial = manifest.get("partial_period")
    complete_periods = [p for p in periods if partial is None or pd.Timestamp(p) != pd.Timestamp(partial)]
    complete = complete_periods[-1] if complete_periods else None
    blocks = _headline_blocks(company, complete_periods, freq, currency) if len(company) else []
    charts = _charts(report, company, complete, currency)
    families = set(manifest.get("families", []))
    inputs = manifest.get("inputs", {})
    titles = {
        "revenue": "Revenue",
        "customers": "Customers and cohorts",
        "value": "Customer value",
        "support": "Support",
        "surveys": "Surveys",
        "engagement": "Engagement",
        "health": "Health",
    }
    sections = []
    for key in _SECTIONS:
        has = any(key in b["sections"] for b in blocks) or charts[key]
        family = "revenue" if key in ("customers", "value") else key
        empty = ""
        if not has:
            table = _SECTION_TABLES[key]
            empty = (
                f"No {key} data: the {table} table was not found."
                if family not in families and not any(t in inputs for t in table.split(", "))
                else f"No {key} numbers for the complete periods of this report."
            )
        extra = ""
        if key == "value" and getattr(report, "clv", None) is not None:
            clv = report.clv
            extra = (
                f"<p>Predictive CLV (BG/NBD + Gamma-Gamma, next 12 months, 1% a month): total "
                f"{format_value(float(clv['predictive_clv'].sum()), 'currency', currency)} over {len(clv):,} buying customers; "
                f"{(clv['probability_alive'] < 0.5).sum():,} of them are more likely gone than active.</p>"
            )
        sections.append({"key": key, "title": titles[key], "charts": charts[key], "empty": empty, "extra": extra})
    used = set(metrics["metric"]) if len(metrics) else set()
    template = jinja2.Environment(autoescape=False).from_string(TEMPLATE)
    as_of = manifest.get("as_of")
    complete_name = _period_name(complete, freq) if complete is not None else "–"
    subtitle = (
        f"As of {_when(as_of)} · headlines for {complete_name}, complete"
        + (f"; {_period_name(pd.Timestamp(partial), freq)} is partial" if partial else "")
        + f" · amounts in {currency or 'the billing currency'} · csmetrics {manifest.get('csmetrics_version')}"
    )
    return template.render(
        subtitle=subtitle,
        quality=_quality(report, currency),
        blocks=blocks,
        sections=sections,
        complete_name=complete_name,
        segments=_segments(report, complete, currency),
        followups=_table(
            report.followups,
            ["period", "customer_id", "survey", "score", "comment", "mrr"],
            "No detractors or dissatisfied answers.",
            currency,
        ),  # fmt: skip
        at_risk=_table(
            report.at_risk,
            [
                "customer_id",
                "score",
                "score_change",
                "trend",
                "mrr",
                "next_renewal",
                "renewal_mrr",
                "weakest_component",
            ],
            "No customer is red.",
            currency,
        ),  # fmt: skip
        movers=_table(
            getattr(report, "health_movers", None),
            ["customer_id", "score", "band_change", "score_change", "trend", "mrr", "weakest_component"],
            "No customer's health fell.",
            currency,
        ),  # fmt: skip
        renewals=_renewals(report, currency),
        definitions=[
            {"label": label(m.name), "name": m.name, "unit": m.unit, "definition": m.definition}
            for m in catalog.CATALOG
            if m.name in used
        ],  # fmt: skip
    )


def _renewals(report, currency: str | None) -> str:
    """Renewals ahead: the totals over the horizon, then the calendar (soonest first) with health."""
    calendar = getattr(report, "renewal_calendar", None)
    if calendar is None or not len(calendar):
        return "<p class='muted'>Nothing is up for renewal in the horizon.</p>"
    total = float(calendar["mrr_up_for_renewal"].sum())
    red = int(calendar["health_band"].eq("red").sum()) if "health_band" in calendar else 0
    summary = (
        f"<p>{len(calendar):,} renewals, {format_value(total, 'currency', currency)} of MRR up for renewal by "
        f"{calendar['end'].max():%d %b %Y}{f'; {red:,} of them red' if red else ''}.</p>"
    )
    columns = [
        "end",
        "customer_id",
        "mrr_up_for_renewal",
        "health_band",
        "health_score",
        "latest_survey",
        "latest_score",
    ]
    return summary + _table(calendar, columns, "", currency)
