"""The public functions: each opens an engine (validating once), builds its family's plan and resolves it.

Every function accepts pandas or Dask DataFrames and returns the same pandas result; the
report (:mod:`csmetrics.report`) runs the same plans (:mod:`csmetrics.plans`), so the two
cannot drift apart. Common parameters:

freq : str
    D, W (Monday weeks), M, Q or Y; periods are labelled by their start in ``tz``.
by : str or list of str
    Segment columns: the table's own or customer attributes (joined from ``customers``);
    for billing, also ``plan``. Missing values form their own (null) segment.
customers, fx, costs : DataFrame, optional
    The dimension, exchange-rate and cost tables (METRICS.md §1).
tz : str
    The report time zone (an IANA name).
as_of : timestamp-like, optional
    The extraction instant (default: the latest timestamp of the table); nothing later is known.
start, end : timestamp-like, optional
    The first and last period to report (default: the periods with data).
validated : bool
    The tables are :func:`csmetrics.validate` output: validation is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from csmetrics import plans
from csmetrics.engines import Engine, Pending, open_engine, resolve
from csmetrics.metrics.health import Scorecard
from csmetrics.metrics.revenue import COHORT_COLUMNS, MOVEMENT_COLUMNS, RENEWAL_COLUMNS
from csmetrics.models import (
    UNIT_DAYS,
    BetaGeoModel,
    GammaGammaModel,
    ModelFitError,
    ShiftedBetaGeometric,
    predictive_clv,
)
from csmetrics.options import check_bool, check_choice, check_number
from csmetrics.schedule import Schedule

__all__ = [
    "HealthScorecard",
    "active_days_distribution",
    "at_risk",
    "cohort_table",
    "current_mrr",
    "customer_metrics",
    "engagement_metrics",
    "followups",
    "health_metrics",
    "BetaGeoModel",
    "GammaGammaModel",
    "ModelFitError",
    "ShiftedBetaGeometric",
    "cohort_retention_model",
    "mrr_movements",
    "predictive_clv",
    "renewal_calendar",
    "rfm_summary",
    "revenue_metrics",
    "support_metrics",
    "survey_metrics",
    "usage_retention",
    "value_metrics",
]


def _one(engine: Engine, pending: Pending) -> Any:
    return resolve(engine, {"out": pending})["out"]


def _window(freq: str, tz: str, as_of: object, start: object, end: object) -> dict[str, Any]:
    return {"freq": freq, "tz": tz, "as_of": as_of, "start": start, "end": end}


def _billing(
    billing: Any, customers: Any, fx: Any, costs: Any = None, *, validated: bool, base_currency: str | None
) -> Engine:
    engine, _ = open_engine(
        {"billing": billing, "customers": customers, "fx": fx, "costs": costs},
        validated=validated,
        base_currency=base_currency,
    )
    return engine


# --------------------------------------------------------------------------
# Billing
# --------------------------------------------------------------------------
def revenue_metrics(
    billing: Any,
    *,
    freq: str = "M",
    by: Sequence[str] | str | None = None,
    customers: Any = None,
    fx: Any = None,
    tz: str = "UTC",
    as_of: object = None,
    start: object = None,
    end: object = None,
    base_currency: str | None = None,
    validated: bool = False,
    **policies: Any,
) -> pd.DataFrame:
    """MRR, ARR and the MRR bridge, NRR, GRR, revenue churn, quick ratio, ARPU,
    one-time revenue and refunds per period and segment (METRICS.md §4).

    Parameters
    ----------
    billing : DataFrame
        Invoice lines (pandas or Dask).
    freq, by, customers, fx, tz, as_of, start, end, validated
        As in :mod:`csmetrics.api`; ``by`` takes customer attributes and ``plan`` (the plan
        of the customer's MRR at the period end).
    base_currency : str, optional
        The currency amounts are converted to (default: the one billing currency fx lacks).
    **policies
        ``count_new_churn`` (True), ``renewal_grace_days`` (0), ``repeat_window_days`` (35),
        ``fx_mode`` ("line": a line keeps the rate of its service_start; "spot": MRR at each
        instant's rate, rate drift reported as ``fx_effect_mrr`` and left out of NRR/GRR, §12).

    Returns
    -------
    DataFrame
        The metric frame (period, freq, segments, metric, value, numerator, denominator,
        ci_low, ci_high).

    Examples
    --------
    >>> import pandas as pd, csmetrics
    >>> billing = pd.DataFrame({"customer_id": [1, 1], "kind": "recurring", "amount": [100.0, 150.0],
    ...     "service_start": ["2024-01-01", "2024-02-01"], "service_end": ["2024-02-01", "2024-03-01"]})
    >>> frame = csmetrics.revenue_metrics(billing)
    >>> frame.pivot(index="period", columns="metric", values="value")[["mrr", "new_mrr", "expansion_mrr"]].to_numpy().tolist()
    [[100.0, 100.0, 0.0], [150.0, 0.0, 50.0]]
    """
    engine = _billing(billing, customers, fx, validated=validated, base_currency=base_currency)
    context = plans.billing_context(
        engine, by=by, base_currency=base_currency, policies=policies, **_window(freq, tz, as_of, start, end)
    )
    return _one(engine, plans.revenue(engine, context))[0]


def customer_metrics(
    billing: Any,
    *,
    freq: str = "M",
    by: Sequence[str] | str | None = None,
    customers: Any = None,
    fx: Any = None,
    tz: str = "UTC",
    as_of: object = None,
    start: object = None,
    end: object = None,
    base_currency: str | None = None,
    validated: bool = False,
    **policies: Any,
) -> pd.DataFrame:
    """Customers at start and end, new, reactivated and churned logos, logo churn,
    retention, renewal and repeat-purchase rates per period and segment (METRICS.md §5).

    Parameters
    ----------
    billing, freq, by, customers, fx, tz, as_of, start, end, base_currency, validated, **policies
        As in :func:`revenue_metrics`. With ``count_new_churn=False`` customers_churned counts
        only customers who were active at the period start (each once).

    Returns
    -------
    DataFrame
        The metric frame.

    Examples
    --------
    >>> import pandas as pd, csmetrics
    >>> billing = pd.DataFrame({"customer_id": [1, 2], "kind": "recurring", "amount": [100.0, 50.0],
    ...     "service_start": "2024-01-01", "service_end": ["2024-02-01", "2024-03-01"]})
    >>> frame = csmetrics.customer_metrics(billing, as_of="2024-02-15")
    >>> frame.pivot(index="period", columns="metric", values="value")["customers_churned"].tolist()
    [0.0, 1.0]
    """
    engine = _billing(billing, customers, fx, validated=validated, base_currency=base_currency)
    context = plans.billing_context(
        engine, by=by, base_currency=base_currency, policies=policies, **_window(freq, tz, as_of, start, end)
    )
    return _one(engine, plans.revenue(engine, context))[1]


def value_metrics(
    billing: Any,
    *,
    costs: Any = None,
    gross_margin: float = 1.0,
    cost_roles: Mapping[str, Sequence[str]] | None = None,
    lifespan_months: float | None = None,
    freq: str = "M",
    by: Sequence[str] | str | None = None,
    customers: Any = None,
    fx: Any = None,
    tz: str = "UTC",
    as_of: object = None,
    start: object = None,
    end: object = None,
    base_currency: str | None = None,
    validated: bool = False,
    **policies: Any,
) -> pd.DataFrame:
    """CLV, purchase CLV and, with ``costs`` (and no ``by``), CRC, CAC, LTV:CAC and CLV per capex (§9).

    Parameters
    ----------
    billing, freq, by, customers, fx, tz, as_of, start, end, base_currency, validated, **policies
        As in :func:`revenue_metrics`.
    costs : DataFrame, optional
        Costs by category.
    gross_margin : float
        In (0, 1]; CLV = ARPU x gross_margin / the trailing mean monthly logo churn.
    cost_roles : mapping, optional
        ``{"retention" | "acquisition" | "capex": [category, ...]}`` replacing the defaults.
    lifespan_months : float, optional
        The lifespan of ``clv_purchase`` (default: 1 / the mean churn).

    Returns
    -------
    DataFrame
        The metric frame.

    Examples
    --------
    The seed's worked example: $50 a purchase, 3 purchases a month, 24 months.

    >>> import pandas as pd, csmetrics
    >>> billing = pd.DataFrame({"customer_id": 1, "kind": "one_time", "amount": 50.0,
    ...     "invoiced_at": ["2024-01-05", "2024-01-15", "2024-01-25"]})
    >>> frame = csmetrics.value_metrics(billing, lifespan_months=24).set_index("metric")
    >>> float(frame.loc["clv_purchase", "value"])
    3600.0
    """
    engine = _billing(billing, customers, fx, costs, validated=validated, base_currency=base_currency)
    context = plans.billing_context(
        engine, by=by, base_currency=base_currency, policies=policies, **_window(freq, tz, as_of, start, end)
    )
    pending = plans.value(
        engine, context, gross_margin=gross_margin, cost_roles=cost_roles, lifespan_months=lifespan_months
    )
    return _one(engine, pending)


def mrr_movements(
    billing: Any,
    *,
    freq: str = "M",
    by: Sequence[str] | str | None = None,
    customers: Any = None,
    fx: Any = None,
    tz: str = "UTC",
    as_of: object = None,
    start: object = None,
    end: object = None,
    base_currency: str | None = None,
    validated: bool = False,
    **policies: Any,
) -> pd.DataFrame:
    """The per-customer movement ledger the revenue metrics are built from.

    Parameters
    ----------
    billing, freq, by, customers, fx, tz, as_of, start, end, base_currency, validated, **policies
        As in :func:`revenue_metrics`.

    Returns
    -------
    DataFrame
        One row per customer and instant where its MRR changes: customer_id, instant (UTC),
        period (label in ``tz``), kind (new, reactivation, expansion, contraction, churn),
        amount (the signed change: its sum is net new MRR), mrr_before, mrr_after, and the
        ``by`` segment of the customer in that period; ordered by customer_id, then instant.

    Examples
    --------
    >>> import pandas as pd, csmetrics
    >>> billing = pd.DataFrame({"customer_id": [1, 1], "kind": "recurring", "amount": [100.0, 150.0],
    ...     "service_start": ["2024-01-01", "2024-02-01"], "service_end": ["2024-02-01", "2024-03-01"]})
    >>> csmetrics.mrr_movements(billing, as_of="2024-03-15")[["kind", "amount"]].to_numpy().tolist()
    [['new', 100.0], ['expansion', 50.0], ['churn', -150.0]]
    """
    engine = _billing(billing, customers, fx, validated=validated, base_currency=base_currency)
    context = plans.billing_context(
        engine,
        by=by,
        base_currency=base_currency,
        policies=policies,
        reserved=MOVEMENT_COLUMNS,
        **_window(freq, tz, as_of, start, end),
    )
    return _one(engine, plans.movements(engine, context))


def renewal_calendar(
    billing: Any,
    *,
    horizon_days: float = 90.0,
    by: Sequence[str] | str | None = None,
    customers: Any = None,
    fx: Any = None,
    as_of: object = None,
    base_currency: str | None = None,
    validated: bool = False,
    **policies: Any,
) -> pd.DataFrame:
    """Renewals ahead (METRICS.md §12): what is up for renewal in the next ``horizon_days``.

    A recurring line is known at as_of when it was invoiced by then (or, with no
    ``invoiced_at``, started by then); its scheduled end counts even after as_of. A customer
    is listed at an end instant in (as_of, as_of + horizon_days] where positive known lines
    end, unless its known lines still give it MRR > 0 at that instant plus
    ``renewal_grace_days`` (a renewal already booked, or another subscription running on).

    Parameters
    ----------
    billing, customers, fx, base_currency, validated, **policies
        As in :func:`revenue_metrics` (``fx_mode="spot"`` values the ending lines at the
        latest rate on or before as_of; line mode at each line's start rate).
    horizon_days : float
        How far ahead to look (days, > 0).
    by : str or list of str, optional
        Customer attributes (from ``customers``) or ``plan`` (of the largest ending line)
        added as columns.
    as_of : timestamp-like, optional
        Default: billing's own as_of.

    Returns
    -------
    DataFrame
        customer_id, end (UTC), mrr_up_for_renewal (base currency), and the ``by`` columns;
        sorted by end, then MRR (largest first). Not a metric frame: its instants lie after
        as_of.

    Examples
    --------
    >>> import pandas as pd, csmetrics
    >>> billing = pd.DataFrame({"customer_id": [1, 2, 2], "kind": "recurring", "amount": [1200.0, 300.0, 300.0],
    ...     "service_start": ["2024-01-01", "2024-01-01", "2024-04-01"],
    ...     "service_end": ["2025-01-01", "2024-04-01", "2024-07-01"],
    ...     "invoiced_at": ["2024-01-01", "2024-01-01", "2024-03-20"]})
    >>> csmetrics.renewal_calendar(billing, as_of="2024-12-01", horizon_days=60).to_dict("records")
    [{'customer_id': 1, 'end': Timestamp('2025-01-01 00:00:00+0000', tz='UTC'), 'mrr_up_for_renewal': 100.0}]
    """
    horizon_days = check_number("horizon_days", horizon_days, low=0, low_open=True)
    engine = _billing(billing, customers, fx, validated=validated, base_currency=base_currency)
    context = plans.billing_context(
        engine,
        by=by,
        as_of=as_of,
        base_currency=base_currency,
        policies=policies,
        reserved=RENEWAL_COLUMNS,
    )
    return _one(engine, plans.renewals(engine, context, horizon_days=horizon_days))


def rfm_summary(
    billing: Any,
    *,
    as_of: object = None,
    unit: str = "W",
    tz: str = "UTC",
    fx: Any = None,
    base_currency: str | None = None,
    validated: bool = False,
) -> pd.DataFrame:
    """Per customer with one-time purchases by as_of: the RFM summary of the BG/NBD and
    Gamma-Gamma models (METRICS.md §13).

    Parameters
    ----------
    billing, fx, base_currency, validated
        As in :func:`revenue_metrics`; amounts in the base currency.
    as_of : timestamp-like, optional
        The end of the calibration period (default: billing's own as_of).
    unit : {"D", "W", "M"}
        Time unit of recency and T: 1, 7 or 30.4375 days.
    tz : str
        Purchases are grouped by local day in this time zone.

    Returns
    -------
    DataFrame
        customer_id, frequency (purchase days - 1), recency (last - first purchase day), T
        (as_of's day - first purchase day), monetary_value (mean day total of the repeat
        days, 0 without any); sorted by customer_id; ``attrs["unit"]`` is the unit.

    Examples
    --------
    >>> import pandas as pd, csmetrics
    >>> billing = pd.DataFrame({"customer_id": [1, 1, 1, 2], "kind": "one_time", "amount": [10.0, 5.0, 20.0, 7.0],
    ...     "invoiced_at": ["1997-01-01", "1997-01-01 18:00", "1997-01-15", "1997-02-01"]})
    >>> csmetrics.rfm_summary(billing, as_of="1997-09-30").round(3).to_dict("records")[0]
    {'customer_id': 1, 'frequency': 1, 'recency': 2.0, 'T': 38.857, 'monetary_value': 20.0}
    """
    unit = check_choice("unit", unit, tuple(UNIT_DAYS))
    engine = _billing(billing, None, fx, validated=validated, base_currency=base_currency)
    context = plans.billing_context(engine, as_of=as_of, tz=tz, base_currency=base_currency)
    return _one(engine, plans.rfm(engine, context, unit))


def cohort_retention_model(
    billing: Any,
    *,
    freq: str = "M",
    by: Sequence[str] | str | None = None,
    pooled: bool = False,
    customers: Any = None,
    fx: Any = None,
    tz: str = "UTC",
    as_of: object = None,
    base_currency: str | None = None,
    validated: bool = False,
    **policies: Any,
) -> pd.DataFrame:
    """sBG retention fitted per cohort, or pooled (per segment), from billing (METRICS.md §13).

    Survivors at offset k are the cohort's customers whose MRR stayed > 0 from their first
    MRR through the end of period k (a first churn ends the lifetime; a reactivation starts
    nothing); the period holding as_of is left out. Pooled fits sum the cohorts'
    log-likelihoods, each to its own last complete offset.

    Parameters
    ----------
    billing, freq, customers, fx, tz, as_of, base_currency, validated, **policies
        As in :func:`revenue_metrics`.
    by : str or list of str, optional
        Customer attributes or ``plan`` (of the first MRR > 0), as in :func:`cohort_table`.
    pooled : bool
        One fit over all cohorts (per segment with ``by``) instead of one per cohort.

    Returns
    -------
    DataFrame
        cohort (NaT when pooled), the ``by`` columns, cohort_customers, periods (offsets
        observed), survivors (per cohort), alpha, beta, log_likelihood, and error: why a
        cohort could not be fitted (no churn yet, a single period), else null. A fitted row
        is a :class:`ShiftedBetaGeometric` with ``alpha_`` and ``beta_`` set to its values.

    Examples
    --------
    >>> import pandas as pd, csmetrics
    >>> rows = [(c, "2024-01-01", end) for c, end in enumerate(["2024-02-01"] * 4 + ["2024-03-01"] * 2 + ["2025-01-01"] * 4)]
    >>> billing = pd.DataFrame(rows, columns=["customer_id", "service_start", "service_end"]).assign(kind="recurring", amount=10.0)
    >>> fit = csmetrics.cohort_retention_model(billing, as_of="2024-06-15")
    >>> fit[["cohort_customers", "survivors"]].to_dict("records")
    [{'cohort_customers': 10, 'survivors': [10, 6, 4, 4, 4]}]
    """
    pooled = check_bool("pooled", pooled)
    engine = _billing(billing, customers, fx, validated=validated, base_currency=base_currency)
    context = plans.billing_context(
        engine,
        by=by,
        base_currency=base_currency,
        policies=policies,
        reserved=RETENTION_MODEL_COLUMNS,
        **_window(freq, tz, as_of, None, None),
    )
    table = _one(engine, plans.survivors(engine, context))
    return _fit_cohorts(table, list(context.by), pooled)


#: The columns of :func:`cohort_retention_model` (none may be a segment column).
RETENTION_MODEL_COLUMNS = (
    "cohort",
    "cohort_customers",
    "periods",
    "survivors",
    "alpha",
    "beta",
    "log_likelihood",
    "error",
)


def _fit_cohorts(table: pd.DataFrame, by: list[str], pooled: bool) -> pd.DataFrame:
    def fit(series: list) -> tuple[float, float, float, str | None]:
        try:
            model = ShiftedBetaGeometric().fit(series)
        except ModelFitError as err:
            return np.nan, np.nan, np.nan, str(err)
        return float(model.alpha_), float(model.beta_), float(model.log_likelihood_), None  # type: ignore[arg-type]

    rows = []
    if pooled:
        groups = table.groupby(by, dropna=False, sort=True) if by else [((), table)]
        for key, group in groups:
            key = key if isinstance(key, tuple) else (key,)
            usable = [s for s in group["survivors"] if len(s) >= 2]
            result = (
                fit(usable) if usable else (np.nan, np.nan, np.nan, "no cohort with a complete period after its first")
            )
            rows.append(
                (
                    pd.NaT,
                    *key,
                    int(group["cohort_customers"].sum()),
                    max((len(s) - 1 for s in group["survivors"]), default=0),
                    None,
                    *result,
                )
            )
    else:
        for record in table.itertuples(index=False):
            series = list(record.survivors)
            result = (
                fit(series)
                if len(series) >= 2
                else (np.nan, np.nan, np.nan, "no complete period after the cohort's first")
            )
            rows.append(
                (
                    record.cohort,
                    *[getattr(record, c) for c in by],
                    record.cohort_customers,
                    len(series) - 1,
                    series,
                    *result,
                )
            )
    frame = pd.DataFrame(
        rows,
        columns=["cohort", *by, "cohort_customers", "periods", "survivors", "alpha", "beta", "log_likelihood", "error"],
    )
    if pooled:
        frame = frame.drop(columns="survivors")
    frame["cohort"] = (
        pd.to_datetime(frame["cohort"], utc=True) if len(frame) else pd.Series([], dtype="datetime64[ns, UTC]")
    )
    return frame


def cohort_table(
    billing: Any,
    *,
    freq: str = "M",
    by: Sequence[str] | str | None = None,
    customers: Any = None,
    fx: Any = None,
    tz: str = "UTC",
    as_of: object = None,
    start: object = None,
    end: object = None,
    base_currency: str | None = None,
    validated: bool = False,
    **policies: Any,
) -> pd.DataFrame:
    """Per cohort (period of a customer's first MRR > 0), segment and periods since start.

    Parameters
    ----------
    billing, freq, customers, fx, tz, as_of, start, end, base_currency, validated, **policies
        As in :func:`revenue_metrics`.
    by : str or list of str, optional
        Customer attributes (joined from ``customers``) and ``plan``: the plan of the
        customer's first MRR > 0, so a customer stays in one segment of its cohort (§12).

    Returns
    -------
    DataFrame
        cohort, the ``by`` columns, period, periods_since_start, cohort_customers,
        customers_active (MRR > 0 at the period end), logo_retention, mrr and
        revenue_retention (MRR / the cohort's MRR at the end of its first period; NaN where 0).

    Examples
    --------
    >>> import pandas as pd, csmetrics
    >>> billing = pd.DataFrame({"customer_id": [1, 2, 2], "kind": "recurring", "amount": [100.0, 50.0, 50.0],
    ...     "plan": ["pro", "basic", "basic"], "service_start": ["2024-01-01", "2024-01-01", "2024-02-01"],
    ...     "service_end": ["2024-02-01", "2024-02-01", "2024-03-01"]})
    >>> table = csmetrics.cohort_table(billing, by="plan", as_of="2024-02-15")
    >>> table[["plan", "periods_since_start", "customers_active", "logo_retention"]].to_numpy().tolist()
    [['basic', 0, 1.0, 1.0], ['basic', 1, 1.0, 1.0], ['pro', 0, 1.0, 1.0], ['pro', 1, 0.0, 0.0]]
    """
    engine = _billing(billing, customers, fx, validated=validated, base_currency=base_currency)
    context = plans.billing_context(
        engine,
        by=by,
        base_currency=base_currency,
        policies=policies,
        reserved=COHORT_COLUMNS,
        **_window(freq, tz, as_of, start, end),
    )
    return _one(engine, plans.cohorts(engine, context))


def current_mrr(
    billing: Any,
    *,
    fx: Any = None,
    as_of: object = None,
    base_currency: str | None = None,
    validated: bool = False,
    **policies: Any,
) -> pd.Series:
    """Each customer's MRR at as_of.

    Parameters
    ----------
    billing, fx, base_currency, validated, **policies
        As in :func:`revenue_metrics`.
    as_of : timestamp-like, optional
        The instant (default: billing's own as_of).

    Returns
    -------
    Series
        MRR (base currency) indexed by customer_id, sorted.

    Examples
    --------
    >>> import pandas as pd, csmetrics
    >>> billing = pd.DataFrame({"customer_id": [2, 1], "kind": "recurring", "amount": [300.0, 100.0],
    ...     "service_start": "2024-01-01", "service_end": ["2024-04-01", "2024-02-01"]})
    >>> csmetrics.current_mrr(billing, as_of="2024-01-15").to_dict()
    {1: 100.0, 2: 100.0}
    """
    engine = _billing(billing, None, fx, validated=validated, base_currency=base_currency)
    context = plans.billing_context(engine, as_of=as_of, base_currency=base_currency, policies=policies)
    return _one(engine, plans.current_mrr(engine, context))


# --------------------------------------------------------------------------
# Support, surveys, engagement
# --------------------------------------------------------------------------
def support_metrics(
    tickets: Any,
    *,
    freq: str = "M",
    by: Sequence[str] | str | None = None,
    customers: Any = None,
    tz: str = "UTC",
    as_of: object = None,
    start: object = None,
    end: object = None,
    sla_targets: Mapping[str, float] | None = None,
    resolution_targets: Mapping[str, float] | None = None,
    business_hours: Schedule | Mapping[str, Schedule] | None = None,
    schedule_column: str | None = None,
    validated: bool = False,
) -> pd.DataFrame:
    """Tickets, FCR, AHT, wait, abandonment, response and resolution quantiles,
    reopen rate, backlog, SLA attainment, one- and two-touch rates and tickets per customer
    (METRICS.md §6, §11).

    Parameters
    ----------
    tickets : DataFrame
        Support cases (pandas or Dask).
    freq, customers, tz, as_of, start, end, validated
        As in :mod:`csmetrics.api`.
    by : str or list of str, optional
        Ticket columns (channel, priority, agent_id) or customer attributes.
    sla_targets : mapping, optional
        First-response target in minutes per priority (business minutes where a schedule applies).
    resolution_targets : mapping, optional
        Resolution target in hours per priority: adds ``sla_resolution_rate``.
    business_hours : Schedule or mapping, optional
        One :class:`~csmetrics.Schedule`, or ticket-column values -> schedules (with ``"default"``
        for the others; calendar time without one): adds the business-time quantiles.
    schedule_column : str, optional
        The ticket column whose values pick the schedule (with a mapping).

    Returns
    -------
    DataFrame
        The metric frame.

    Examples
    --------
    >>> import pandas as pd, csmetrics
    >>> tickets = pd.DataFrame({"ticket_id": range(100), "customer_id": 1,
    ...     "created_at": "2024-01-02", "resolved_at": "2024-01-03",
    ...     "contacts": [1] * 78 + [2] * 22})
    >>> frame = csmetrics.support_metrics(tickets)
    >>> float(frame.loc[frame["metric"] == "fcr_rate", "value"].iloc[0])
    0.78
    """
    engine, _ = open_engine({"tickets": tickets, "customers": customers}, validated=validated)
    pending = plans.support(engine, by=by, sla_targets=sla_targets, resolution_targets=resolution_targets,
                            business_hours=business_hours, schedule_column=schedule_column,
                            **_window(freq, tz, as_of, start, end))  # fmt: skip
    return _one(engine, pending)


def survey_metrics(
    surveys: Any,
    *,
    tickets: Any = None,
    freq: str = "M",
    by: Sequence[str] | str | None = None,
    customers: Any = None,
    tz: str = "UTC",
    as_of: object = None,
    start: object = None,
    end: object = None,
    csat_thresholds: Mapping[Any, float] | None = None,
    validated: bool = False,
) -> pd.DataFrame:
    """NPS (adjusted-Wald interval), promoters/passives/detractors, CSAT (Wilson
    interval), CES, CES easy rate, CX index, response and comment rates (METRICS.md §7).

    Parameters
    ----------
    surveys : DataFrame
        Survey sends and answers (pandas or Dask).
    freq, by, customers, tz, as_of, start, end, validated
        As in :mod:`csmetrics.api`.
    csat_thresholds : mapping, optional
        The positive threshold per scale, ``{"1-5": 4}`` or ``{(1, 5): 4}``.
    tickets : DataFrame, optional
        With it, ``by`` may name ticket columns (agent_id, channel, priority, ...): an answer takes
        its ticket's (by ticket_id); an answer whose ticket is unknown goes to the null segment.

    Returns
    -------
    DataFrame
        The metric frame.

    Examples
    --------
    >>> import pandas as pd, csmetrics
    >>> scores = [10] * 50 + [8] * 30 + [3] * 20
    >>> surveys = pd.DataFrame({"response_id": range(100), "customer_id": 1, "survey": "nps",
    ...     "score": scores, "responded_at": "2024-01-05"})
    >>> nps = csmetrics.survey_metrics(surveys).set_index("metric").loc["nps"]
    >>> float(nps["value"]), round(float(nps["ci_low"]), 1), round(float(nps["ci_high"]), 1)
    (30.0, 14.1, 44.2)
    """
    engine, _ = open_engine({"surveys": surveys, "tickets": tickets, "customers": customers}, validated=validated)
    pending = plans.surveys(
        engine,
        by=by,
        csat_thresholds=csat_thresholds,
        with_tickets=tickets is not None,
        **_window(freq, tz, as_of, start, end),
    )
    return _one(engine, pending)


def followups(
    surveys: Any,
    *,
    billing: Any = None,
    fx: Any = None,
    freq: str = "M",
    tz: str = "UTC",
    as_of: object = None,
    start: object = None,
    end: object = None,
    csat_thresholds: Mapping[Any, float] | None = None,
    validated: bool = False,
) -> pd.DataFrame:
    """Every detractor (NPS 0-6) and dissatisfied CSAT answer (below its threshold) in the reported periods.

    Parameters
    ----------
    surveys : DataFrame
        Survey answers (pandas or Dask).
    billing, fx : DataFrame, optional
        For each customer's current MRR (at the surveys' as_of).
    freq, tz, as_of, start, end, csat_thresholds, validated
        As in :func:`survey_metrics`.

    Returns
    -------
    DataFrame
        period, customer_id, response_id, survey, score, comment, responded_at (touchpoint,
        ticket_id where given) and, given billing, mrr; largest MRR first (customers without
        MRR last), then the latest answer.

    Examples
    --------
    >>> import pandas as pd, csmetrics
    >>> surveys = pd.DataFrame({"response_id": [1, 2], "customer_id": [7, 8], "survey": "nps", "score": [3, 10],
    ...     "responded_at": "2024-01-05"})
    >>> listed = csmetrics.followups(surveys)
    >>> listed["customer_id"].tolist(), listed["score"].tolist()
    ([7], [3.0])
    """
    engine, _ = open_engine({"surveys": surveys, "billing": billing, "fx": fx}, validated=validated)
    return _one(
        engine, plans.followups(engine, csat_thresholds=csat_thresholds, **_window(freq, tz, as_of, start, end))
    )


def engagement_metrics(
    events: Any,
    *,
    billing: Any = None,
    fx: Any = None,
    freq: str = "M",
    by: Sequence[str] | str | None = None,
    customers: Any = None,
    tz: str = "UTC",
    as_of: object = None,
    start: object = None,
    end: object = None,
    session_gap_minutes: float = 30.0,
    validated: bool = False,
) -> pd.DataFrame:
    """Active users and customers, DAU/WAU/MAU, stickiness, session length, events per
    user, feature adoption (rows with an ``event`` column) and, given billing,
    purchase frequency and value (METRICS.md §8).

    Parameters
    ----------
    events : DataFrame
        Product usage events (pandas or Dask).
    billing, fx : DataFrame, optional
        For purchase frequency and value.
    freq, by, customers, tz, as_of, start, end, validated
        As in :mod:`csmetrics.api` (``event`` cannot be a segment: feature_adoption uses it).
    session_gap_minutes : float
        A user's events further apart than this start a new session (without session_id).

    Returns
    -------
    DataFrame
        The metric frame.

    Examples
    --------
    >>> import pandas as pd, csmetrics
    >>> events = pd.DataFrame({"customer_id": [1, 1, 1], "user_id": ["a", "a", "b"], "event": "login",
    ...     "timestamp": ["2024-01-01 09:00", "2024-01-01 09:20", "2024-01-02 09:00"]})
    >>> frame = csmetrics.engagement_metrics(events, as_of="2024-01-02 12:00").set_index("metric")
    >>> float(frame.loc["active_users", "value"]), float(frame.loc["avg_session_minutes", "value"])
    (2.0, 10.0)
    """
    engine, _ = open_engine(
        {"events": events, "billing": billing, "fx": fx, "customers": customers}, validated=validated
    )
    pending = plans.engagement(
        engine, by=by, session_gap_minutes=session_gap_minutes, **_window(freq, tz, as_of, start, end)
    )
    return _one(engine, pending)


def usage_retention(
    events: Any,
    *,
    freq: str = "W",
    periods: int = 12,
    by: Sequence[str] | str | None = None,
    customers: Any = None,
    tz: str = "UTC",
    as_of: object = None,
    validated: bool = False,
) -> pd.DataFrame:
    """N-period and unbounded retention of users by cohort (METRICS.md §15).

    A user (customer_id, user_id; the customer where user_id is missing) belongs to the cohort
    of its first event's period. For offsets k = 0..periods: ``retention`` = users active in
    period k after the cohort's / the cohort's users; ``retention_unbounded`` counts users
    active in period k or any later one up to as_of (whatever ``periods`` is).

    Parameters
    ----------
    events, customers, tz, as_of, validated
        As in :func:`engagement_metrics`.
    freq : str
        Period of cohorts and offsets (D, W, M, Q, Y), default weeks.
    periods : int
        The last offset (>= 0).
    by : str or list of str, optional
        An events column (its value at the user's first event) or a customer attribute.

    Returns
    -------
    DataFrame
        cohort, the ``by`` columns, offset, cohort_users, active_users, retention,
        retention_unbounded, partial (the offset's period holds as_of). Offsets whose period
        starts after as_of are left out.

    Examples
    --------
    >>> import pandas as pd, csmetrics
    >>> events = pd.DataFrame({"customer_id": 1, "user_id": ["a", "b", "a", "b", "b"], "event": "login",
    ...     "timestamp": ["2024-01-01", "2024-01-02", "2024-01-09", "2024-01-22", "2024-01-29"]})
    >>> frame = csmetrics.usage_retention(events, periods=2, as_of="2024-01-30")
    >>> frame["active_users"].tolist(), frame["retention"].tolist(), frame["retention_unbounded"].tolist()
    ([2, 1, 0], [1.0, 0.5, 0.0], [1.0, 1.0, 0.5])
    """
    engine, _ = open_engine({"events": events, "customers": customers}, validated=validated)
    return _one(engine, plans.usage_retention(engine, freq=freq, periods=periods, by=by, tz=tz, as_of=as_of))


def active_days_distribution(
    events: Any, *, freq: str = "M", tz: str = "UTC", as_of: object = None, validated: bool = False
) -> pd.DataFrame:
    """Per period, how many users were active on 1, 2, ... (local) days of it: the stickiness
    distribution (METRICS.md §15).

    Returns
    -------
    DataFrame
        period, active_days, users; only the day counts some user has.

    Examples
    --------
    >>> import pandas as pd, csmetrics
    >>> events = pd.DataFrame({"customer_id": [1, 1, 1, 2], "event": "login",
    ...     "timestamp": ["2024-01-01 08:00", "2024-01-01 17:00", "2024-01-05", "2024-01-07"]})
    >>> csmetrics.active_days_distribution(events)[["active_days", "users"]].to_numpy().tolist()
    [[1, 1], [2, 1]]
    """
    engine, _ = open_engine({"events": events}, validated=validated)
    return _one(engine, plans.active_days(engine, freq=freq, tz=tz, as_of=as_of))


# --------------------------------------------------------------------------
# Health
# --------------------------------------------------------------------------
class HealthScorecard(Scorecard):
    """A health scorecard with scikit-learn's habits: parameters in ``__init__``, ``fit`` learns
    (the support load scale), ``transform`` scores; learned attributes end in ``_``.

    Parameters
    ----------
    weights : mapping, optional
        Component -> weight (default: equal); a component left out weighs 0. Non-negative,
        with a positive sum.
    bands : (float, float)
        (red below, green from), increasing strictly inside 0..100; default (40, 70).
    baseline_periods : int
        Periods of history for the usage baseline and the revenue trend.
    support_scale : float, optional
        A fixed ticket load that scores 0 (default: learned by ``fit``).
    trend_periods : int
        Periods (>= 2) over which ``trend``, the least-squares slope of a customer's score in
        points per period, is taken (§14); default 3.

    Examples
    --------
    >>> import pandas as pd, csmetrics
    >>> events = pd.DataFrame({"customer_id": [1, 1, 2], "event": "login",
    ...     "timestamp": ["2024-01-03", "2024-01-04", "2024-01-05"]})
    >>> card = csmetrics.HealthScorecard(weights={"usage": 1})
    >>> card.score(events=events)[["customer_id", "score", "band"]].to_numpy().tolist()
    [[1, 100.0, 'green'], [2, 100.0, 'green']]
    >>> csmetrics.HealthScorecard().transform(events=events)
    Traceback (most recent call last):
    ...
    csmetrics.options.NotFittedError: this HealthScorecard is not fitted yet: call fit() or score() first
    """

    def fit(self, **tables: Any) -> HealthScorecard:
        """Learn the support load scale from the tables.

        Parameters
        ----------
        **tables
            events, surveys, tickets, billing, fx, customers (pandas or Dask), and freq, tz,
            as_of, start, end, validated.

        Returns
        -------
        HealthScorecard
            self, fitted.
        """
        self._scores(tables, fit=True)
        return self

    def transform(self, **tables: Any) -> pd.DataFrame:
        """Score every active customer and period with the learned scale (NotFittedError before ``fit``).

        Parameters
        ----------
        **tables
            As in :meth:`fit`.

        Returns
        -------
        DataFrame
            One row per scored customer and period: component scores, score, band,
            components_used, contributions, weakest_component and mrr.
        """
        self.check_is_fitted()
        return self._scores(tables, fit=False)

    def score(self, **tables: Any) -> pd.DataFrame:
        """``fit`` then ``transform`` on the same tables (their inputs are built once).

        Parameters
        ----------
        **tables
            As in :meth:`fit`.

        Returns
        -------
        DataFrame
            As :meth:`transform`.
        """
        return self._scores(tables, fit=True)

    def _scores(self, tables: Mapping[str, Any], *, fit: bool) -> pd.DataFrame:
        engine, window = _health_engine(tables)
        scores, fitted, _ = plans.health_scores(engine, self, fit=fit, **window)
        if fit:
            self.support_scale_, self.weights_ = fitted.support_scale_, fitted.weights_
        return _one(engine, plans.gather_scores(engine, scores))


_HEALTH_TABLES = ("events", "surveys", "tickets", "billing", "fx", "customers")
_HEALTH_WINDOW = ("freq", "tz", "as_of", "start", "end")


def _health_engine(given: Mapping[str, Any]) -> tuple[Engine, dict[str, Any]]:
    """An engine over the health tables of ``given`` and the window settings."""
    unknown = sorted(set(given) - {*_HEALTH_TABLES, *_HEALTH_WINDOW, "validated"})
    if unknown:
        raise TypeError(
            f"unknown argument(s) {unknown}: the health functions take the tables "
            f"{', '.join(_HEALTH_TABLES)} and {', '.join(_HEALTH_WINDOW)}, validated"
        )
    engine, _ = open_engine({k: given.get(k) for k in _HEALTH_TABLES}, validated=given.get("validated", False))
    return engine, {k: given[k] for k in _HEALTH_WINDOW if k in given}


def health_metrics(
    *,
    scorecard: Scorecard | None = None,
    by: Sequence[str] | str | None = None,
    **tables: Any,
) -> pd.DataFrame:
    """health_score_mean and the red/yellow/green shares per period and segment (§10).

    Parameters
    ----------
    scorecard : HealthScorecard, optional
        Its weights, bands and baseline (default: :class:`HealthScorecard`); it is fitted on
        a copy, never changed.
    by : str or list of str, optional
        Customer attributes (joined from ``customers``).
    **tables
        events, surveys, tickets, billing, fx, customers, and freq, tz, as_of, start, end, validated.

    Returns
    -------
    DataFrame
        The metric frame.

    Examples
    --------
    >>> import pandas as pd, csmetrics
    >>> events = pd.DataFrame({"customer_id": [1, 2], "event": "login", "timestamp": ["2024-01-03", "2024-01-05"]})
    >>> frame = csmetrics.health_metrics(events=events).set_index("metric")
    >>> float(frame.loc["health_green_share", "value"])
    1.0
    """
    engine, window = _health_engine(tables)
    scores, _, periods = plans.health_scores(engine, scorecard or HealthScorecard(), **window)
    freq_tz = {k: window[k] for k in ("freq", "tz") if k in window}
    return _one(engine, plans.health(engine, scores, by=by, periods=periods, **freq_tz))[0]


def at_risk(*, scorecard: Scorecard | None = None, period: object = None, **tables: Any) -> pd.DataFrame:
    """Red customers of a period (default: the last) by MRR, largest first, with the component
    that pulls each one down most (customers with MRR 0 at the period end are left out).

    Parameters
    ----------
    scorecard : HealthScorecard, optional
        As in :func:`health_metrics`.
    period : timestamp-like, optional
        The period's start (default: the last scored period).
    **tables
        As in :func:`health_metrics`.

    Returns
    -------
    DataFrame
        The red rows of the scorecard, largest MRR first, then the lowest score, with
        score_change and trend (§14), and, with billing, the customer's next renewal within
        90 days: next_renewal (end) and renewal_mrr (MRR up for renewal).

    Examples
    --------
    >>> import pandas as pd, csmetrics
    >>> surveys = pd.DataFrame({"response_id": [1, 2], "customer_id": [1, 2], "survey": "nps", "score": [2, 9],
    ...     "responded_at": "2024-01-05"})
    >>> csmetrics.at_risk(surveys=surveys)["customer_id"].tolist()
    [1]
    """
    engine, window = _health_engine(tables)
    scores, _, periods = plans.health_scores(engine, scorecard or HealthScorecard(), **window)
    freq_tz = {k: window[k] for k in ("freq", "tz") if k in window}
    pending = {"risky": plans.at_risk(engine, scores, period=period, periods=periods, **freq_tz)}
    if engine.has("billing"):
        context = plans.billing_context(engine, as_of=plans.health_as_of(engine, window.get("as_of")))
        pending["renewals"] = plans.renewals(engine, context)
    done = resolve(engine, pending)
    return plans.with_next_renewal(done["risky"], done.get("renewals"))
