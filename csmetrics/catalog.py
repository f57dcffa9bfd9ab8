"""The metric catalog: every metric's name, family, unit, direction and definition.

It is the one list that the metric frame, the docs, the dashboard and
``csmetrics metrics`` read. ``agg`` says how a metric re-aggregates exactly
across segments: ``sum`` (counts and amounts), ``ratio`` (value = scale *
sum(numerator) / sum(denominator)) or ``none`` (quantiles, means of means:
recompute from the rows instead). ``rollup`` says how it rolls up over periods
(to a coarser freq): ``sum`` for flows, ``last``/``first`` for snapshots at the
period end/start, ``ratio`` for ratios of flows, ``none`` where a pooled value
would not be the coarser period's metric (rates over a start-of-period base).
``interval`` names the 95% interval the metric carries (wilson, adjusted_wald).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from csmetrics.options import UnknownNameError

__all__ = ["BY_NAME", "CATALOG", "Metric", "catalog_frame", "get"]


@dataclass(frozen=True)
class Metric:
    name: str
    family: str
    unit: str
    direction: str  # "up": higher is better, "down": lower is better, "none"
    definition: str
    agg: str = "sum"  # sum | ratio | none
    scale: float = 1.0
    rollup: str = ""  # sum | first | last | ratio | none; "" = sum for agg sum, ratio for ratio
    interval: str = ""  # wilson | adjusted_wald | ""

    @property
    def period_rollup(self) -> str:
        if self.rollup:
            return self.rollup
        return {"sum": "sum", "ratio": "ratio"}.get(self.agg, "none")


_M = Metric
CATALOG: tuple[Metric, ...] = (
    # revenue (§4)
    _M("mrr", "revenue", "currency", "up", "Sum of customers' MRR at the period end.", rollup="last"),
    _M("arr", "revenue", "currency", "up", "mrr * 12.", rollup="last"),
    _M(
        "mrr_start",
        "revenue",
        "currency",
        "none",
        "MRR at the previous period's end, over the customers of the segment in this period.",
        rollup="first",
    ),
    _M("new_mrr", "revenue", "currency", "up", "Increases 0 -> x for a customer's first ever x > 0."),
    _M("reactivation_mrr", "revenue", "currency", "up", "Increases 0 -> x for a customer who had MRR > 0 before."),
    _M("expansion_mrr", "revenue", "currency", "up", "Increases x -> y, 0 < x < y (the difference)."),
    _M("contraction_mrr", "revenue", "currency", "down", "Decreases x -> y, 0 < y < x (the difference, positive)."),
    _M("churned_mrr", "revenue", "currency", "down", "Decreases x -> 0 (x, positive)."),
    _M("net_new_mrr", "revenue", "currency", "up", "new + reactivation + expansion - contraction - churned."),
    _M(
        "fx_effect_mrr",
        "revenue",
        "currency",
        "up",
        "fx_mode='spot' only: existing foreign MRR revalued at each rate change (signed); "
        "mrr = mrr_start + new + reactivation + expansion - contraction - churned + fx_effect (§12).",
    ),
    _M(
        "nrr",
        "revenue",
        "fraction",
        "up",
        "(mrr_start + expansion - contraction - churned) / mrr_start over customers with MRR > 0 at the start; movements netted per customer over the period.",
        agg="ratio",
        rollup="none",
    ),
    _M(
        "grr",
        "revenue",
        "fraction",
        "up",
        "(mrr_start - contraction - churned) / mrr_start over customers with MRR > 0 at the start; movements netted per customer over the period.",
        agg="ratio",
        rollup="none",
    ),
    _M(
        "revenue_churn_rate",
        "revenue",
        "fraction",
        "down",
        "Start MRR of start customers who end the period at 0 / mrr_start.",
        agg="ratio",
        rollup="none",
    ),
    _M(
        "quick_ratio",
        "revenue",
        "ratio",
        "up",
        "(new + reactivation + expansion) / (churned + contraction).",
        agg="ratio",
    ),
    _M(
        "gross_mrr_churn_rate",
        "revenue",
        "fraction",
        "down",
        "(churned_mrr + contraction_mrr) / mrr_start (ChartMogul's gross MRR churn rate).",
        agg="ratio",
        rollup="none",
    ),
    _M(
        "net_mrr_churn_rate",
        "revenue",
        "fraction",
        "down",
        "(churned_mrr + contraction_mrr - expansion_mrr - reactivation_mrr) / mrr_start (ChartMogul; may be negative).",
        agg="ratio",
        rollup="none",
    ),
    _M(
        "net_revenue_churn_rate",
        "revenue",
        "fraction",
        "down",
        "(churned_mrr + contraction_mrr - expansion_mrr) / mrr_start (Baremetrics' net revenue churn).",
        agg="ratio",
        rollup="none",
    ),
    _M("asp", "revenue", "currency", "up", "new_mrr / customers_new: the average sale price.", agg="ratio"),
    _M("arpu", "revenue", "currency", "up", "mrr / customers_end.", agg="ratio", rollup="last"),
    _M("one_time_revenue", "revenue", "currency", "up", "Sum of one_time amounts invoiced in the period."),
    _M("refunds", "revenue", "currency", "down", "Sum of refund amounts invoiced in the period, positive."),
    # customers (§5)
    _M(
        "customers_start",
        "customers",
        "count",
        "none",
        "Customers with MRR > 0 at the previous period end.",
        rollup="first",
    ),
    _M("customers_new", "customers", "count", "up", "Count of new movements in the period."),
    _M("customers_reactivated", "customers", "count", "up", "Count of reactivation movements in the period."),
    _M(
        "customers_churned",
        "customers",
        "count",
        "down",
        "Count of churn movements in the period (policy count_new_churn).",
    ),
    _M("customers_end", "customers", "count", "up", "Customers with MRR > 0 at the period end.", rollup="last"),
    _M(
        "logo_churn_rate",
        "customers",
        "fraction",
        "down",
        "customers_churned / customers_start.",
        agg="ratio",
        rollup="none",
    ),
    _M(
        "retention_rate",
        "customers",
        "fraction",
        "up",
        "Start customers still active at the period end / customers_start.",
        agg="ratio",
        rollup="none",
        interval="wilson",
    ),
    _M(
        "renewal_rate",
        "customers",
        "fraction",
        "up",
        "Renewals due in the period that were renewed / renewals due.",
        agg="ratio",
        interval="wilson",
    ),
    _M(
        "repeat_purchase_rate",
        "customers",
        "fraction",
        "up",
        "One-time purchases followed by another within repeat_window_days / purchases whose window has closed.",
        agg="ratio",
        interval="wilson",
    ),
    # support (§6)
    _M("tickets", "support", "count", "none", "Tickets created."),
    _M(
        "fcr_rate",
        "support",
        "fraction",
        "up",
        "Tickets resolved with contacts == 1 and reopens == 0 / tickets created.",
        agg="ratio",
        interval="wilson",
    ),
    _M("aht_seconds", "support", "seconds", "down", "Mean handle_seconds over tickets not abandoned.", agg="ratio"),
    _M("avg_wait_seconds", "support", "seconds", "down", "Mean wait_seconds over tickets not abandoned.", agg="ratio"),
    _M("abandonment_rate", "support", "fraction", "down", "Abandoned / tickets.", agg="ratio", interval="wilson"),
    _M(
        "first_response_minutes_p50",
        "support",
        "minutes",
        "down",
        "Median of first_response_at - created_at over tickets with a response.",
        agg="none",
    ),
    _M(
        "first_response_minutes_p90",
        "support",
        "minutes",
        "down",
        "90th percentile of first_response_at - created_at over tickets with a response.",
        agg="none",
    ),
    _M(
        "resolution_hours_p50",
        "support",
        "hours",
        "down",
        "Median of resolved_at - created_at over resolved tickets.",
        agg="none",
    ),
    _M(
        "resolution_hours_p90",
        "support",
        "hours",
        "down",
        "90th percentile of resolved_at - created_at over resolved tickets.",
        agg="none",
    ),
    _M(
        "reopen_rate",
        "support",
        "fraction",
        "down",
        "Resolved tickets with reopens > 0 / resolved tickets.",
        agg="ratio",
        interval="wilson",
    ),
    _M(
        "backlog",
        "support",
        "count",
        "down",
        "Tickets created before the period end and not resolved by it.",
        rollup="last",
    ),
    _M(
        "sla_first_response_rate",
        "support",
        "fraction",
        "up",
        "Tickets answered within their priority's target / tickets with a target.",
        agg="ratio",
        interval="wilson",
    ),
    _M(
        "sla_resolution_rate",
        "support",
        "fraction",
        "up",
        "Tickets resolved within their priority's resolution target / tickets with a target resolved by as_of or "
        "past their target (abandoned left out; business time where a schedule applies).",
        agg="ratio",
        interval="wilson",
    ),
    _M(
        "first_response_business_minutes_p50",
        "support",
        "minutes",
        "down",
        "Median business minutes from created_at to first_response_at (with business_hours).",
        agg="none",
    ),
    _M(
        "first_response_business_minutes_p90",
        "support",
        "minutes",
        "down",
        "90th percentile of business minutes to first response (with business_hours).",
        agg="none",
    ),
    _M(
        "resolution_business_hours_p50",
        "support",
        "hours",
        "down",
        "Median business hours from created_at to resolved_at (with business_hours).",
        agg="none",
    ),
    _M(
        "resolution_business_hours_p90",
        "support",
        "hours",
        "down",
        "90th percentile of business hours to resolution (with business_hours).",
        agg="none",
    ),
    _M(
        "one_touch_rate",
        "support",
        "fraction",
        "up",
        "Resolved tickets with contacts == 1 / resolved tickets.",
        agg="ratio",
        interval="wilson",
    ),
    _M(
        "two_touch_rate",
        "support",
        "fraction",
        "none",
        "Resolved tickets with contacts == 2 / resolved tickets.",
        agg="ratio",
        interval="wilson",
    ),
    _M("tickets_per_customer", "support", "count", "none", "Tickets / customers with a ticket.", agg="none"),
    # surveys (§7)
    _M(
        "nps",
        "surveys",
        "score",
        "up",
        "100 * (promoters - detractors) / answers; adjusted-Wald 95% interval.",
        agg="ratio",
        scale=100.0,
        interval="adjusted_wald",
    ),
    _M("promoters", "surveys", "count", "up", "NPS answers 9-10."),
    _M("passives", "surveys", "count", "none", "NPS answers 7-8."),
    _M("detractors", "surveys", "count", "down", "NPS answers 0-6."),
    _M(
        "csat",
        "surveys",
        "fraction",
        "up",
        "CSAT answers at or above the positive threshold / answers; Wilson interval.",
        agg="ratio",
        interval="wilson",
    ),
    _M("ces", "surveys", "score", "up", "Mean effort score (higher is easier).", agg="ratio"),
    _M(
        "ces_easy_rate",
        "surveys",
        "fraction",
        "up",
        "Share of CES answers in the top three points of the scale.",
        agg="ratio",
        interval="wilson",
    ),
    _M(
        "cxi",
        "surveys",
        "score",
        "up",
        "Mean over components of (top-two-box share - bottom-two-box share) * 100.",
        agg="none",
    ),
    _M(
        "response_rate",
        "surveys",
        "fraction",
        "up",
        "Surveys sent in the period that have an answer / surveys sent.",
        agg="ratio",
        interval="wilson",
    ),
    _M(
        "comment_rate",
        "surveys",
        "fraction",
        "none",
        "Answers with a non-empty comment / answers.",
        agg="ratio",
        interval="wilson",
    ),
    # engagement (§8)
    _M(
        "active_users",
        "engagement",
        "count",
        "up",
        "Distinct users (user_id, else customer_id) with an event in the period.",
        agg="none",
    ),
    _M("active_customers", "engagement", "count", "up", "Customers with an event in the period.", rollup="none"),
    _M(
        "dau",
        "engagement",
        "users",
        "up",
        "Mean over the period's days (up to as_of) of distinct users active that day.",
        agg="none",
    ),
    _M(
        "wau",
        "engagement",
        "users",
        "up",
        "Mean over the Monday weeks starting in the period of distinct users active that week.",
        agg="none",
    ),
    _M(
        "mau",
        "engagement",
        "users",
        "up",
        "Distinct users in the 30 days ending at the period end (or as_of).",
        agg="none",
    ),
    _M("stickiness", "engagement", "fraction", "up", "dau / mau.", agg="none"),
    _M(
        "avg_session_minutes",
        "engagement",
        "minutes",
        "up",
        "Mean session length (session_id, else 30-minute inactivity gaps), by session start.",
        agg="ratio",
    ),
    _M("events_per_active_user", "engagement", "count", "none", "Events / active_users.", agg="none"),
    _M(
        "feature_adoption",
        "engagement",
        "fraction",
        "up",
        "Per event name: customers using it / active customers.",
        agg="none",
    ),
    _M(
        "purchase_frequency",
        "engagement",
        "count",
        "up",
        "One-time and recurring invoices per paying customer.",
        agg="none",
    ),
    _M("avg_purchase_value", "engagement", "currency", "up", "Revenue per invoice.", agg="ratio"),
    # value and cost (§9)
    _M(
        "clv",
        "value",
        "currency",
        "up",
        "arpu * gross_margin / mean monthly logo churn rate over the trailing 12 months.",
        agg="none",
    ),
    _M(
        "ltv_trailing6",
        "value",
        "currency",
        "up",
        "arpu / mean monthly logo churn rate over the 6 calendar months before the period's start month "
        "(ChartMogul's LTV); NaN if one is undefined or the mean is 0.",
        agg="none",
    ),
    _M(
        "clv_purchase",
        "value",
        "currency",
        "up",
        "avg_purchase_value * purchases per customer per month * average lifespan in months.",
        agg="none",
    ),
    _M("crc", "value", "currency", "down", "Retention-category costs / customers_end.", agg="ratio", rollup="none"),
    _M("cac", "value", "currency", "down", "Acquisition-category costs / customers_new.", agg="ratio"),
    _M("ltv_cac", "value", "ratio", "up", "clv / cac.", agg="none"),
    _M("clv_per_capex", "value", "ratio", "up", "clv * customers_end / capex costs in the period.", agg="none"),
    # health (§10)
    _M(
        "health_score_mean",
        "health",
        "score",
        "up",
        "Mean health score (0-100) of the customers scored in the period.",
        agg="ratio",
        rollup="none",
    ),
    _M(
        "health_new_red",
        "health",
        "count",
        "down",
        "Customers red in the period that were scored and not red in the period before (§14).",
        rollup="sum",
    ),
    _M(
        "health_score_change_mean",
        "health",
        "score",
        "up",
        "Mean score_change (score minus the customer's score of the period before) over the customers "
        "scored in both (§14).",
        agg="ratio",
        rollup="none",
    ),
    _M(
        "health_red_share",
        "health",
        "fraction",
        "down",
        "Share of scored customers in the red band.",
        agg="ratio",
        rollup="none",
        interval="wilson",
    ),
    _M(
        "health_yellow_share",
        "health",
        "fraction",
        "none",
        "Share of scored customers in the yellow band.",
        agg="ratio",
        rollup="none",
        interval="wilson",
    ),
    _M(
        "health_green_share",
        "health",
        "fraction",
        "up",
        "Share of scored customers in the green band.",
        agg="ratio",
        rollup="none",
        interval="wilson",
    ),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in CATALOG}


def get(name: str) -> Metric:
    """The catalog entry of a metric name."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown metric {name!r}; see csmetrics.catalog.CATALOG or `csmetrics metrics`"
        ) from None


def catalog_frame() -> pd.DataFrame:
    """The catalog as a DataFrame (one row per metric)."""
    return pd.DataFrame([m.__dict__ for m in CATALOG])
