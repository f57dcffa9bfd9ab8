"""The report's families written once against an engine (:mod:`csmetrics.engine`).

Each function takes the engine and the global settings, builds the family's
context from ``engine.summary`` (the whole table on pandas, its extremes on Dask),
maps the family's ``partial`` over the buckets and returns a :class:`Pending`
whose ``finish`` combines and finalizes. Every partial is additive over disjoint
customer sets (property-tested per family), so any bucketing gives the same
frames; support's quantiles are computed exactly per (period, segment) cell
after regrouping the duration rows by cell.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from csmetrics.engine import Pending
from csmetrics.metrics._billing import KINDS

_QUANTILE_GROUPS = 16


def usable_by(by: Sequence[str], columns: Sequence[str], customers: pd.DataFrame | None, extra: Sequence[str] = ()) -> list[str]:
    """The ``by`` columns a family can split by: its table's, customer attributes, ``extra``."""
    return [c for c in by if c in columns or c in extra or (customers is not None and c in customers.columns)]


# --------------------------------------------------------------------------
# Billing: revenue + customers, value, cohorts, customer movements
# --------------------------------------------------------------------------
def billing_context(engine, *, by=(), customers=None, fx=None, freq="M", tz="UTC", as_of=None, start=None, end=None,
                    base_currency=None, policies=None):  # fmt: skip
    from csmetrics.metrics._billing import prepare

    _, context = prepare(engine.summary("billing", as_of), by=by, customers=customers, fx=fx, freq=freq, tz=tz,
                         as_of=as_of, start=start, end=end, base_currency=base_currency, validated=True, **(policies or {}))  # fmt: skip
    return context


def revenue(engine, context) -> Pending:
    """(revenue frame, customers frame)."""
    from csmetrics.metrics import customers as customers_family
    from csmetrics.metrics import revenue as revenue_family

    def finish(parts):
        summed = revenue_family.combine(parts, context)
        return revenue_family.finalize(summed, context), customers_family.finalize(summed, context)

    return Pending((engine.map(revenue_family.partial, engine.table("billing"), context=context),), finish)


def value(engine, context, *, costs=None, gross_margin=1.0, cost_roles=None, lifespan_months=None) -> Pending:
    from csmetrics.metrics import value as value_family

    monthly = value_family.monthly_context(engine.summary("billing", context.spine.as_of), context)

    def finish(parts):
        pieces = value_family.combine(parts, context, monthly)
        return value_family.finalize(pieces, context, monthly, costs=costs, gross_margin=gross_margin, cost_roles=cost_roles,
                                     lifespan_months=lifespan_months)  # fmt: skip

    return Pending((engine.map(value_family.partial, engine.table("billing"), context=context, monthly=monthly),), finish)


def cohorts(engine, context) -> Pending:
    from csmetrics.metrics.revenue import cohort_finalize, cohort_partial

    return Pending((engine.map(cohort_partial, engine.table("billing"), context=context),), lambda parts: cohort_finalize(parts, context))


# --------------------------------------------------------------------------
# Support, surveys, engagement
# --------------------------------------------------------------------------
def support(engine, *, by=(), customers=None, sla_targets=None, freq="M", tz="UTC", as_of=None, start=None, end=None) -> Pending:
    from csmetrics.metrics import support as family
    from csmetrics.metrics._common import combine

    _, context = family.prepare(engine.summary("tickets", as_of), by=by, customers=customers, sla_targets=sla_targets,
                                freq=freq, tz=tz, as_of=as_of, start=start, end=end, validated=True)  # fmt: skip
    tickets = engine.table("tickets")
    parts = engine.map(family.partial, tickets, context=context)
    # quantiles: duration rows with their segment values, regrouped so that each cell is whole in one group
    rows = engine.regroup(engine.map(_duration_rows, tickets, context=context), _cell_group, _QUANTILE_GROUPS)
    exact = engine.map(_cell_quantiles, rows, context=context)

    def finish(parts, exact):
        return family.finalize(combine(parts, context.by, family.PARTIAL_COLUMNS), pd.concat(exact, ignore_index=True), context)

    return Pending((parts, exact), finish)


def _duration_rows(tickets: pd.DataFrame, context) -> pd.DataFrame:
    from csmetrics.metrics.support import durations

    arrays, seg_table = durations(tickets, context)
    rows = pd.DataFrame(arrays)
    if seg_table is not None:
        for column in seg_table.columns:
            rows[column] = seg_table[column].take(rows["segment"].to_numpy()).reset_index(drop=True)
    return rows.drop(columns="segment")


def _cell_group(rows: pd.DataFrame) -> np.ndarray:
    keys = [c for c in rows.columns if c not in ("first_response_minutes", "resolution_hours")]
    return (pd.util.hash_pandas_object(rows[keys], index=False).to_numpy() % np.uint64(_QUANTILE_GROUPS)).astype(np.int64)


def _cell_quantiles(rows: pd.DataFrame, context) -> pd.DataFrame:
    from csmetrics.frame import encode_segments
    from csmetrics.metrics.support import exact_quantiles

    by = list(context.by)
    seg, seg_table = encode_segments(rows[by]) if by else (np.zeros(len(rows), dtype=np.int64), None)
    return exact_quantiles(rows.assign(segment=seg), seg_table, context.spine.n)


def surveys(engine, *, by=(), customers=None, csat_thresholds=None, freq="M", tz="UTC", as_of=None, start=None, end=None) -> Pending:
    from csmetrics.metrics import surveys as family
    from csmetrics.metrics._common import combine

    _, context = family.prepare(engine.summary("surveys", as_of), by=by, customers=customers, csat_thresholds=csat_thresholds,
                                freq=freq, tz=tz, as_of=as_of, start=start, end=end, validated=True)  # fmt: skip

    def finish(parts):
        return family.finalize(combine(parts, context.by, family.PARTIAL_COLUMNS), context)

    return Pending((engine.map(family.partial, engine.table("surveys"), context=context),), finish)


def followups(engine, *, fx=None, csat_thresholds=None, freq="M", tz="UTC", as_of=None, start=None, end=None) -> Pending:
    from csmetrics.metrics import surveys as family

    _, context = family.prepare(engine.summary("surveys", as_of), csat_thresholds=csat_thresholds, freq=freq, tz=tz,
                                as_of=as_of, start=start, end=end, validated=True)  # fmt: skip
    rows = engine.map(_followup_rows, engine.table("surveys"), engine.table("billing"), context=context, fx=fx)
    return Pending((rows,), lambda parts: family.sort_followups(pd.concat(parts, ignore_index=True)))


def _followup_rows(surveys, billing, context, fx):
    from csmetrics.metrics.surveys import followup_rows

    return followup_rows(surveys, context, billing=billing, fx=fx)


def engagement(engine, *, by=(), customers=None, fx=None, session_gap_minutes=30.0, freq="M", tz="UTC", as_of=None,
               start=None, end=None) -> Pending:  # fmt: skip
    from csmetrics.metrics import engagement as family
    from csmetrics.metrics._common import combine

    with_billing = engine.has("billing")
    _, _, context = family.prepare(engine.summary("events", as_of), billing=engine.summary("billing", as_of) if with_billing else None,
                                   fx=fx, by=by, customers=customers, session_gap_minutes=session_gap_minutes, freq=freq,
                                   tz=tz, as_of=as_of, start=start, end=end, validated=True)  # fmt: skip
    parts = engine.map(family.partial, engine.table("events"), engine.table("billing"), context=context)

    def finish(parts):
        main = combine([p[0] for p in parts], context.by, family.PARTIAL_COLUMNS)
        return family.finalize(main, pd.concat([p[1] for p in parts], ignore_index=True), context)

    return Pending((parts,), finish)


# --------------------------------------------------------------------------
# Health: rows per bucket, an exact global fit, then scores
# --------------------------------------------------------------------------
HEALTH_TABLES = ("events", "surveys", "tickets", "billing")


def health_scores(engine, card, *, fx=None, freq="M", tz="UTC", as_of=None, start=None, end=None, fit=True):
    """Fit ``card`` over all buckets (unless ``fit`` is False) and return the handle of the scored rows per bucket."""
    from csmetrics.metrics.health import health_spine, load_counts

    present = [name for name in HEALTH_TABLES if engine.has(name)]
    spine = health_spine(freq=freq, tz=tz, as_of=as_of, start=start, end=end,
                         **{name: engine.summary(name, as_of) for name in present})  # fmt: skip
    handles = [engine.table(name) for name in HEALTH_TABLES]  # None items for the absent ones
    rows = engine.persist(engine.map(_health_rows, *handles, card=card, spine=spine, fx=fx))
    if fit:
        (counts,) = engine.gather(engine.map(load_counts, rows))
        card.fit_loads(np.concatenate([c[0] for c in counts]), np.concatenate([c[1] for c in counts]))
    return engine.persist(engine.map(card.finish, rows))


def _health_rows(events, surveys, tickets, billing, card, spine, fx):
    from csmetrics.metrics.health import _Inputs

    tables = {"events": events, "surveys": surveys, "tickets": tickets, "billing": billing}
    return _Inputs.build(card, fx=fx, validated=True, spine=spine, freq=spine.freq, tz=spine.tz,
                         **{k: v for k, v in tables.items() if v is not None}).rows()  # fmt: skip


def health(engine, scores, card, *, by=(), customers=None, freq="M", tz="UTC") -> Pending:
    """(health metric frame, at-risk rows of the last scored period)."""
    from csmetrics.metrics.health import aggregate_finalize, aggregate_partial, red_by_mrr, scores_spine

    (periods,) = engine.gather(engine.map(_period_range, scores))
    spine = scores_spine([p for p in periods if len(p)], freq, tz)
    last = spine.starts[-1] if any(len(p) for p in periods) else None
    parts = engine.map(aggregate_partial, scores, spine=spine, by=by, customers=customers)
    red = engine.map(red_by_mrr, scores, period=last)

    def finish(parts, red):
        frame = aggregate_finalize(parts, spine, by=by)
        return frame, red_by_mrr(pd.concat([r for r in red if len(r)] or [red[0]], ignore_index=True), last)

    return Pending((parts, red), finish)


def _period_range(scores: pd.DataFrame) -> pd.Series:
    return scores["period"].iloc[[scores["period"].argmin(), scores["period"].argmax()]] if len(scores) else scores["period"]


# --------------------------------------------------------------------------
# Per customer and period rows (the report's customers.parquet)
# --------------------------------------------------------------------------
CUSTOMER_COLUMNS = ("customer_id", "period", "mrr", "score", "band", "components_used", "usage", "sentiment", "support",
                    "revenue", "weakest_component")  # fmt: skip
MOVEMENT_COLUMNS = tuple(f"{kind}_mrr" for kind in KINDS)


def customer_rows(engine, scores, context, n_groups: int) -> list:
    """Handle of the customer rows regrouped into ``n_groups`` consecutive period ranges, each sorted
    by (period, customer_id): written in group order they are the whole table's order."""
    rows = engine.map(_customer_rows, scores if scores is not None else [None] * engine.n, engine.table("billing"), context=context)
    spine = context.spine if context is not None else None
    return engine.map(_sorted, engine.regroup(rows, _PeriodRange(spine, n_groups), n_groups))


class _PeriodRange:
    """Group of a row: its period's position in consecutive ranges of the spine."""

    def __init__(self, spine, n_groups: int):
        self.spine, self.n_groups = spine, n_groups

    def __call__(self, rows: pd.DataFrame) -> np.ndarray:
        if self.spine is None or not len(rows):
            return np.zeros(len(rows), dtype=np.int64)
        from csmetrics.periods import period_codes

        index = np.clip(self.spine.index(period_codes(rows["period"], self.spine.freq, self.spine.tz)), 0, self.spine.n - 1)
        return (index * self.n_groups // self.spine.n).astype(np.int64)


def _sorted(rows: pd.DataFrame) -> pd.DataFrame:
    if len(rows):
        rows = rows.sort_values(["period", "customer_id"], kind="stable")
    return rows.reset_index(drop=True)


def _customer_rows(scores: pd.DataFrame | None, billing: pd.DataFrame | None, context) -> pd.DataFrame:
    """Per customer and period: MRR, movements by kind, health score and band."""
    from csmetrics.metrics.revenue import movements

    if billing is not None and len(billing):
        ledger = movements(billing, context)
        moves = ledger.pivot_table(index=["customer_id", "period"], columns="kind", values="amount", aggfunc="sum", observed=True)
        moves = moves.reindex(columns=list(KINDS)).fillna(0.0)
        moves.columns = list(MOVEMENT_COLUMNS)
        moves = moves.reset_index()
    else:
        moves = pd.DataFrame(columns=["customer_id", "period"])
    if scores is not None and len(scores):
        rows = scores[list(CUSTOMER_COLUMNS)].rename(columns={"score": "health_score", "band": "health_band"})
    else:
        rows = pd.DataFrame(columns=["customer_id", "period"])
    if len(moves):
        rows = rows.merge(moves, on=["customer_id", "period"], how="outer") if len(rows) else moves
        for column in MOVEMENT_COLUMNS:
            rows[column] = rows[column].fillna(0.0)
    return rows

