"""The self-contained HTML dashboard of a report: headlines, trend charts, lists, definitions.

Charts are matplotlib figures inlined as SVG and the page has no external
resource, so it opens without a network. Needs the ``report`` extra
(matplotlib, jinja2). Headlines show the last complete period (the partial
period of as_of is skipped) with the change from the period before and, for
rates and NPS, whether that change is significant at 5% (two-sample tests of
:func:`csmetrics.compare_periods`). Segmented metrics are combined first
(exact re-aggregation), so the page always shows the company-wide numbers.
"""

from __future__ import annotations

import html
import io

import numpy as np
import pandas as pd

from csmetrics import catalog, stats
from csmetrics.frame import compare_periods, reaggregate, segment_columns

__all__ = ["HEADLINES", "TEMPLATE", "bridge_layout", "company_view", "render", "retention_curve"]

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


def _require():
    try:
        import jinja2  # noqa: F401
        import matplotlib

        matplotlib.use("Agg")
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the HTML dashboard needs the report extra: pip install 'csmetrics[report]'") from err


def _svg(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


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
    pad = max(high - low, 1e-9) * 0.08
    return steps, bars, (max(low - pad, 0.0), high + pad)


def _charts(company: pd.DataFrame, complete: pd.Timestamp | None) -> dict[str, str]:
    import matplotlib

    matplotlib.rcParams.update({"svg.hashsalt": "csmetrics", "svg.fonttype": "none", "font.size": 9})
    import matplotlib.pyplot as plt

    charts = {}
    metrics = set(company["metric"])
    if {"mrr_start", "new_mrr", "churned_mrr"} <= metrics and complete is not None:
        at = company[company["period"] == complete].set_index("metric")["value"]
        steps, bars, limits = bridge_layout(at)
        fig, ax = plt.subplots(figsize=(6.5, 3))
        for i, (name, bottom, height) in enumerate(bars):
            if name in ("start", "end"):
                color = "#6b7280" if name == "start" else "#1d4ed8"
            else:
                color = "#16a34a" if steps[i][1] >= 0 else "#dc2626"
            ax.bar(i, height, bottom=bottom, color=color)
        if limits is not None:
            ax.set_ylim(*limits)
        ax.set_xticks(range(len(bars)), [b[0] for b in bars], rotation=20)
        ax.set_title(f"MRR bridge, {pd.Timestamp(complete):%Y-%m-%d}")
        charts["mrr_bridge"] = _svg(fig)
    if "nps" in metrics:
        nps = company[company["metric"] == "nps"].sort_values("period")
        counts = {
            m: _series(company, m).reindex(nps["period"].to_numpy()).to_numpy(dtype=float)
            for m in ("promoters", "detractors")
        }
        low, high = stats.nps_interval(
            counts["promoters"], counts["detractors"], nps["denominator"].to_numpy(dtype=float)
        )
        fig, ax = plt.subplots(figsize=(6.5, 3))
        ax.fill_between(nps["period"], low, high, alpha=0.25, color="#1d4ed8", label="95% interval")
        ax.plot(nps["period"], nps["value"], color="#1d4ed8", marker="o", ms=3, label="NPS")
        ax.set_ylim(-100, 100)
        ax.legend(loc="lower left")
        ax.set_title("NPS with its adjusted-Wald interval")
        charts["nps"] = _svg(fig)
    for key, left, right, title in (
        ("support", "fcr_rate", "aht_seconds", "First contact resolution and handle time"),
        ("retention", "logo_churn_rate", "nrr", "Logo churn and net revenue retention"),
    ):
        if left in metrics and right in metrics:
            fig, ax = plt.subplots(figsize=(6.5, 3))
            a, b = _series(company, left), _series(company, right)
            ax.plot(a.index, a.to_numpy(), color="#1d4ed8", marker="o", ms=3, label=left)
            ax.set_ylabel(left)
            twin = ax.twinx()
            twin.plot(b.index, b.to_numpy(), color="#ea580c", marker="s", ms=3, label=right)
            twin.set_ylabel(right)
            ax.set_title(title)
            charts[key] = _svg(fig)
    if "health_red_share" in metrics:
        fig, ax = plt.subplots(figsize=(6.5, 3))
        bottom = None
        for band, color in (("red", "#dc2626"), ("yellow", "#eab308"), ("green", "#16a34a")):
            share = _series(company, f"health_{band}_share").fillna(0)
            ax.bar(share.index, share.to_numpy(), bottom=bottom, width=20, color=color, label=band)
            bottom = share.to_numpy() if bottom is None else bottom + share.to_numpy()
        ax.set_ylim(0, 1)
        ax.legend(loc="lower left")
        ax.set_title("Health bands")
        charts["health"] = _svg(fig)
    return charts


def retention_curve(retention: pd.DataFrame) -> pd.DataFrame:
    """Usage retention by offset over all cohorts, weighted by cohort size, complete periods only:
    offset, cohorts, users, retention, retention_unbounded."""
    done = retention[~retention["partial"]] if "partial" in retention else retention
    if not len(done):
        return pd.DataFrame(columns=["offset", "cohorts", "users", "retention", "retention_unbounded"])
    seg = [c for c in done.columns if c not in ("cohort", "offset", "cohort_users", "active_users", "retention",
                                                   "retention_unbounded", "partial")]  # fmt: skip
    base = (
        done if not seg else done.groupby(["cohort", "offset"], as_index=False)[["cohort_users", "active_users"]].sum()
    )
    unbounded = done["retention_unbounded"] * done["cohort_users"]
    held = unbounded.groupby([done["cohort"], done["offset"]]).sum().reset_index(drop=True) if seg else unbounded
    base = base.reset_index(drop=True).assign(unbounded=np.asarray(held))
    grouped = base.groupby("offset")
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


def _usage_charts(report, complete) -> dict[str, str]:
    import matplotlib.pyplot as plt

    charts = {}
    retention = getattr(report, "usage_retention", None)
    if retention is not None and len(retention):
        curve = retention_curve(retention)
        if len(curve) > 1:
            fig, ax = plt.subplots(figsize=(6.5, 3))
            ax.plot(
                curve["offset"], 100 * curve["retention"], marker="o", ms=3, color="#1d4ed8", label="active in period k"
            )
            ax.plot(curve["offset"], 100 * curve["retention_unbounded"], marker="s", ms=3, color="#ea580c",
                    linestyle="--", label="active in k or later")  # fmt: skip
            ax.set_ylim(0, 100)
            ax.set_xlabel(f"periods since the first event ({report.manifest.get('parameters', {}).get('freq', '')})")
            ax.set_ylabel("users retained (%)")
            ax.legend(loc="lower left")
            ax.set_title("Usage retention, all cohorts (complete periods)")
            charts["usage_retention"] = _svg(fig)
    days = getattr(report, "active_days", None)
    if days is not None and len(days) and complete is not None:
        last = days[days["period"] == complete]
        if len(last):
            fig, ax = plt.subplots(figsize=(6.5, 3))
            ax.bar(last["active_days"], last["users"], color="#1d4ed8")
            ax.set_xlabel("active days in the period")
            ax.set_ylabel("users")
            ax.set_title(f"Active days per user, {pd.Timestamp(complete):%B %Y}")
            charts["active_days"] = _svg(fig)
    return charts


def _headlines(company: pd.DataFrame, complete: pd.Timestamp | None) -> list[dict]:
    if complete is None:
        return []
    periods = sorted(company["period"].unique())
    before = [p for p in periods if p < complete]
    previous = before[-1] if before else None
    out = []
    for family, names in HEADLINES.items():
        for name in names:
            rows = company[company["metric"] == name].set_index("period")["value"]
            if complete not in rows.index:
                continue
            value = rows.get(complete)
            prior = rows.get(previous) if previous is not None else np.nan
            significant = None
            info = catalog.get(name)
            if info.interval in ("wilson", "adjusted_wald") and previous is not None:
                test = compare_periods(company, name)
                hit = test[test["period"] == complete]
                significant = bool(hit["significant"].iloc[0]) if len(hit) else None
            out.append(
                {
                    "family": family,
                    "name": name,
                    "value": value,
                    "previous": prior,
                    "unit": info.unit,
                    "direction": info.direction,
                    "significant": significant,
                }
            )
    return out


def _fmt(value: float, unit: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if unit == "fraction":
        return f"{100 * value:.1f}%"
    if unit in ("currency", "count"):
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def _table(frame: pd.DataFrame, columns: list[str], limit: int = 25) -> str:
    if frame is None or frame.empty:
        return "<p class='muted'>None.</p>"
    columns = [c for c in columns if c in frame.columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for _, row in frame.head(limit).iterrows():
        cells = []
        for c in columns:
            v = row[c]
            if isinstance(v, pd.Timestamp):
                text = f"{v:%Y-%m-%d}"
            elif v is None or (isinstance(v, float) and np.isnan(v)):
                text = ""
            else:
                text = f"{v:,.1f}" if isinstance(v, float) else str(v)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _renewals(report) -> str:
    """Renewals ahead: the totals over the horizon, then the calendar (soonest first) with health."""
    calendar = getattr(report, "renewal_calendar", None)
    if calendar is None or not len(calendar):
        return "<p class='muted'>Nothing is up for renewal in the horizon.</p>"
    total = float(calendar["mrr_up_for_renewal"].sum())
    red = calendar["health_band"].eq("red").sum() if "health_band" in calendar else 0
    summary = (
        f"<p>{len(calendar):,} renewals, MRR {total:,.0f} up for renewal by {calendar['end'].max():%Y-%m-%d}"
        f"{f'; {red:,} of them red' if red else ''}.</p>"
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
    return summary + _table(calendar, columns)


TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>csmetrics report</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#111827;background:#f9fafb}
h1{margin:0 0 4px}h2{margin-top:32px;border-bottom:1px solid #d1d5db;padding-bottom:4px}
.muted{color:#6b7280}.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:10px 14px;min-width:150px}
.card .name{font-size:12px;color:#6b7280}.card .value{font-size:22px;font-weight:600}
.up{color:#16a34a}.down{color:#dc2626}.flat{color:#6b7280}
.charts{display:flex;flex-wrap:wrap;gap:16px}.chart{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:8px}
table{border-collapse:collapse;background:#fff;font-size:13px}td,th{border:1px solid #e5e7eb;padding:4px 8px;text-align:left}
th{background:#f3f4f6}
</style></head><body>
<h1>Customer-success report</h1>
<div class="muted">as of {{ as_of }}{% if partial %} · the period starting {{ partial }} is partial{% endif %} · headlines for {{ complete }} vs the period before · csmetrics {{ version }}</div>
{% for family, cards in headlines %}
<h2>{{ family|capitalize }}</h2>
<div class="cards">{% for c in cards %}
<div class="card"><div class="name">{{ c.name }}</div><div class="value">{{ c.text }}</div>
<div class="{{ c.css }}">{{ c.change }}{% if c.significant %} · significant{% elif c.significant is not none %} · not significant{% endif %}</div></div>
{% endfor %}</div>
{% endfor %}
<h2>Trends</h2><div class="charts">{% for svg in charts %}<div class="chart">{{ svg }}</div>{% endfor %}</div>
<h2>Follow-ups (detractors and dissatisfied answers)</h2>{{ followups }}
<h2>At risk (red health, by MRR)</h2>{{ at_risk }}
<h2>Health movers (newly red, then the largest drops)</h2>{{ movers }}
<h2>Renewals ahead</h2>{{ renewals }}
<h2>Definitions</h2>
<table><thead><tr><th>metric</th><th>family</th><th>unit</th><th>definition</th></tr></thead><tbody>
{% for m in definitions %}<tr><td>{{ m.name }}</td><td>{{ m.family }}</td><td>{{ m.unit }}</td><td>{{ m.definition }}</td></tr>{% endfor %}
</tbody></table>
</body></html>
"""


def render(report) -> str:
    """The dashboard of a :class:`csmetrics.report.Report` as one HTML string."""
    _require()
    import jinja2

    metrics = report.metrics
    company = company_view(metrics) if len(metrics) else metrics
    periods = sorted(company["period"].unique()) if len(company) else []
    partial = report.manifest.get("partial_period")
    complete_periods = [p for p in periods if partial is None or str(p) != partial]
    complete = complete_periods[-1] if complete_periods else None
    cards: dict[str, list[dict]] = {}
    for item in _headlines(company, complete):
        change = item["value"] - item["previous"] if not np.isnan(item["previous"]) else np.nan
        better = (
            "flat"
            if np.isnan(change) or change == 0 or item["direction"] == "none"
            else ("up" if (change > 0) == (item["direction"] == "up") else "down")
        )
        arrow = "" if np.isnan(change) else ("▲ " if change > 0 else "▼ " if change < 0 else "= ")
        unit = item["unit"]
        item.update(
            text=_fmt(item["value"], unit),
            change=f"{arrow}{_fmt(abs(change), unit) if not np.isnan(change) else 'no previous period'}",
            css=better,
        )
        cards.setdefault(item["family"], []).append(item)
    used = set(metrics["metric"]) if len(metrics) else set()
    template = jinja2.Environment(autoescape=False).from_string(TEMPLATE)
    return template.render(
        as_of=report.manifest.get("as_of"),
        partial=partial,
        complete=str(pd.Timestamp(complete).date()) if complete is not None else "–",
        version=report.manifest.get("csmetrics_version"),
        headlines=list(cards.items()),
        charts=[
            *(_charts(company, complete).values() if len(company) else []),
            *_usage_charts(report, complete).values(),
        ],
        followups=_table(report.followups, ["period", "customer_id", "survey", "score", "comment", "mrr"]),
        at_risk=_table(
            report.at_risk,
            ["customer_id", "score", "score_change", "trend", "mrr", "next_renewal", "weakest_component"],
        ),
        renewals=_renewals(report),
        movers=_table(
            getattr(report, "health_movers", None),
            ["customer_id", "score", "band_change", "score_change", "trend", "mrr", "weakest_component"],
        ),
        definitions=[m for m in catalog.CATALOG if m.name in used],
    )
