"""One plan per family, written once against an engine (:class:`csmetrics.engines.base.Engine`).

A plan takes an engine and the family's settings, builds the family's context from
``engine.summary`` (the whole table on pandas, its extremes on Dask), maps the family's
``partial`` over the buckets and returns a :class:`~csmetrics.engines.base.Pending` whose
``finish`` combines and finalizes. Every partial is additive over disjoint customer sets
(property-tested per family), so any bucketing gives the same frames; support's quantiles
are computed exactly per (period, segment) cell after regrouping the duration rows by cell
(with one bucket, straight from the arrays the partial made). The public functions
(:mod:`csmetrics.api`) and the report (:mod:`csmetrics.report`) both run these plans, so
they cannot drift apart. :data:`FAMILIES` names the metric-frame families.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from csmetrics.engines.base import Engine, Handle, Pending
from csmetrics.frame import dense_codes, encode_segments
from csmetrics.metrics import clv as clv_family
from csmetrics.metrics import customers as customers_family
from csmetrics.metrics import engagement as engagement_family
from csmetrics.metrics import revenue as revenue_family
from csmetrics.metrics import support as support_family
from csmetrics.metrics import surveys as surveys_family
from csmetrics.metrics import usage as usage_family
from csmetrics.metrics import value as value_family
from csmetrics.metrics._billing import KINDS, BillingContext
from csmetrics.metrics._billing import prepare as prepare_billing
from csmetrics.metrics._common import combine, user_order
from csmetrics.metrics.health import (
    Inputs,
    Scorecard,
    aggregate_finalize,
    aggregate_partial,
    health_spine,
    load_counts,
    red_by_mrr,
    scores_spine,
)
from csmetrics.periods import Spine, period_codes, to_utc
from csmetrics.sorting import order_by

__all__ = [
    "CUSTOMER_COLUMNS",
    "FAMILIES",
    "HEALTH_TABLES",
    "MOVEMENT_COLUMNS",
    "at_risk",
    "billing_context",
    "cohorts",
    "current_mrr",
    "customer_output",
    "customer_rows",
    "gather_scores",
    "engagement",
    "followups",
    "health",
    "health_as_of",
    "health_movers",
    "health_scores",
    "movements",
    "renewals",
    "revenue",
    "rfm",
    "survivors",
    "support",
    "stack",
    "surveys",
    "usable_by",
    "usage_retention",
    "active_days",
    "value",
    "with_next_renewal",
]

_QUANTILE_GROUPS = 16
HEALTH_TABLES = ("events", "surveys", "tickets", "billing")


def stack(parts: list, keep_index: bool = False) -> Any:
    """The buckets' frames in one: the non-empty ones (an empty bucket's columns may have other
    dtypes, e.g. object for text), or the first when all are empty."""
    full = [p for p in parts if p is not None and len(p)] or parts[:1]
    return pd.concat(full, ignore_index=not keep_index)


def usable_by(
    by: Sequence[str], columns: Sequence[str], customers: pd.DataFrame | None, extra: Sequence[str] = ()
) -> list[str]:
    """The ``by`` columns a family can split by: its table's, customer attributes, ``extra``."""
    return [c for c in by if c in columns or c in extra or (customers is not None and c in customers.columns)]


# --------------------------------------------------------------------------
# Billing: revenue + customers, value, cohorts, movements, current MRR
# --------------------------------------------------------------------------
def billing_context(
    engine: Engine,
    *,
    by: Sequence[str] | str | None = (),
    freq: str = "M",
    tz: str = "UTC",
    as_of: object = None,
    start: object = None,
    end: object = None,
    base_currency: str | None = None,
    policies: dict | None = None,
    reserved: Sequence[str] = (),
) -> BillingContext:
    """The billing context every bucket shares (periods, as_of, segments, fx, policies)."""
    _, context = prepare_billing(
        engine.summary("billing", as_of),
        by=by,
        customers=engine.small("customers"),
        fx=engine.small("fx"),
        freq=freq,
        tz=tz,
        as_of=as_of,
        start=start,
        end=end,
        base_currency=base_currency,
        reserved=reserved,
        **(policies or {}),
    )
    return context


def revenue(engine: Engine, context: BillingContext) -> Pending:
    """(revenue frame, customers frame): both families finalize the same partials."""

    def finish(parts: list) -> tuple[pd.DataFrame, pd.DataFrame]:
        summed = revenue_family.combine(parts, context)
        return revenue_family.finalize(summed, context), customers_family.finalize(summed, context)

    return Pending(
        (
            engine.map(
                revenue_family.partial,
                _rows_or_empty(engine, "billing", context.spine.as_of),
                context=context,
                memo=engine.memo,
            ),
        ),
        finish,
    )


def value(
    engine: Engine,
    context: BillingContext,
    *,
    gross_margin: float = 1.0,
    cost_roles: Any = None,
    lifespan_months: float | None = None,
) -> Pending:
    """The value frame (CLV and, with costs, CRC, CAC, LTV:CAC and CLV per capex)."""
    value_family.check_value_options(gross_margin, cost_roles, lifespan_months)
    monthly = value_family.monthly_context(engine.summary("billing", context.spine.as_of), context)
    costs = engine.small("costs")

    def finish(parts: list) -> pd.DataFrame:
        pieces = value_family.combine(parts, context, monthly)
        return value_family.finalize(
            pieces,
            context,
            monthly,
            costs=costs,
            gross_margin=gross_margin,
            cost_roles=cost_roles,
            lifespan_months=lifespan_months,
        )

    parts = engine.map(
        value_family.partial, engine.table("billing"), context=context, monthly=monthly, memo=engine.memo
    )
    return Pending((parts,), finish)


def cohorts(engine: Engine, context: BillingContext) -> Pending:
    """The cohort table (by the context's segments)."""
    parts = engine.map(revenue_family.cohort_partial, engine.table("billing"), context=context, memo=engine.memo)
    return Pending((parts,), lambda parts: revenue_family.cohort_finalize(parts, context))


def movements(engine: Engine, context: BillingContext) -> Pending:
    """The per-customer movement ledger, in one order on every engine."""
    parts = engine.map(revenue_family.movements, engine.table("billing"), context=context, memo=engine.memo)
    return Pending((parts,), lambda parts: revenue_family.sort_movements(stack(parts)))


def renewals(
    engine: Engine, context: BillingContext, *, horizon_days: float = 90.0, scores: Handle | None = None
) -> Pending:
    """The renewal calendar (§12): customer, end and MRR up for renewal, sorted by end, then MRR
    (largest first); with ``scores``, each customer's latest health score and band, and its latest
    NPS/CSAT answer when there are surveys; with customer-attribute segments, their values."""
    no_rows = [None] * engine.n
    parts = engine.map(
        _renewal_rows,
        engine.table("billing"),
        scores if scores is not None else no_rows,
        engine.table("surveys") if engine.has("surveys") and scores is not None else no_rows,
        context=context,
        horizon_days=horizon_days,
        memo=engine.memo,
    )

    def finish(parts: list) -> pd.DataFrame:
        frame = stack(parts)
        static = [c for c in context.by if c != "plan"]
        if static and context.customers is not None:
            attributes = context.customers[["customer_id", *static]].drop_duplicates("customer_id")
            frame = frame.merge(attributes, on="customer_id", how="left")
        frame = frame.sort_values(
            ["end", "mrr_up_for_renewal", "customer_id"], ascending=[True, False, True], kind="stable"
        )
        return frame.reset_index(drop=True)

    return Pending((parts,), finish)


def _renewal_rows(
    billing: pd.DataFrame | None,
    scores: pd.DataFrame | None,
    surveys: pd.DataFrame | None,
    context: BillingContext,
    horizon_days: float,
    memo: Any = None,
) -> pd.DataFrame:
    if billing is None or not len(billing):
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in revenue_family.RENEWAL_COLUMNS})
    rows = revenue_family.renewal_rows(billing, context, horizon_days, memo)
    if scores is not None:
        rows = rows.merge(latest_scores(scores), on="customer_id", how="left")
        rows = rows.merge(surveys_family.latest_answers(surveys, context.spine.as_of), on="customer_id", how="left")
    return rows


def latest_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Each customer's latest scored period: health_period, health_score, health_band."""
    if not len(scores):
        return pd.DataFrame(
            {
                "customer_id": pd.Series([], dtype=object),
                "health_period": pd.Series([], dtype="datetime64[ns, UTC]"),
                "health_score": pd.Series([], dtype=float),
                "health_band": pd.Series([], dtype="str"),
            }
        )
    # by period (a stable sort of scores already in period order is one pass), the last row of each customer
    order = np.argsort(np.asarray(scores["period"].array.asi8), kind="stable")
    customer = scores["customer_id"].array.take(order)
    rows = order[~pd.Series(customer).duplicated(keep="last").to_numpy()]
    latest = scores[["customer_id", "period", "score", "band"]].take(rows).sort_values("customer_id", kind="stable")
    return latest.rename(columns={"period": "health_period", "score": "health_score", "band": "health_band"})


def rfm(engine: Engine, context: BillingContext, unit: str) -> Pending:
    """The RFM summary (§13): one row per customer with purchases, sorted by customer_id."""
    parts = engine.map(clv_family.rfm_rows, engine.table("billing"), context=context, unit=unit, memo=engine.memo)

    def finish(parts: list) -> pd.DataFrame:
        frame = stack(parts).sort_values("customer_id", kind="stable").reset_index(drop=True)
        frame.attrs["unit"] = unit
        return frame

    return Pending((parts,), finish)


def survivors(engine: Engine, context: BillingContext) -> Pending:
    """Survivors per cohort and segment (§13), for the sBG fits."""
    parts = engine.map(clv_family.survivor_partial, engine.table("billing"), context=context, memo=engine.memo)
    return Pending((parts,), lambda parts: clv_family.survivor_finalize(parts, context))


def current_mrr(engine: Engine, context: BillingContext) -> Pending:
    """Each customer's MRR at the context's as_of, by customer_id."""
    parts = engine.map(revenue_family.current_mrr_of, engine.table("billing"), context=context, memo=engine.memo)
    return Pending((parts,), lambda parts: stack(parts, keep_index=True).sort_index(kind="stable"))


def event_users(engine: Engine) -> Handle:
    """The users of each events bucket (:func:`~csmetrics.metrics._common.user_order`): a report finds
    them once and gives them (``users=``) to engagement, usage retention and active days."""
    if not engine.has("events"):
        return [None] * engine.n
    return engine.map(user_order, engine.table("events", usage_family.EVENT_COLUMNS))


def _users_last(family: Callable, *items: Any, context: Any) -> Any:
    """``family(*tables, context, users)`` of one bucket (the handles' items: the tables, then the users)."""
    *tables, users = items
    return family(*tables, context, users)


def _with_users(engine: Engine, family: Callable, users: Handle | None, *handles: Handle, context: Any) -> Handle:
    """``family`` over the buckets of ``handles`` and their users (None: each call finds its own)."""
    return engine.map(functools.partial(_users_last, family), *handles, users or [None] * engine.n, context=context)


def usage_retention(
    engine: Engine,
    *,
    freq: str = "W",
    periods: int = 12,
    by: Sequence[str] | str | None = (),
    tz: str = "UTC",
    as_of: object = None,
    users: Handle | None = None,
) -> Pending:
    """N-period and unbounded usage retention per cohort of users (§15) (``users``: :func:`event_users`)."""
    context = usage_family.prepare(
        engine.summary("events", as_of),
        freq=freq,
        periods=periods,
        by=by,
        customers=engine.small("customers"),
        tz=tz,
        as_of=as_of,
    )
    events = engine.table("events", usage_family.EVENT_COLUMNS + tuple(context.by))
    parts = _with_users(engine, usage_family.retention_partial, users, events, context=context)
    return Pending((parts,), lambda parts: usage_family.retention_finalize(parts, context))


def active_days(
    engine: Engine, *, freq: str = "M", tz: str = "UTC", as_of: object = None, users: Handle | None = None
) -> Pending:
    """Per period: users by number of active days (the stickiness distribution, §15) (``users``: :func:`event_users`)."""
    context = usage_family.prepare(engine.summary("events", as_of), freq=freq, tz=tz, as_of=as_of)
    events = engine.table("events", usage_family.EVENT_COLUMNS)
    parts = _with_users(engine, usage_family.distribution_partial, users, events, context=context)
    return Pending((parts,), lambda parts: usage_family.distribution_finalize(parts, context))


# --------------------------------------------------------------------------
# Support, surveys, engagement
# --------------------------------------------------------------------------
def support(
    engine: Engine,
    *,
    by: Sequence[str] | str | None = (),
    sla_targets: Any = None,
    resolution_targets: Any = None,
    business_hours: Any = None,
    schedule_column: str | None = None,
    freq: str = "M",
    tz: str = "UTC",
    as_of: object = None,
    start: object = None,
    end: object = None,
) -> Pending:
    """The support frame; quantiles exact per cell (from the partial's arrays with one bucket)."""
    _, context = support_family.prepare(
        engine.summary("tickets", as_of),
        by=by,
        customers=engine.small("customers"),
        sla_targets=sla_targets,
        resolution_targets=resolution_targets,
        business_hours=business_hours,
        schedule_column=schedule_column,
        freq=freq,
        tz=tz,
        as_of=as_of,
        start=start,
        end=end,
    )
    tickets = _rows_or_empty(engine, "tickets", as_of)

    def finish(parts: list, exact: list) -> pd.DataFrame:
        # finalize spreads the partials on the grid with one bincount, which sums their shared cells
        summed = pd.concat([p[0] for p in parts if p[0] is not None], ignore_index=True)
        return support_family.finalize(
            summed, pd.concat([e for e in exact if e is not None], ignore_index=True), context
        )

    if engine.n == 1:  # the fast path: the quantiles from the arrays the partial already made
        parts = engine.map(_support_partial_and_quantiles, tickets, context=context)
        return Pending((parts,), lambda parts: finish(parts, [p[1] for p in parts]))
    whole = engine.whole("tickets")
    if whole is not None:  # in memory: no customer buckets, so no copies of the rows
        # the period and segment of every row once (the first call); then the sums over contiguous row
        # slices (additive over any split) beside the exact quantiles and the distinct customers over
        # shares of the periods (each cell whole in one share)
        arrays = engine.map(_ticket_arrays, whole, context=context)[0]
        n = engine.n
        edges = np.linspace(0, len(whole[0]), n + 1).astype(np.int64)
        bounds = [slice(int(edges[k]), int(edges[k + 1])) for k in range(n)]
        rows = engine.map(_support_slice, [whole[0]] * n, [arrays] * n, bounds, context=context)
        shares = engine.map(_support_share, [whole[0]] * n, [arrays] * n, list(range(n)), context=context, n=n)
        return Pending((rows + shares,), lambda parts: finish(parts, [p[1] for p in parts]))
    parts = engine.map(_support_partial, tickets, context=context)
    # quantiles: duration rows with their segment values, regrouped so that each cell is whole in one group
    rows = engine.regroup(engine.map(_duration_rows, tickets, context=context), _cell_group, _QUANTILE_GROUPS)
    exact = engine.map(_cell_quantiles, rows, context=context)
    return Pending((parts, exact), finish)


def _ticket_arrays(tickets: pd.DataFrame | None, context: Any) -> tuple | None:
    return None if tickets is None else support_family.ticket_arrays(tickets, context)


def _support_slice(tickets: pd.DataFrame, arrays: Any, rows: slice, context: Any) -> tuple:
    """The sums but the distinct customers over one contiguous slice of the rows."""
    part = support_family.slice_arrays(arrays, rows)
    return support_family.partial(tickets.iloc[rows], context, part, customers=False), None


def _support_share(tickets: pd.DataFrame, arrays: Any, share: int, context: Any, n: int) -> tuple:
    """The distinct customers and the exact quantiles of one share of the periods."""
    return support_family.share(tickets, context, arrays, (share, n))


def _support_partial(tickets: pd.DataFrame | None, context: Any) -> tuple[pd.DataFrame, None]:
    return support_family.partial(tickets, context), None


def _support_partial_and_quantiles(tickets: pd.DataFrame | None, context: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    arrays = support_family.ticket_arrays(tickets, context)
    return support_family.partial(tickets, context, arrays), support_family.quantiles(tickets, context, arrays)


def _duration_rows(tickets: pd.DataFrame | None, context: Any) -> pd.DataFrame:
    arrays, seg_table = support_family.durations(tickets, context)
    rows = pd.DataFrame(arrays)
    if seg_table is not None:
        for column in seg_table.columns:
            rows[column] = seg_table[column].take(rows["segment"].to_numpy()).reset_index(drop=True)
    return rows.drop(columns="segment")


def _cell_group(rows: pd.DataFrame) -> np.ndarray:
    """The quantile group of each duration row: by period, so each (period, segment) cell is whole in
    one group (an integer key: no hashing of the segment text)."""
    return rows["period_index"].to_numpy(dtype=np.int64) % _QUANTILE_GROUPS


def _cell_quantiles(rows: pd.DataFrame, context: Any) -> pd.DataFrame:
    by = list(context.by)
    seg, seg_table = encode_segments(rows[by]) if by else (np.zeros(len(rows), dtype=np.int64), None)
    return support_family.exact_quantiles(rows.assign(segment=seg), seg_table, context.spine.n)


def surveys(
    engine: Engine,
    *,
    by: Sequence[str] | str | None = (),
    csat_thresholds: Any = None,
    with_tickets: bool = False,
    freq: str = "M",
    tz: str = "UTC",
    as_of: object = None,
    start: object = None,
    end: object = None,
) -> Pending:
    """The survey frame; ``with_tickets``: a segment may be a column of the answer's ticket (§11)."""
    ticket_columns = list(engine.summary("tickets", as_of).columns) if with_tickets and engine.has("tickets") else []
    _, context = surveys_family.prepare(
        engine.summary("surveys", as_of),
        by=by,
        customers=engine.small("customers"),
        csat_thresholds=csat_thresholds,
        ticket_columns=ticket_columns,
        freq=freq,
        tz=tz,
        as_of=as_of,
        start=start,
        end=end,
    )

    def finish(parts: list) -> pd.DataFrame:
        # finalize spreads the partials on the grid with one bincount, which sums their shared cells
        return surveys_family.finalize(pd.concat(parts, ignore_index=True), context)

    if ticket_columns:  # an answer's ticket is in the same customer's bucket
        surveys = _rows_or_empty(engine, "surveys", as_of)
        parts = engine.map(_survey_partial, surveys, engine.table("tickets"), context=context)
    else:  # the sums are additive over any split of the rows
        surveys = _rows_or_empty(engine, "surveys", as_of, engine.slices)
        parts = engine.map(_survey_partial, surveys, [None] * engine.n, context=context)
    return Pending((parts,), finish)


def _rows_or_empty(engine: Engine, name: str, as_of: object, split: Callable[[str], Handle] | None = None) -> Handle:
    """The table's buckets (``split``: another split of its rows, e.g. ``engine.slices``); for a table
    given without rows, its empty frame in every bucket (the family's frame of zeros over as_of's
    period, not a None deep inside)."""
    if engine.holds(name) and not engine.has(name):
        return [engine.summary(name, as_of).iloc[:0]] * engine.n
    return (split or engine.table)(name)


def _survey_partial(surveys: pd.DataFrame, tickets: pd.DataFrame | None, context: Any) -> pd.DataFrame:
    return surveys_family.partial(surveys, context, tickets)


def followups(
    engine: Engine,
    *,
    csat_thresholds: Any = None,
    freq: str = "M",
    tz: str = "UTC",
    as_of: object = None,
    start: object = None,
    end: object = None,
    billing_context: BillingContext | None = None,
) -> Pending:
    """The follow-up list (unhappy answers with the customer's current MRR). ``billing_context``: the
    report's (its policies; the MRR read from the ledger its revenue families share)."""
    _, context = surveys_family.prepare(
        engine.summary("surveys", as_of),
        csat_thresholds=csat_thresholds,
        freq=freq,
        tz=tz,
        as_of=as_of,
        start=start,
        end=end,
    )
    rows = engine.map(
        _followup_rows,
        engine.table("surveys"),
        engine.table("billing"),
        context=context,
        fx=engine.small("fx"),
        billing_context=billing_context,
        memo=engine.memo,
    )
    return Pending((rows,), lambda parts: surveys_family.sort_followups(stack(parts)))


def _followup_rows(
    surveys: pd.DataFrame | None,
    billing: pd.DataFrame | None,
    context: Any,
    fx: pd.DataFrame | None,
    billing_context: BillingContext | None,
    memo: Any,
) -> pd.DataFrame:
    return surveys_family.followup_rows(
        surveys, context, billing=billing, fx=fx, billing_context=billing_context, memo=memo
    )


def engagement(
    engine: Engine,
    *,
    by: Sequence[str] | str | None = (),
    session_gap_minutes: float = 30.0,
    freq: str = "M",
    tz: str = "UTC",
    as_of: object = None,
    start: object = None,
    end: object = None,
    users: Handle | None = None,
) -> Pending:
    """The engagement frame (with billing: purchase frequency and value) (``users``: :func:`event_users`)."""
    billing = engine.summary("billing", as_of) if engine.has("billing") else None
    _, _, context = engagement_family.prepare(
        engine.summary("events", as_of),
        billing=billing,
        fx=engine.small("fx"),
        by=by,
        customers=engine.small("customers"),
        session_gap_minutes=session_gap_minutes,
        freq=freq,
        tz=tz,
        as_of=as_of,
        start=start,
        end=end,
    )
    events = _rows_or_empty(engine, "events", as_of)
    parts = _with_users(engine, engagement_family.partial, users, events, engine.table("billing"), context=context)

    def finish(parts: list) -> pd.DataFrame:
        main = combine([p[0] for p in parts], context.by, engagement_family.PARTIAL_COLUMNS)
        return engagement_family.finalize(main, pd.concat([p[1] for p in parts], ignore_index=True), context)

    return Pending((parts,), finish)


# --------------------------------------------------------------------------
# Health: rows per bucket, an exact global fit, then scores
# --------------------------------------------------------------------------
class Scored(NamedTuple):
    """:func:`health_scores`' result."""

    #: the scored rows per bucket
    handle: Handle
    #: the scorecard they were scored with
    card: Scorecard
    #: each bucket's first and last scored period (none: no rows), found with the fit from the
    #: component rows: the health families know their spine and last period without another pass
    periods: list[pd.Series]


def health_scores(
    engine: Engine,
    card: Scorecard,
    *,
    fit: bool = True,
    freq: str = "M",
    tz: str = "UTC",
    as_of: object = None,
    start: object = None,
    end: object = None,
    billing_context: BillingContext | None = None,
    persist: bool = True,
) -> Scored:
    """The scored rows per bucket, the scorecard they were scored with (``card`` itself when ``fit``
    is False, else a fitted copy: the caller's scorecard is never changed) and their period ranges.
    ``billing_context``: the report's (the MRR component from its revenue families' ledger).
    ``persist=False``: the scores are computed with the families that read them (on Dask in their
    graph, so each bucket's scores are made once, read by those families and freed, instead of held,
    and spilled, until the last of them has run; at large they are 20M rows of 17 columns)."""
    present = [name for name in HEALTH_TABLES if engine.has(name)] or [
        name for name in HEALTH_TABLES if engine.holds(name)
    ]
    spine = health_spine(
        freq=freq, tz=tz, as_of=as_of, start=start, end=end, **{name: engine.summary(name, as_of) for name in present}
    )
    # None items for the absent ones; of events and tickets, only the columns Inputs reads
    handles = [engine.table(name, HEALTH_COLUMNS.get(name)) for name in HEALTH_TABLES]
    rows = engine.persist(
        engine.map(
            _health_rows,
            *handles,
            card=card,
            spine=spine,
            fx=engine.small("fx"),
            memo=engine.memo,
            billing_context=billing_context,
        )
    )
    if fit:
        (facts,) = engine.gather(engine.map(_loads_and_periods, rows))
        card = copy.deepcopy(card).fit_loads(
            np.concatenate([f[0] for f in facts]), np.concatenate([f[1] for f in facts])
        )
        periods = [f[2] for f in facts]
    else:
        card.check_is_fitted()
        (periods,) = engine.gather(engine.map(_period_range, rows))
    scores = engine.map(card.finish, rows, spine=spine)  # Scorecard.finish keeps every row: same periods
    return Scored(engine.persist(scores) if persist else scores, card, periods)


def _loads_and_periods(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """A bucket's facts for the fit (:func:`load_counts`) and its period range, in one pass."""
    return (*load_counts(rows), _period_range(rows))


#: The columns of the big tables that :class:`Inputs` reads (the others: all)
HEALTH_COLUMNS = {
    "events": ("customer_id", "timestamp"),
    "tickets": ("customer_id", "created_at", "resolved_at", "abandoned"),
}


def _health_rows(
    events: Any,
    surveys: Any,
    tickets: Any,
    billing: Any,
    card: Scorecard,
    spine: Spine,
    fx: Any,
    memo: Any = None,
    billing_context: BillingContext | None = None,
) -> pd.DataFrame:
    tables = {"events": events, "surveys": surveys, "tickets": tickets, "billing": billing}
    return Inputs.build(
        card,
        fx=fx,
        spine=spine,
        freq=spine.freq,
        tz=spine.tz,
        memo=memo,
        billing_context=billing_context,
        **{k: v for k, v in tables.items() if v is not None},
    ).rows()


def gather_scores(engine: Engine, scores: Handle) -> Pending:
    """The scored rows of every bucket in one frame, ordered by (period, customer_id)."""

    def finish(parts: list) -> pd.DataFrame:
        frame = stack(parts)
        return frame.sort_values(["period", "customer_id"], kind="stable").reset_index(drop=True)

    return Pending((scores,), finish)


def health(
    engine: Engine,
    scores: Handle,
    *,
    by: Sequence[str] | str | None = (),
    freq: str = "M",
    tz: str = "UTC",
    periods: list[pd.Series] | None = None,
) -> Pending:
    """(health metric frame, at-risk rows of the last scored period); ``periods``: the buckets'
    period ranges (:class:`Scored`), else found from the scores."""
    by = [by] if isinstance(by, str) else list(by or ())
    customers = engine.small("customers")
    periods = _period_ranges(engine, scores, periods)
    spine = scores_spine([p for p in periods if len(p)], freq, tz)
    last = spine.starts[-1] if any(len(p) for p in periods) else None
    parts = engine.map(aggregate_partial, scores, spine=spine, by=by, customers=customers)
    red = engine.map(red_by_mrr, scores, period=last)

    def finish(parts: list, red: list) -> tuple[pd.DataFrame, pd.DataFrame]:
        frame = aggregate_finalize(parts, spine, by=by)
        return frame, red_by_mrr(pd.concat([r for r in red if len(r)] or [red[0]], ignore_index=True), last)

    return Pending((parts, red), finish)


def at_risk(
    engine: Engine,
    scores: Handle,
    *,
    period: object = None,
    freq: str = "M",
    tz: str = "UTC",
    periods: list[pd.Series] | None = None,
) -> Pending:
    """The red customers of a period (default: the last scored one) by MRR."""
    if period is None:
        pending = health(engine, scores, freq=freq, tz=tz, periods=periods)
        return Pending(pending.handles, lambda *parts: pending.finish(*parts)[1])
    red = engine.map(red_by_mrr, scores, period=period)
    return Pending((red,), lambda parts: red_by_mrr(stack(parts), period))


def health_movers(
    engine: Engine, scores: Handle, *, limit: int = 25, periods: list[pd.Series] | None = None
) -> Pending:
    """Customers of the last scored period that became red, then the largest score drops (§14):
    at most ``limit`` rows, newly red first, each group by score_change (largest drop first)."""
    periods = _period_ranges(engine, scores, periods)
    last = max((p.max() for p in periods if len(p)), default=None)
    parts = engine.map(_movers, scores, period=last, limit=limit)
    return Pending((parts,), lambda parts: _movers(stack(parts), last, limit))


def _movers(scores: pd.DataFrame, period: Any, limit: int) -> pd.DataFrame:
    if period is None or not len(scores):
        return scores.iloc[:0]
    # as the at-risk list: a customer with MRR 0 at the period end is gone, not moving
    rows = scores[(scores["period"] == period) & scores["score_change"].notna() & ~(scores["mrr"] == 0)]
    newly_red = rows["band_change"].str.endswith("->red").fillna(False) & (rows["band"] == "red")
    dropped = rows["score_change"] < 0
    picked = rows[newly_red | dropped].assign(newly_red=newly_red[newly_red | dropped])
    picked = picked.sort_values(
        ["newly_red", "score_change", "customer_id"], ascending=[False, True, True], kind="stable"
    )
    return picked.head(limit).reset_index(drop=True)


def with_next_renewal(risky: pd.DataFrame, calendar: pd.DataFrame | None) -> pd.DataFrame:
    """The at-risk rows with each customer's next renewal in the calendar's horizon (§14):
    next_renewal (its end) and renewal_mrr (MRR up for renewal then); null where none."""
    out = risky.copy()
    if calendar is None or not len(calendar) or not len(out):
        out["next_renewal"] = pd.Series(pd.NaT, index=out.index, dtype="datetime64[ns, UTC]")
        out["renewal_mrr"] = np.nan
        return out
    first = calendar.sort_values(["customer_id", "end"], kind="stable").drop_duplicates("customer_id")
    first = first[["customer_id", "end", "mrr_up_for_renewal"]].rename(
        columns={"end": "next_renewal", "mrr_up_for_renewal": "renewal_mrr"}
    )
    return out.merge(first, on="customer_id", how="left")


def health_as_of(engine: Engine, as_of: object = None) -> pd.Timestamp:
    """The as_of of the health family: the given one, else the latest timestamp of its tables."""
    if as_of is not None:
        return to_utc(as_of, "as_of")
    latest = max(engine.latest(name) for name in HEALTH_TABLES)
    return pd.Timestamp(latest, tz="UTC")


def _period_ranges(engine: Engine, scores: Handle, periods: list[pd.Series] | None) -> list[pd.Series]:
    if periods is not None:
        return periods
    (found,) = engine.gather(engine.map(_period_range, scores))
    return found


def _period_range(scores: pd.DataFrame) -> pd.Series:
    return (
        scores["period"].iloc[[scores["period"].argmin(), scores["period"].argmax()]]
        if len(scores)
        else scores["period"]
    )


# --------------------------------------------------------------------------
# Per customer and period rows (the report's customers.parquet)
# --------------------------------------------------------------------------
CUSTOMER_COLUMNS = (
    "customer_id",
    "period",
    "mrr",
    "score",
    "band",
    "components_used",
    "usage",
    "sentiment",
    "support",
    "revenue",
    "weakest_component",
    "score_change",
    "band_change",
    "trend",
)
MOVEMENT_COLUMNS = tuple(f"{kind}_mrr" for kind in KINDS)


def customer_rows(engine: Engine, scores: Handle | None, context: BillingContext | None) -> Handle:
    """The handle of each bucket's customers.parquet rows (started now on an engine that runs
    calls in the background, so the report's serial steps overlap them)."""
    return engine.map(
        _customer_rows,
        scores if scores is not None else [None] * engine.n,
        engine.table("billing"),
        context=context,
        memo=engine.memo,
    )


def customer_output(engine: Engine, rows: Handle, context: BillingContext | None, n_groups: int) -> Any:
    """customers.parquet's rows ordered by (period, customer_id): the engine's output of the buckets'
    rows (a frame, or parts of ``n_groups`` consecutive period ranges streamed when written)."""
    spine = context.spine if context is not None else None
    return engine.customer_output(rows, _PeriodRange(spine, n_groups), _sorted, n_groups)


class _PeriodRange:
    """Group of a row: its period's position in consecutive ranges of the spine."""

    def __init__(self, spine: Spine | None, n_groups: int):
        self.spine, self.n_groups = spine, n_groups

    def __call__(self, rows: pd.DataFrame) -> np.ndarray:
        if self.spine is None or not len(rows):
            return np.zeros(len(rows), dtype=np.int64)
        index = np.clip(
            self.spine.index(period_codes(rows["period"], self.spine.freq, self.spine.tz)), 0, self.spine.n - 1
        )
        return (index * self.n_groups // self.spine.n).astype(np.int64)


def _sorted(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows by (period, customer_id); rows in order already (one bucket's) are not copied. Rows
    of several buckets, each in order, are merged by one stable sort (its runs are found whole)."""
    if len(rows) > 1:
        key = _period_customer_key(rows["period"], rows["customer_id"])
        if not (key[1:] >= key[:-1]).all():
            rows = rows.take(np.argsort(key, kind="stable"))
    return rows.reset_index(drop=True)


def _period_customer_key(period: pd.Series, customer: Any) -> np.ndarray:
    """An int64 key ascending with (period, customer_id)."""
    stamps = np.asarray(period.array.asi8 if hasattr(period, "array") else period, dtype=np.int64)
    distinct = np.sort(pd.unique(stamps))
    codes, width = dense_codes(customer, ordered=True)
    return np.searchsorted(distinct, stamps).astype(np.int64) * width + codes


def _customer_rows(
    scores: pd.DataFrame | None, billing: pd.DataFrame | None, context: BillingContext | None, memo: Any = None
) -> list[pd.DataFrame]:
    """Per customer and period: MRR, health score and band (the scored rows), movements by kind (the
    cells with one); an outer join built from positions, as parts the engine merges in (period,
    customer_id) order: the scored rows themselves (not copied) with their cells' movements, then the
    movement-only rows (a customer churned at a period's first instant is not scored in it)."""
    if scores is not None and len(scores):
        scores = scores[list(CUSTOMER_COLUMNS)].rename(columns={"score": "health_score", "band": "health_band"})
    else:
        scores = None
    nothing = pd.DataFrame(columns=["customer_id", "period"])
    if billing is None or not len(billing) or context is None:
        return [scores if scores is not None else nothing]
    ids, period, sums = revenue_family.movement_cells(billing, context, memo)
    if not len(ids):
        return [scores if scores is not None else nothing]
    moves = pd.DataFrame({"customer_id": ids, "period": context.spine.starts[period]})
    if scores is None:
        return [moves.assign(**{f"{kind}_mrr": amounts for kind, amounts in sums.items()})]
    n_scores = len(scores)
    both = pd.concat([scores[["customer_id", "period"]], moves], ignore_index=True)
    key = _period_customer_key(both["period"], both["customer_id"])
    del both
    score_key, move_key = key[:n_scores], key[n_scores:]
    # the scored rows come in (period, customer_id) order (Scorecard.finish): a binary search each
    ranked = None if (score_key[1:] > score_key[:-1]).all() else np.argsort(score_key, kind="stable")
    needles = order_by(move_key)  # the cells come by customer: ascending needles search in one pass
    found = np.empty(len(move_key), dtype=np.int64)
    found[needles] = np.searchsorted(score_key if ranked is None else score_key[ranked], move_key[needles])
    found = np.minimum(found, n_scores - 1)
    row = found if ranked is None else ranked[found]
    matched = score_key[row] == move_key
    head = scores.copy(deep=False)
    for kind, amounts in sums.items():
        column = np.zeros(n_scores)
        column[row[matched]] = amounts[matched]
        head[f"{kind}_mrr"] = column
    alone = np.flatnonzero(~matched)
    if not len(alone):
        return [head]
    tail = moves.take(alone).reset_index(drop=True)
    missing = np.full(len(alone), -1)
    for column in scores.columns.drop(["customer_id", "period"]):
        tail[column] = pd.api.extensions.take(scores[column].array, missing, allow_fill=True)
    for kind, amounts in sums.items():
        tail[f"{kind}_mrr"] = amounts[alone]
    return [head, tail]


#: Every family's plan by name (the billing plans take a :func:`billing_context`, the health plans scored rows).
FAMILIES: dict[str, Callable[..., Any]] = {
    "revenue": revenue,
    "value": value,
    "cohorts": cohorts,
    "movements": movements,
    "current_mrr": current_mrr,
    "support": support,
    "surveys": surveys,
    "followups": followups,
    "engagement": engagement,
    "health_scores": health_scores,
    "health": health,
    "at_risk": at_risk,
    "customer_rows": customer_rows,
}
