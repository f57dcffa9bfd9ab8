"""The MRR engine shared by the revenue and customer families (METRICS.md §4-5).

From recurring lines it builds each customer's MRR step function, vectorized:

1. every recurring line gives a +monthly step at service_start and, if it ends
   at or before as_of, a -monthly step at service_end (later ends are unknown);
2. one sort by (customer, instant); steps at the same instant are netted;
3. a cumulative sum inside each customer block gives MRR before/after each
   instant (floored at 0: a discount cannot make revenue negative); each
   non-zero change is classified new / reactivation / expansion / contraction /
   churn;
4. instants are grouped per (customer, period). A group knows the MRR before its
   first and after its last instant, its movements, and the customer's segment
   at the period end. Between two groups a customer's MRR is constant, so stock
   metrics (MRR, customers at start and end) are range additions over periods,
   done with one difference array and a cumulative sum.

Money is carried in integer units of 1e-4 of the base currency (``MONEY_SCALE``)
so that the MRR bridge holds exactly and "back to zero" is exact; sums stay exact
in float64 bincounts up to 9e11 of MRR per period and segment.

Each family is ``partial`` (sums per period index and segment, from any subset
of customers) plus ``finalize`` (rates and the metric frame from the summed
partials); :class:`BillingContext` holds what must be global (spine, as_of, fx).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from csmetrics.frame import attach_segments
from csmetrics.periods import Spine, local_ns, make_spine, period_codes, resolve_as_of, to_utc
from csmetrics.validate import resolve_base_currency, validate

MONEY_SCALE = 10_000
DAYS_PER_MONTH = 30.4375
KINDS = ("new", "reactivation", "expansion", "contraction", "churn")
NEW, REACTIVATION, EXPANSION, CONTRACTION, CHURN, NONE = range(6)
_NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class Policies:
    """Conventions where analysts differ (METRICS.md §4-5)."""

    count_new_churn: bool = True
    renewal_grace_days: float = 0.0
    repeat_window_days: float = 35.0

    @classmethod
    def from_kwargs(cls, kwargs: dict) -> Policies:
        unknown = set(kwargs) - set(cls.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown policy {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**kwargs)


@dataclass(frozen=True)
class BillingContext:
    """What every partition must share: periods, as_of, segments, fx, policies."""

    spine: Spine
    by: tuple[str, ...]
    policies: Policies
    fx: pd.DataFrame | None = None
    base_currency: str | None = None
    customers: pd.DataFrame | None = field(default=None, repr=False)


def prepare(
    billing: pd.DataFrame,
    *,
    freq: str = "M",
    by: Sequence[str] | str | None = None,
    customers: pd.DataFrame | None = None,
    fx: pd.DataFrame | None = None,
    tz: str = "UTC",
    as_of: object = None,
    start: object = None,
    end: object = None,
    base_currency: str | None = None,
    validated: bool = False,
    **policies,
) -> tuple[pd.DataFrame, BillingContext]:
    """Validate billing and build the context (spine, as_of) from the whole table."""
    by = (by,) if isinstance(by, str) else tuple(by or ())
    if not validated:
        if fx is not None:
            fx = validate(fx, "fx")
        if customers is not None:
            customers = validate(customers, "customers")
        billing = validate(billing, "billing", fx=fx, base_currency=base_currency)
    missing = [c for c in ("service_start", "service_end", "invoiced_at") if c not in billing]
    if missing:
        billing = billing.assign(**{c: pd.Series(pd.NaT, index=billing.index, dtype="datetime64[ns, UTC]") for c in missing})
    starts = billing["service_start"] if "service_start" in billing else None
    invoiced = billing["invoiced_at"] if "invoiced_at" in billing else None
    as_of_ts = resolve_as_of(as_of, starts, invoiced)
    codes = [period_codes(c[c <= as_of_ts], freq, tz) for c in (starts, invoiced) if c is not None]
    if "service_end" in billing:
        ends = billing["service_end"]
        codes.append(period_codes(ends[ends <= as_of_ts], freq, tz))
    # subscriptions are data up to as_of: the spine runs through as_of's period
    codes.append(period_codes(pd.DatetimeIndex([as_of_ts]), freq, tz))
    data_codes = np.concatenate(codes)
    spine = make_spine(data_codes, freq, tz, as_of_ts, start, end)
    if fx is not None and "currency" in billing:
        base_currency = resolve_base_currency(set(billing["currency"].dropna().unique()), set(fx["currency"]), base_currency)
    context = BillingContext(spine, by, Policies.from_kwargs(policies), fx, base_currency, customers)
    return billing, context


# --------------------------------------------------------------------------
# Amounts
# --------------------------------------------------------------------------
def monthly_amount(amount: np.ndarray, start: pd.Series, end: pd.Series, tz: str = "UTC") -> np.ndarray:
    """METRICS.md §4: amount / k for exactly k calendar months, else amount * 30.4375 / days.

    "Exactly k calendar months" follows calendar arithmetic with the day clamped
    to the month's length (Jan 31 + 1 month = Feb 29 in 2024), time of day
    included, on the timestamps as given (UTC): in a report time zone with
    daylight saving, a midnight-to-midnight month would otherwise gain or lose
    an hour and fall back to the day count.
    """
    start_ns = local_ns(start, tz)
    end_ns = local_ns(end, tz)
    start_day = start_ns.astype("M8[ns]").astype("M8[D]")
    end_day = end_ns.astype("M8[ns]").astype("M8[D]")
    start_month = start_day.astype("M8[M]")
    end_month = end_day.astype("M8[M]")
    k = (end_month - start_month).astype(np.int64)
    day_of_month = (start_day - start_month.astype("M8[D]")).astype(np.int64)
    target_month_days = ((end_month + 1).astype("M8[D]") - end_month.astype("M8[D]")).astype(np.int64)
    expected_day = end_month.astype("M8[D]") + np.minimum(day_of_month, target_month_days - 1)
    same_time = (start_ns - start_day.astype("M8[ns]").astype(np.int64)) == (end_ns - end_day.astype("M8[ns]").astype(np.int64))
    whole = (k >= 1) & (end_day == expected_day) & same_time
    days = (end_ns - start_ns) / _NS_PER_DAY
    with np.errstate(divide="ignore", invalid="ignore"):
        by_month = amount / np.where(k >= 1, k, 1)
        by_day = amount * DAYS_PER_MONTH / days
    return np.where(whole, by_month, by_day)


def to_base_currency(
    amount: np.ndarray, currency: pd.Series | None, at: pd.Series, fx: pd.DataFrame | None, base: str | None
) -> np.ndarray:
    """Convert with the latest fx rate on or before ``at`` (the first rate if none is earlier)."""
    if currency is None or fx is None:
        return amount
    rows = pd.DataFrame(
        {"currency": currency.astype("str").reset_index(drop=True), "at": at.reset_index(drop=True), "pos": np.arange(len(at))}
    )
    rates = fx.sort_values("date")[["currency", "date", "rate"]].rename(columns={"date": "at"})
    rates["currency"] = rates["currency"].astype("str")
    known = rows["at"].notna() & rows["currency"].isin(set(rates["currency"]))
    query = rows[known].sort_values("at", kind="stable")
    back = pd.merge_asof(query, rates, on="at", by="currency", direction="backward")
    first = rates.groupby("currency", sort=False)["rate"].first()
    rate_of = back.set_index("pos")["rate"]
    rate_of = rate_of.fillna(query.set_index("pos")["currency"].map(first))
    rate = np.ones(len(amount))
    rate[rate_of.index.to_numpy()] = rate_of.to_numpy()
    unknown = rows["currency"].notna() & ~rows["currency"].isin(set(rates["currency"]) | {base})
    if unknown.any():
        raise ValueError(f"billing: currency {sorted(set(rows['currency'][unknown]))} has no fx rate")
    return amount * rate


# --------------------------------------------------------------------------
# The ledger: one row per (customer, instant) where something starts or ends
# --------------------------------------------------------------------------
@dataclass
class Ledger:
    customer: np.ndarray  # int codes into ``customer_ids``
    instant: np.ndarray  # UTC ns
    before: np.ndarray  # MRR before, money units, floored at 0
    after: np.ndarray
    kind: np.ndarray  # movement kind code (NONE where no change)
    plan: np.ndarray  # plan code in force after the instant (-1: none)
    period: np.ndarray  # spine index


@dataclass
class CustomerCodes:
    """Integer codes of every billing row's customer and plan, made once per run."""

    customer: np.ndarray
    customer_ids: np.ndarray
    plan: np.ndarray  # -1 where no plan
    plans: np.ndarray

    @classmethod
    def of(cls, billing: pd.DataFrame) -> CustomerCodes:
        customer, customer_ids = pd.factorize(billing["customer_id"], sort=False)
        if "plan" in billing:
            plan, plans = pd.factorize(billing["plan"], sort=True)
        else:
            plan, plans = np.full(len(billing), -1), np.array([], dtype=object)
        return cls(customer.astype(np.int64), np.asarray(customer_ids), plan.astype(np.int64), np.asarray(plans, dtype=object))


def _sort_key(customer: np.ndarray, instant: np.ndarray) -> np.ndarray:
    """An order by (customer, instant): one argsort of a combined int64 key where it fits."""
    if len(instant) == 0:
        return np.arange(0)
    t0 = instant.min()
    rel = instant - t0
    for unit in (_NS_PER_DAY, 10**9, 1):
        if (rel % unit == 0).all():
            rank = rel // unit
            break
    span = int(rank.max()) + 1
    if int(customer.max() + 1) * span < 2**62:
        return np.argsort(customer.astype(np.int64) * span + rank, kind="stable")
    return np.lexsort((instant, customer))


def build_ledger(billing: pd.DataFrame, context: BillingContext, codes: CustomerCodes) -> Ledger:
    """Net MRR steps per customer and instant, classified into movements."""
    spine, as_of = context.spine, context.spine.as_of.value
    is_recurring = billing["kind"].to_numpy() == "recurring"
    start_all = local_ns(billing["service_start"])
    keep = is_recurring & (start_all <= as_of) & (start_all != np.iinfo(np.int64).min)
    recurring = billing[keep]
    customer_codes = codes.customer[keep]
    plan_codes = codes.plan[keep]
    amount = recurring["amount"].to_numpy(dtype=float)
    amount = to_base_currency(
        amount, recurring.get("currency"), recurring["service_start"], context.fx, context.base_currency
    )
    monthly = monthly_amount(amount, recurring["service_start"], recurring["service_end"])
    step = np.rint(monthly * MONEY_SCALE).astype(np.int64)
    start_ns = local_ns(recurring["service_start"])
    end_ns = local_ns(recurring["service_end"])
    ends = end_ns <= as_of  # an end after as_of is not known yet

    customer = np.concatenate([customer_codes, customer_codes[ends]]).astype(np.int64)
    instant = np.concatenate([start_ns, end_ns[ends]])
    delta = np.concatenate([step, -step[ends]])
    # a positive line's start sets the customer's plan (the largest line at that instant wins)
    plan_step = np.concatenate([np.where(step > 0, plan_codes, -1), np.full(ends.sum(), -1)])
    order = _sort_key(customer, instant)
    customer, instant, delta, plan_step = customer[order], instant[order], delta[order], plan_step[order]

    n = len(customer)
    boundary = np.ones(n, dtype=bool)
    if n:
        boundary[1:] = (customer[1:] != customer[:-1]) | (instant[1:] != instant[:-1])
    first = np.flatnonzero(boundary)
    group = np.cumsum(boundary) - 1
    net = np.add.reduceat(delta, first) if n else delta
    candidate = np.where(plan_step >= 0, delta, np.iinfo(np.int64).min)
    best = np.maximum.reduceat(candidate, first) if n else candidate
    chosen = (plan_step >= 0) & (candidate == best[group])
    plan = np.full(len(first), -1, dtype=np.int64)
    plan[group[chosen]] = plan_step[chosen]

    customer, instant = customer[first], instant[first]
    block_start = _block_starts(customer)
    raw_after = _cumsum_in_blocks(net, block_start)
    after = np.maximum(raw_after, 0)
    before = np.maximum(raw_after - net, 0)
    plan = _ffill_in_blocks(plan, block_start)

    positive = after > 0
    seen_positive = _cumsum_in_blocks(positive.astype(np.int64), block_start) - positive > 0
    kind = np.full(len(after), NONE, dtype=np.int8)
    kind[(before == 0) & (after > 0)] = REACTIVATION
    kind[(before == 0) & (after > 0) & ~seen_positive] = NEW
    kind[(before > 0) & (after == 0)] = CHURN
    kind[(before > 0) & (after > before)] = EXPANSION
    kind[(after > 0) & (after < before)] = CONTRACTION
    period = spine.index(period_codes(instant, spine.freq, spine.tz))
    return Ledger(customer, instant, before, after, kind, plan, period)


def _block_starts(customer: np.ndarray) -> np.ndarray:
    """Index of the first row of each row's customer block (rows sorted by customer)."""
    n = len(customer)
    starts = np.zeros(n, dtype=np.int64)
    if n:
        new = np.ones(n, dtype=bool)
        new[1:] = customer[1:] != customer[:-1]
        starts = np.maximum.accumulate(np.where(new, np.arange(n), 0))
    return starts


def _cumsum_in_blocks(values: np.ndarray, block_start: np.ndarray) -> np.ndarray:
    total = np.cumsum(values)
    offset = np.concatenate([[0], total])[block_start]
    return total - offset


def _ffill_in_blocks(codes: np.ndarray, block_start: np.ndarray) -> np.ndarray:
    """Carry the last code >= 0 forward inside each block."""
    n = len(codes)
    last = np.maximum.accumulate(np.where(codes >= 0, np.arange(n), -1)) if n else codes
    valid = last >= block_start
    return np.where(valid, codes[np.maximum(last, 0)], -1)


# --------------------------------------------------------------------------
# Customer-period groups and segments
# --------------------------------------------------------------------------
@dataclass
class Groups:
    """One row per (customer, period) with at least one ledger instant."""

    customer: np.ndarray
    period: np.ndarray
    next_period: np.ndarray  # the customer's next group period, or spine.n
    start_mrr: np.ndarray  # money units before the first instant
    end_mrr: np.ndarray  # after the last instant
    movement: np.ndarray  # (groups, 5) sums of |change| per kind, money units
    count: np.ndarray  # (groups, 5) number of movements per kind
    plan: np.ndarray  # plan code at the period end
    segment: np.ndarray  # segment code (filled by assign_segments)


def build_groups(ledger: Ledger, n_periods: int) -> Groups:
    n = len(ledger.customer)
    new_group = np.ones(n, dtype=bool)
    if n:
        new_group[1:] = (ledger.customer[1:] != ledger.customer[:-1]) | (ledger.period[1:] != ledger.period[:-1])
    first = np.flatnonzero(new_group)
    last = np.concatenate([first[1:] - 1, [n - 1]]) if n else first
    gid = np.cumsum(new_group) - 1
    n_groups = len(first)
    change = np.abs(ledger.after - ledger.before)
    cell = gid * 6 + ledger.kind
    movement = np.bincount(cell, weights=change, minlength=n_groups * 6).reshape(n_groups, 6)[:, :5]
    count = np.bincount(cell, minlength=n_groups * 6).reshape(n_groups, 6)[:, :5]
    customer = ledger.customer[first]
    period = ledger.period[first]
    same_next = np.zeros(n_groups, dtype=bool)
    same_next[:-1] = customer[1:] == customer[:-1]
    next_period = np.where(same_next, np.roll(period, -1), n_periods)
    return Groups(
        customer=customer,
        period=period,
        next_period=next_period,
        start_mrr=ledger.before[first],
        end_mrr=ledger.after[last],
        movement=np.rint(movement).astype(np.int64),
        count=count.astype(np.int64),
        plan=ledger.plan[last],
        segment=np.zeros(n_groups, dtype=np.int64),
    )


def segment_frame(
    customer_ids: np.ndarray, plan_names: np.ndarray, customer: np.ndarray, plan: np.ndarray, context: BillingContext
) -> pd.DataFrame:
    """The ``by`` values for rows given by customer code and plan code."""
    columns = {}
    static = [c for c in context.by if c != "plan"]
    if static:
        keys = pd.DataFrame({"customer_id": customer_ids[customer]})
        if context.customers is None:
            raise KeyError(f"segment columns {static} need the customers table")
        joined = attach_segments(keys, static, context.customers, "billing")
        columns.update({c: joined[c].to_numpy() for c in static})
    if "plan" in context.by:
        names = np.asarray(plan_names, dtype=object)
        columns["plan"] = np.where(plan >= 0, names[np.maximum(plan, 0)] if len(names) else None, None)
    return pd.DataFrame({c: columns[c] for c in context.by}, index=pd.RangeIndex(len(customer)))


# --------------------------------------------------------------------------
# Range and point additions over the (period, segment) grid
# --------------------------------------------------------------------------
def range_add(start: np.ndarray, stop: np.ndarray, segment: np.ndarray, values: np.ndarray, n_periods: int, n_segments: int) -> np.ndarray:
    """Sum ``values`` over periods start..stop-1 (clipped to the spine) per segment."""
    start = np.clip(start, 0, n_periods)
    stop = np.clip(stop, 0, n_periods)
    keep = stop > start
    size = (n_periods + 1) * n_segments
    diff = np.bincount(start[keep] * n_segments + segment[keep], weights=values[keep], minlength=size)
    diff -= np.bincount(stop[keep] * n_segments + segment[keep], weights=values[keep], minlength=size)
    return np.cumsum(diff.reshape(n_periods + 1, n_segments), axis=0)[:n_periods]


def point_add(period: np.ndarray, segment: np.ndarray, values: np.ndarray, n_periods: int, n_segments: int) -> np.ndarray:
    """Sum ``values`` at their period (rows outside the spine are ignored)."""
    keep = (period >= 0) & (period < n_periods)
    cells = np.bincount(period[keep] * n_segments + segment[keep], weights=values[keep], minlength=n_periods * n_segments)
    return cells.reshape(n_periods, n_segments)


def as_of_instant(value: object) -> pd.Timestamp:
    return to_utc(value)
