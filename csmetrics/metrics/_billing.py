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

The input is turned once into :class:`BillingArrays` (integer codes, int64
instants, amounts in the base currency); everything after works on numpy arrays.
Segments are integer codes too (mixed radix over the ``by`` columns); their
values are decoded only for the small output table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from csmetrics.frame import factorize_sorted, id_positions
from csmetrics.memo import identity_token
from csmetrics.metrics._common import check_segment_columns, resolve_spine, run_starts
from csmetrics.options import (
    FX_MODES,
    UnknownNameError,
    check_bool,
    check_by,
    check_choice,
    check_freq,
    check_number,
    check_tz,
)
from csmetrics.periods import NAT, Spine, day_calendar, instants, month_first_days, month_index, period_codes
from csmetrics.schemas import AS_OF_COLUMNS
from csmetrics.sorting import codes_of, grid_unit, order_by
from csmetrics.validate import resolve_base_currency, table_error

__all__ = [
    "BillingArrays",
    "BillingContext",
    "CHURN",
    "CONTRACTION",
    "DAYS_PER_MONTH",
    "EXPANSION",
    "Groups",
    "KINDS",
    "Ledger",
    "MAX_MONEY_UNITS",
    "MONEY_SCALE",
    "NEW",
    "NONE",
    "ONE_TIME",
    "Policies",
    "REACTIVATION",
    "RECURRING",
    "REFUND",
    "SegmentCoder",
    "arrays_and_ledger",
    "build_groups",
    "build_ledger",
    "first_mrr",
    "RateTable",
    "group_peaks",
    "add_months",
    "invoices",
    "line_monthly",
    "money_units",
    "monthly_amount",
    "known_lines",
    "mrr_at",
    "plan_at",
    "prepare",
    "scheduled_mrr",
    "sort_order",
    "step_value_at",
    "unique_pairs",
]

MONEY_SCALE = 10_000
DAYS_PER_MONTH = 30.4375
KINDS = ("new", "reactivation", "expansion", "contraction", "churn")
NEW, REACTIVATION, EXPANSION, CONTRACTION, CHURN, NONE = range(6)
RECURRING, ONE_TIME, REFUND = range(3)
_NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class Policies:
    """Conventions where analysts differ (METRICS.md §4-5)."""

    count_new_churn: bool = True
    renewal_grace_days: float = 0.0
    repeat_window_days: float = 35.0
    #: "line": a line keeps the rate of its service_start (§4); "spot": MRR at each instant's rate,
    #: rate drift booked as its own fx_effect movement (§12)
    fx_mode: str = "line"

    def __post_init__(self) -> None:
        object.__setattr__(self, "count_new_churn", check_bool("count_new_churn", self.count_new_churn))
        object.__setattr__(self, "fx_mode", check_choice("fx_mode", self.fx_mode, FX_MODES))
        for name in ("renewal_grace_days", "repeat_window_days"):
            object.__setattr__(self, name, check_number(name, getattr(self, name), low=0))

    @classmethod
    def from_kwargs(cls, kwargs: dict) -> Policies:
        unknown = set(kwargs) - set(cls.__dataclass_fields__)
        if unknown:
            raise UnknownNameError(f"unknown policy {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
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
    #: the fx and customers tables as memo keys hold them (:func:`identity_token`): an object's id
    #: would differ between a Dask worker's copies of one context, and can be reused once it is freed
    fx_key: str | None = field(default=None, repr=False)
    customers_key: str | None = field(default=None, repr=False)


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
    reserved: Sequence[str] = (),
    **policies,
) -> tuple[pd.DataFrame, BillingContext]:
    """The context (spine, as_of, segments, fx, policies) of validated billing (the whole table, or an
    engine's summary of it); ``reserved`` are output columns that may not be segments."""
    freq, tz = check_freq(freq), check_tz(tz)
    by = check_by(by, reserved=reserved)
    static = [c for c in by if c != "plan"]
    if static and (customers is None or any(c not in customers for c in static)):
        check_segment_columns(by, billing.iloc[:0, :0], customers, "billing", extra=["plan"])
        raise UnknownNameError(
            f"segment columns {static} must be columns of the customers table "
            f"(billing segments are customer attributes or plan)"
        )
    # subscriptions are data up to as_of: the spine always runs through as_of's period
    spine = resolve_spine(
        billing,
        period_columns=("service_start", "service_end", "invoiced_at"),
        as_of_columns=AS_OF_COLUMNS["billing"],
        freq=freq,
        tz=tz,
        as_of=as_of,
        start=start,
        end=end,
        through_as_of=True,
    )
    if fx is not None and "currency" in billing:
        base_currency = resolve_base_currency(
            set(billing["currency"].dropna().unique()), set(fx["currency"]), base_currency, fx
        )
    context = BillingContext(
        spine,
        by,
        Policies.from_kwargs(policies),
        fx,
        base_currency,
        customers,
        identity_token(fx),
        identity_token(customers),
    )
    return billing, context


# --------------------------------------------------------------------------
# Arrays
# --------------------------------------------------------------------------
@dataclass
class BillingArrays:
    """Every billing row as arrays: codes, instants (UTC ns) and base-currency amounts."""

    customer: np.ndarray  # int64 codes into customer_ids
    customer_ids: np.ndarray
    kind: np.ndarray  # RECURRING / ONE_TIME / REFUND
    amount: np.ndarray  # base currency, at the rate of the line's date (service_start, else invoiced_at)
    start: np.ndarray
    end: np.ndarray
    invoiced: np.ndarray
    plan: np.ndarray  # int64 codes into plans, -1 where none
    plans: np.ndarray
    native: np.ndarray  # the amount in the line's own currency
    currency: np.ndarray  # int64 codes into rates.names, -1 for the base currency or none
    rates: RateTable
    interval: np.ndarray  # months per interval of a §17 line's segment (amount = one interval), NaN elsewhere
    source: np.ndarray  # the billing row (position) each array row comes from (§17 lines give several)
    _whole: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)

    def whole_months(self) -> tuple[np.ndarray, np.ndarray]:
        """:func:`whole_months` of every row's service period, computed once (the ledger's steps and
        the renewals ahead both read it; concurrent first calls compute the same arrays)."""
        if self._whole is None:
            self._whole = whole_months(self.start, self.end)
        return self._whole

    @classmethod
    def of(cls, billing: pd.DataFrame, context: BillingContext) -> BillingArrays:
        customer, customer_ids = pd.factorize(billing["customer_id"], sort=False)
        kind_column = billing["kind"]
        kind = np.where(
            (kind_column == "recurring").to_numpy(dtype=bool),
            RECURRING,
            np.where((kind_column == "one_time").to_numpy(dtype=bool), ONE_TIME, REFUND),
        ).astype(np.int8)
        if "plan" in billing:
            plan, plans = factorize_sorted(billing["plan"])
        else:
            plan, plans = np.full(len(billing), -1), np.array([], dtype=object)
        # optional timestamp columns may be absent (e.g. no invoiced_at when every line is recurring)
        start, end, invoiced = (
            instants(billing[c]) if c in billing else np.full(len(billing), NAT, dtype=np.int64)
            for c in ("service_start", "service_end", "invoiced_at")
        )
        native = billing["amount"].to_numpy(dtype=float)
        currency, rates = np.full(len(billing), -1, dtype=np.int64), RateTable.empty()
        if context.fx is not None and "currency" in billing:
            rates, currency = RateTable.of(billing["currency"], context.fx, context.base_currency)
        interval = (
            billing["interval_months"].to_numpy(dtype=float, na_value=np.nan)
            if "interval_months" in billing
            else np.full(len(billing), np.nan)
        )
        columns = [
            customer.astype(np.int64),
            kind,
            start,
            end,
            invoiced,
            plan.astype(np.int64),
            native,
            currency,
            interval,
            np.arange(len(billing), dtype=np.int64),
        ]
        if (~np.isnan(interval) & (kind == RECURRING)).any():
            columns = _interval_segments(columns, context.spine.as_of.value)
        customer_code, kind, start, end, invoiced, plan_code, native, currency, interval, source = columns
        amount = (
            native * rates.at(currency, np.where(kind == RECURRING, start, invoiced)) if len(rates.names) else native
        )
        return cls(
            customer_code,
            np.asarray(customer_ids),
            kind,
            amount,
            start,
            end,
            invoiced,
            plan_code,
            np.asarray(plans, dtype=object),
            native,
            currency,
            rates,
            interval,
            source,
        )


#: |months since 1970-01| of an add_months result that stays inside the nanosecond range (1678-2261)
_MONTH_LIMIT = 3_495


def add_months(instant: np.ndarray, months: np.ndarray) -> np.ndarray:
    """UTC ns instants plus whole calendar months, the day clamped to the month's length (Jan 31 +
    1 month = Feb 29 in 2024), the time of day kept; NAT where the instant is NAT or the result
    would leave the nanosecond range. Calendar conversions through tables over the months present."""
    instant, months = np.broadcast_arrays(np.asarray(instant, dtype=np.int64), np.asarray(months, dtype=np.int64))
    day = np.floor_divide(instant, _NS_PER_DAY)
    month = month_index(instant)
    target = month + months
    ok = (instant != NAT) & (np.abs(target) <= _MONTH_LIMIT)
    month, target = np.where(ok, month, 0), np.where(ok, target, 0)
    day_of_month = day - month_first_days(month)
    target_first = month_first_days(target)
    length = month_first_days(target + 1) - target_first
    landed = target_first + np.minimum(day_of_month, length - 1)
    return np.where(ok, landed * _NS_PER_DAY + (instant - day * _NS_PER_DAY), NAT)


def _interval_segments(columns: list[np.ndarray], as_of: int) -> list[np.ndarray]:
    """§17: each recurring line with interval_months becomes one line per interval that has begun by
    as_of (at least one): [start + k m, start + (k + 1) m), the last one cut at service_end when that
    comes first; with no service_end the last interval runs to its boundary (after as_of: not yet
    known, so no churn). Later intervals are invoiced at their start, and in line mode take the rate
    of their start. Other rows are unchanged."""
    customer, kind, start, end, invoiced, plan, native, currency, interval, row = columns
    expand = (kind == RECURRING) & ~np.isnan(interval) & (start != NAT)
    rows = np.flatnonzero(expand)
    months = interval[rows].astype(np.int64)
    limit = np.where(end[rows] != NAT, np.minimum(end[rows], as_of + 1), as_of + 1)
    s_month = month_index(start[rows])
    l_month = month_index(np.maximum(limit, start[rows]))
    bound = np.maximum((l_month - s_month) // months + 2, 1)  # an upper bound on the intervals begun
    source = np.repeat(rows, bound)
    k = np.arange(len(source)) - np.repeat(np.cumsum(bound) - bound, bound)
    step = np.repeat(months, bound)
    begin = add_months(start[source], k * step)
    keep = (k == 0) | (begin < np.repeat(limit, bound))
    source, k, step, begin = source[keep], k[keep], step[keep], begin[keep]
    finish = add_months(start[source], (k + 1) * step)
    finish = np.where(end[source] != NAT, np.minimum(finish, end[source]), finish)
    segments = {
        "customer": customer[source],
        "kind": kind[source],
        "start": begin,
        "end": finish,
        "invoiced": np.where(k == 0, invoiced[source], begin),
        "plan": plan[source],
        "native": native[source],
        "currency": currency[source],
        "interval": interval[source],
        "source": row[source],
    }
    others = np.flatnonzero(~expand)
    return [np.concatenate([column[others], segment]) for column, segment in zip(columns, segments.values())]


def line_monthly(arrays: BillingArrays, rows: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """Monthly amount of recurring lines ``rows`` (a mask or positions) from ``amount`` (base or
    native, per line): amount / interval_months for §17 lines, else §4's calendar-month or day rule."""
    start, end, interval = arrays.start[rows], arrays.end[rows], arrays.interval[rows]
    whole, k = arrays.whole_months()
    by_rule = _by_rule(amount[rows], start, end, whole[rows], k[rows])
    return np.where(np.isnan(interval), by_rule, amount[rows] / np.where(np.isnan(interval), 1.0, interval))


@dataclass(frozen=True)
class RateTable:
    """Each billing currency's rates (base per unit) by date, sorted; the base currency has none."""

    names: tuple[str, ...]
    dates: tuple[np.ndarray, ...]  # UTC ns, ascending
    values: tuple[np.ndarray, ...]

    @classmethod
    def empty(cls) -> RateTable:
        return cls((), (), ())

    @classmethod
    def of(cls, currency: pd.Series, fx: pd.DataFrame, base: str | None) -> tuple[RateTable, np.ndarray]:
        """The rate table of the billing currencies other than ``base``, and each row's code in it."""
        codes, names = factorize_sorted(
            currency if isinstance(currency.dtype, pd.CategoricalDtype) else currency.astype("str")
        )
        fx_currency = fx["currency"].astype("str").to_numpy(dtype=object)
        fx_date = instants(fx["date"])
        fx_rate = fx["rate"].to_numpy(dtype=float)
        foreign = [name for name in names if name != base and name != "nan"]
        missing = [name for name in foreign if not (fx_currency == name).any()]
        if missing:
            raise ValueError(f"billing: currency {sorted(missing)} has no fx rate")
        dates, values = [], []
        for name in foreign:
            mine = fx_currency == name
            order = np.argsort(fx_date[mine], kind="stable")
            dates.append(fx_date[mine][order])
            values.append(fx_rate[mine][order])
        position = {name: i for i, name in enumerate(foreign)}
        recode = np.array([position.get(name, -1) for name in names], dtype=np.int64)
        row_code = np.where(codes >= 0, recode[np.maximum(codes, 0)] if len(recode) else -1, -1)
        return cls(tuple(foreign), tuple(dates), tuple(values)), row_code.astype(np.int64)

    def at(self, currency: np.ndarray, when: np.ndarray) -> np.ndarray:
        """Per row: the latest rate of its currency on or before ``when`` (the first rate if none is
        earlier); 1 for code -1 (the base currency, or no currency)."""
        rate = np.ones(len(currency))
        for code in range(len(self.names)):
            rows = np.flatnonzero(currency == code)
            if len(rows):
                pos = np.searchsorted(self.dates[code], when[rows], side="right") - 1
                rate[rows] = self.values[code][np.maximum(pos, 0)]
        return rate


def monthly_amount(amount: np.ndarray, start_ns: np.ndarray, end_ns: np.ndarray) -> np.ndarray:
    """METRICS.md §4: amount / k for exactly k calendar months, else amount * 30.4375 / days.

    "Exactly k calendar months" follows calendar arithmetic with the day clamped
    to the month's length (Jan 31 + 1 month = Feb 29 in 2024), time of day
    included, on the timestamps as given (UTC): in a report time zone with
    daylight saving, a midnight-to-midnight month would otherwise gain or lose
    an hour and fall back to the day count.
    """
    return _by_rule(amount, start_ns, end_ns, *whole_months(start_ns, end_ns))


def whole_months(start_ns: np.ndarray, end_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether [start, end) is exactly k >= 1 calendar months (add_months(start, k) == end), and k."""
    known = (start_ns != NAT) & (end_ns != NAT)
    start_day, end_day = np.floor_divide(start_ns, _NS_PER_DAY), np.floor_divide(end_ns, _NS_PER_DAY)
    (start_month, start_dom, _), (end_month, end_dom, end_length) = day_calendar([start_day, end_day], known)
    k = np.where(known, end_month - start_month, 0)
    # add_months(start, k) == end: the same time of day, and start's day of the month clamped to end's month
    whole = (
        (k >= 1)
        & (start_ns - start_day * _NS_PER_DAY == end_ns - end_day * _NS_PER_DAY)
        & (end_dom == np.minimum(start_dom, end_length - 1))
    )
    return whole, k


def _by_rule(amount: np.ndarray, start_ns: np.ndarray, end_ns: np.ndarray, whole: np.ndarray, k: np.ndarray):
    with np.errstate(divide="ignore", invalid="ignore"):
        by_month = amount / np.maximum(k, 1)
        by_day = amount * DAYS_PER_MONTH * _NS_PER_DAY / (end_ns - start_ns)
    return np.where(whole, by_month, by_day)


# --------------------------------------------------------------------------
# The ledger: one row per (customer, instant) where something starts or ends
# --------------------------------------------------------------------------
@dataclass
class Ledger:
    customer: np.ndarray  # int codes into BillingArrays.customer_ids
    instant: np.ndarray  # UTC ns
    before: np.ndarray  # MRR before, money units, floored at 0
    after: np.ndarray
    kind: np.ndarray  # movement kind code of the native change (NONE where none)
    plan: np.ndarray  # plan code in force after the instant (-1: none)
    period: np.ndarray  # spine index
    fx: np.ndarray  # fx_effect (spot mode, §12): before revalued at the instant's rates, minus before

    @property
    def revalued(self) -> np.ndarray:
        """MRR before the instant's native change, at the instant's rates (= before in line mode)."""
        return self.before + self.fx


#: Money sums stay exact in float64 (2**53 units of 1e-4: 9e11 of the base currency) and in int64.
MAX_MONEY_UNITS = 2.0**53


def money_units(amount: np.ndarray) -> np.ndarray:
    """Amounts (base currency) as int64 units of 1e-4; a total beyond the exact range is an error
    naming billing.amount (§16: nothing wraps), never a wrapped number."""
    scaled = np.asarray(amount, dtype=float) * MONEY_SCALE
    total = float(np.abs(scaled).sum()) if len(scaled) else 0.0
    if not np.isfinite(total) or total >= MAX_MONEY_UNITS:
        worst = int(np.nanargmax(np.abs(scaled))) if len(scaled) else 0
        raise table_error(
            "billing",
            "amount",
            f"monthly amounts within the exact money range (their sum < {MAX_MONEY_UNITS / MONEY_SCALE:.3g})",
            f"largest monthly amount {scaled[worst] / MONEY_SCALE:.6g}",
        )
    return np.rint(scaled).astype(np.int64)


def sort_order(customer: np.ndarray, instant: np.ndarray) -> np.ndarray:
    """The stable order by (customer, instant): :func:`order_by` (one 64-bit sort of values where the
    keys fit next to the row positions, instants on a day or second grid shrunk to it)."""
    return order_by(customer, instant)


def _instant_ranks(*instants: np.ndarray) -> tuple[list[np.ndarray], int]:
    """Instants (UTC ns, no NAT) as ranks from the earliest in their coarsest common exact unit (days,
    seconds or ns; the order and equality kept), and the ranks' span."""
    low = min(int(a.min()) for a in instants if len(a))
    rel = [a - low for a in instants]
    unit = grid_unit(*rel)
    ranks = [r // unit if unit > 1 else r for r in rel]
    return ranks, max(int(r.max(initial=0)) for r in ranks) + 1


@dataclass
class _Steps:
    """Signed MRR steps (money units) per customer and instant, before netting."""

    customer: np.ndarray
    instant: np.ndarray
    native: np.ndarray  # the native change, valued in the base currency
    fx: np.ndarray  # the fx effect (spot mode)
    weight: np.ndarray  # base-currency step of a line, for the plan choice
    plan: np.ndarray  # the plan a positive line's start sets, -1 elsewhere
    zero_fx: bool = field(default=False, compare=False)  # fx is all 0 (line mode)

    def take(self, order: np.ndarray) -> _Steps:
        """The steps in ``order``; an array shared by several fields (native and weight in line mode)
        is taken once, and all-zero fx (line mode) is not taken."""
        taken: dict[int, np.ndarray] = {}
        for f in _STEP_ARRAYS:
            a = getattr(self, f)
            if id(a) not in taken:
                taken[id(a)] = np.zeros(len(order), dtype=a.dtype) if f == "fx" and self.zero_fx else a[order]
        return _Steps.of([taken[id(getattr(self, f))] for f in _STEP_ARRAYS], zero_fx=self.zero_fx)

    @staticmethod
    def of(arrays: list[np.ndarray], zero_fx: bool = False) -> _Steps:
        customer, instant, native, fx, weight, plan = arrays
        return _Steps(customer, instant, native, fx, weight, plan, zero_fx=zero_fx)


_STEP_ARRAYS = ("customer", "instant", "native", "fx", "weight", "plan")


def _line_steps(arrays: BillingArrays, as_of: int, native: bool) -> tuple[_Steps, np.ndarray]:
    """The recurring lines known at as_of as steps at their start and known end (an end after as_of
    is not known yet), and each step's currency code; ``native``: steps in native money units."""
    keep = (arrays.kind == RECURRING) & (arrays.start <= as_of) & (arrays.start != NAT)
    start, end = arrays.start[keep], arrays.end[keep]
    weight = money_units(line_monthly(arrays, keep, arrays.amount))
    step = money_units(line_monthly(arrays, keep, arrays.native)) if native else weight
    ends = end <= as_of

    def both(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.concatenate([a, b[ends]])

    plan = np.where(step > 0, arrays.plan[keep], -1)
    signed = both(step, -step)
    steps = _Steps(
        both(arrays.customer[keep], arrays.customer[keep]),
        both(start, end),
        signed,
        np.zeros(len(signed), dtype=np.int64),
        both(weight, -weight) if native else signed,
        both(plan, np.full(len(plan), -1)),
        zero_fx=True,
    )
    return steps, both(arrays.currency[keep], arrays.currency[keep])


def build_ledger(arrays: BillingArrays, context: BillingContext) -> Ledger:
    """Net MRR steps per customer and instant, classified into movements (and, in spot mode,
    the revaluation of foreign MRR at each rate change: §12)."""
    as_of = context.spine.as_of.value
    spot = context.policies.fx_mode == "spot" and len(arrays.rates.names) > 0
    steps, currency = _line_steps(arrays, as_of, native=spot)
    if spot:
        steps = _spot_steps(steps, currency, arrays.rates, as_of)
    steps = steps.take(sort_order(steps.customer, steps.instant))
    n = len(steps.customer)
    if n == 0:
        empty = np.array([], dtype=np.int64)
        return Ledger(empty, empty, empty, empty, empty.astype(np.int8), empty, empty, empty)
    first = np.flatnonzero(run_starts(steps.customer, steps.instant))
    group = np.repeat(np.arange(len(first)), np.diff(np.append(first, n)))
    candidate = np.where(steps.plan >= 0, steps.weight, np.iinfo(np.int64).min)
    chosen = (steps.plan >= 0) & (candidate == np.maximum.reduceat(candidate, first)[group])
    # ties between equally large lines go to the last plan name, whatever the row order
    plan = np.maximum.reduceat(np.where(chosen, steps.plan, -1), first)
    return _classified(
        steps.customer[first],
        steps.instant[first],
        np.add.reduceat(steps.native, first),
        np.add.reduceat(steps.fx, first),
        plan,
        context.spine,
    )


def _spot_steps(steps: _Steps, currency: np.ndarray, rates: RateTable, as_of: int) -> _Steps:
    """Spot mode (§12): the line steps (native units) become, per (customer, currency) and instant,
    the native change valued at the instant's rate and the revaluation of the MRR held before it
    (fx); a row is added at every rate date on or before as_of while the pair holds native MRR.
    The line rows are kept (with no value) for the plan choice."""
    n_currency = len(rates.names) + 1
    pair = steps.customer * n_currency + (currency + 1)
    order = sort_order(pair, steps.instant)
    pair, instant, delta, cur = pair[order], steps.instant[order], steps.native[order], currency[order]
    first = np.flatnonzero(run_starts(pair, instant))
    pair, instant, cur = pair[first], instant[first], cur[first]
    net = np.add.reduceat(delta, first) if len(first) else delta[:0]
    held = _cumsum_in_blocks(net, _block_starts(pair))  # native MRR after each (pair, instant)
    # rate dates strictly after the instant and before the pair's next one, while it holds MRR
    next_instant = np.full(len(pair), np.iinfo(np.int64).max)
    if len(pair) > 1:
        next_instant[:-1] = np.where(pair[1:] == pair[:-1], instant[1:], next_instant[:-1])
    lo = np.zeros(len(pair), dtype=np.int64)
    hi = np.zeros(len(pair), dtype=np.int64)
    for code, dates in enumerate(rates.dates):
        rows = np.flatnonzero((cur == code) & (held != 0))
        lo[rows] = np.searchsorted(dates, instant[rows], side="right")
        stop = np.minimum(next_instant[rows], as_of + 1)
        hi[rows] = np.searchsorted(dates, stop, side="left")
    count = np.maximum(hi - lo, 0)
    source = np.repeat(np.arange(len(pair)), count)
    index = lo[source] + np.arange(len(source)) - np.repeat(np.cumsum(count) - count, count)
    at = np.zeros(len(source), dtype=np.int64)
    for code, dates in enumerate(rates.dates):
        mine = cur[source] == code
        at[mine] = dates[index[mine]]
    pair = np.concatenate([pair, pair[source]])
    instant = np.concatenate([instant, at])
    net = np.concatenate([net, np.zeros(len(source), dtype=np.int64)])
    held = np.concatenate([held, held[source]])
    order = sort_order(pair, instant)
    pair, instant, net, held = pair[order], instant[order], net[order], held[order]
    rate = rates.at(pair % n_currency - 1, instant)
    value_after = np.rint(held * rate).astype(np.int64)
    value_before = np.rint((held - net) * rate).astype(np.int64)
    previous = np.zeros(len(pair), dtype=np.int64)
    if len(pair) > 1:
        previous[1:] = np.where(pair[1:] == pair[:-1], value_after[:-1], 0)
    zeros = np.zeros(len(pair), dtype=np.int64)
    valued = _Steps(pair // n_currency, instant, value_after - value_before, value_before - previous, zeros, zeros - 1)
    kept = _Steps(steps.customer, steps.instant, steps.native * 0, steps.fx, steps.weight, steps.plan)
    return _Steps.of([np.concatenate([getattr(kept, f), getattr(valued, f)]) for f in _STEP_ARRAYS])


def _classified(
    customer: np.ndarray, instant: np.ndarray, native: np.ndarray, fx: np.ndarray, plan: np.ndarray, spine: Spine
) -> Ledger:
    """Per (customer, instant), sorted: the MRR before and after (a cumulative sum, floored at 0),
    the fx effect, the kind of the native change and the plan in force; instants that change
    nothing are dropped."""
    block_start = _block_starts(customer)
    raw_after = _cumsum_in_blocks(native + fx, block_start)
    after = np.maximum(raw_after, 0)
    revalued = np.maximum(raw_after - native, 0)
    before = np.maximum(raw_after - native - fx, 0)
    plan = _ffill_in_blocks(plan, block_start)

    positive = after > 0
    seen_positive = _cumsum_in_blocks(positive.astype(np.int64), block_start) - positive > 0
    kind = np.full(len(after), NONE, dtype=np.int8)
    rising = (revalued == 0) & positive
    kind[rising] = REACTIVATION
    kind[rising & ~seen_positive] = NEW
    kind[(revalued > 0) & ~positive] = CHURN
    kind[(revalued > 0) & (after > revalued)] = EXPANSION
    kind[positive & (after < revalued)] = CONTRACTION
    # an instant that changes neither MRR nor plan (a renewal on the day) carries no information
    plan_changed = np.ones(len(plan), dtype=bool)
    plan_changed[1:] = (plan[1:] != plan[:-1]) | (customer[1:] != customer[:-1])
    effect = revalued - before
    informative = (kind != NONE) | plan_changed | (effect != 0)
    customer, instant, before, after, kind, plan, effect = (
        a[informative] for a in (customer, instant, before, after, kind, plan, effect)
    )
    period = spine.index(period_codes(instant, spine.freq, spine.tz))
    return Ledger(customer, instant, before, after, kind, plan, period, effect)


def first_mrr(ledger: Ledger, n_customers: int) -> tuple[np.ndarray, np.ndarray]:
    """Per customer code: the spine index of its first MRR > 0 (its cohort; -1 if none) and the plan
    in force then (-1 if none). A customer has one ``new`` movement."""
    first_new = np.full(n_customers, -1, dtype=np.int64)
    first_plan = np.full(n_customers, -1, dtype=np.int64)
    is_new = ledger.kind == NEW
    first_new[ledger.customer[is_new]] = ledger.period[is_new]
    first_plan[ledger.customer[is_new]] = ledger.plan[is_new]
    return first_new, first_plan


def unique_pairs(customer: np.ndarray, instant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (customer, instant) pairs, sorted by customer then instant."""
    order = sort_order(customer, instant)
    customer, instant = customer[order], instant[order]
    new = run_starts(customer, instant)
    return customer[new], instant[new]


def _block_starts(customer: np.ndarray) -> np.ndarray:
    """Index of the first row of each row's customer block (rows sorted by customer)."""
    new = run_starts(customer)
    return np.maximum.accumulate(np.where(new, np.arange(len(customer)), 0)) if len(customer) else customer


def _cumsum_in_blocks(values: np.ndarray, block_start: np.ndarray) -> np.ndarray:
    total = np.cumsum(values)
    return total - np.concatenate([[0], total])[block_start]


def _ffill_in_blocks(codes: np.ndarray, block_start: np.ndarray) -> np.ndarray:
    """Carry the last code >= 0 forward inside each block."""
    if len(codes) == 0:
        return codes
    last = np.maximum.accumulate(np.where(codes >= 0, np.arange(len(codes)), -1))
    return np.where(last >= block_start, codes[np.maximum(last, 0)], -1)


# --------------------------------------------------------------------------
# Customer-period groups
# --------------------------------------------------------------------------
@dataclass
class Groups:
    """One row per (customer, period) with at least one ledger instant, sorted."""

    customer: np.ndarray
    period: np.ndarray
    next_period: np.ndarray  # the customer's next group period, or spine.n
    start_mrr: np.ndarray  # money units before the first instant
    end_mrr: np.ndarray  # after the last instant
    movement: np.ndarray  # (groups, 5) sums of |change| per kind, money units
    count: np.ndarray  # (groups, 5) number of movements per kind
    plan: np.ndarray  # plan code at the period end
    fx: np.ndarray  # the period's fx effect (spot mode), money units


def build_groups(ledger: Ledger, n_periods: int) -> Groups:
    n = len(ledger.customer)
    first = np.flatnonzero(run_starts(ledger.customer, ledger.period))
    last = np.append(first[1:] - 1, n - 1) if n else first
    n_groups = len(first)
    gid = np.repeat(np.arange(n_groups), np.diff(np.append(first, n)))
    cell = gid * 6 + ledger.kind
    change = (ledger.after - ledger.revalued).astype(float)
    movement = np.abs(np.bincount(cell, weights=change, minlength=n_groups * 6)).reshape(n_groups, 6)[:, :5]
    count = np.bincount(cell, minlength=n_groups * 6).reshape(n_groups, 6)[:, :5]
    customer = ledger.customer[first]
    period = ledger.period[first]
    next_period = np.full(n_groups, n_periods, dtype=np.int64)
    if n_groups > 1:
        same = customer[1:] == customer[:-1]
        next_period[:-1] = np.where(same, period[1:], n_periods)
    return Groups(
        customer,
        period,
        next_period,
        ledger.before[first],
        ledger.after[last],
        np.rint(movement).astype(np.int64),
        count.astype(np.int64),
        ledger.plan[last],
        np.add.reduceat(ledger.fx, first) if n else ledger.fx,
    )


def group_peaks(ledger: Ledger) -> tuple[np.ndarray, np.ndarray]:
    """Per (customer, period) group, in :func:`build_groups` order: the largest MRR after any of
    its instants (money units) and its first instant (UTC ns)."""
    if len(ledger.customer) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    first = np.flatnonzero(run_starts(ledger.customer, ledger.period))
    return np.maximum.reduceat(ledger.after, first), ledger.instant[first]


def plan_at(groups: Groups, customer: np.ndarray, period: np.ndarray) -> np.ndarray:
    """Plan code of each customer's latest group at or before ``period`` (-1 if none)."""
    if len(customer) == 0 or len(groups.customer) == 0:
        return np.full(len(customer), -1, dtype=np.int64)
    low = min(groups.period.min(), period.min())
    width = int(max(groups.period.max(), period.max()) - low + 1)
    query = customer * width + (period - low)
    order = order_by(query)  # sorted queries search the sorted keys sequentially
    pos = np.empty(len(query), dtype=np.int64)
    pos[order] = np.searchsorted(groups.customer * width + (groups.period - low), query[order], side="right") - 1
    safe = np.maximum(pos, 0)
    return np.where((pos >= 0) & (groups.customer[safe] == customer), groups.plan[safe], -1)


def mrr_at(ledger: Ledger, customer: np.ndarray, instant: np.ndarray) -> np.ndarray:
    """Each customer's MRR (money units) at an instant: its latest ledger row at or before it."""
    return step_value_at(ledger.customer, ledger.instant, ledger.after, customer, instant)


def step_value_at(
    keys: np.ndarray, at: np.ndarray, values: np.ndarray, customer: np.ndarray, instant: np.ndarray
) -> np.ndarray:
    """A step function per customer (rows sorted by (keys, at), ``values`` after each) queried at
    (customer, instant): the value of the customer's latest row at or before it, else 0.

    One binary search of combined (customer, instant rank) keys where they fit in int64; else each
    query searches its customer's block, all queries stepping together.
    """
    if len(customer) == 0 or len(keys) == 0:
        return np.zeros(len(customer), dtype=values.dtype if len(values) else np.int64)
    if not ((at == NAT).any() or (instant == NAT).any()):
        (rank_at, rank_query), span = _instant_ranks(at, instant)
        if (max(int(keys.max()), int(customer.max())) + 1) * span < 2**62 and min(keys.min(), customer.min()) >= 0:
            pos = np.searchsorted(keys * span + rank_at, customer * span + rank_query, side="right") - 1
            safe = np.maximum(pos, 0)
            return np.where((pos >= 0) & (keys[safe] == customer), values[safe], 0)
    block_lo = np.searchsorted(keys, customer, side="left")
    lo, hi = block_lo.copy(), np.searchsorted(keys, customer, side="right")
    last = len(at) - 1
    while (active := lo < hi).any():
        mid = (lo + hi) // 2
        right = active & (at[np.minimum(mid, last)] <= instant)
        lo = np.where(right, mid + 1, lo)
        hi = np.where(active & ~right, mid, hi)
    pos = lo - 1
    return np.where(pos >= block_lo, values[np.maximum(pos, 0)], 0)


def known_lines(arrays: BillingArrays, as_of: int) -> np.ndarray:
    """Recurring lines known at as_of (§12 renewals ahead): invoiced by as_of, or without an
    invoice date started by as_of; their scheduled ends count, even after as_of."""
    at = np.where(arrays.invoiced != NAT, arrays.invoiced, arrays.start)
    return (arrays.kind == RECURRING) & (arrays.start != NAT) & (arrays.end != NAT) & (at <= as_of)


def scheduled_mrr(
    arrays: BillingArrays, lines: np.ndarray, monthly: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The MRR step function (money units, not floored) of ``lines`` (a mask or positions) with their scheduled
    ends: (customer, instant, value after), sorted by (customer, instant)."""
    customer = np.concatenate([arrays.customer[lines], arrays.customer[lines]])
    instant = np.concatenate([arrays.start[lines], arrays.end[lines]])
    delta = np.concatenate([monthly, -monthly])
    order = sort_order(customer, instant)
    customer, instant, delta = customer[order], instant[order], delta[order]
    first = np.flatnonzero(run_starts(customer, instant)) if len(customer) else np.zeros(0, dtype=np.int64)
    net = np.add.reduceat(delta, first) if len(first) else delta
    customer, instant = customer[first], instant[first]
    return customer, instant, _cumsum_in_blocks(net, _block_starts(customer))


# --------------------------------------------------------------------------
# Segments: integer codes over the by columns
# --------------------------------------------------------------------------
class SegmentCoder:
    """Mixed-radix integer segment codes for (customer, plan) pairs, and their values.

    Static columns come from ``customers`` (a customer not in it, or with a
    missing value, is in the null group); ``plan`` is the plan code. Code 0 of
    each column is the null group.
    """

    def __init__(self, context: BillingContext, arrays: BillingArrays):
        self.by = context.by
        self.radix: list[int] = []
        self.values: list[np.ndarray] = []
        self.dtypes: list[object] = []
        self.static_codes: list[np.ndarray] = []
        for column in self.by:
            if column == "plan":
                self.values.append(np.concatenate([[None], arrays.plans]).astype(object))
                self.dtypes.append("str")
                self.static_codes.append(np.empty(0, dtype=np.int64))
            else:
                customers = context.customers
                assert customers is not None  # prepare() checked: static segments need customers
                codes, uniques = pd.factorize(customers[column], sort=True)
                position = id_positions(customers["customer_id"], arrays.customer_ids)
                of_customer = np.where(position >= 0, codes[np.maximum(position, 0)] + 1, 0)
                self.values.append(np.concatenate([[None], np.asarray(uniques, dtype=object)]))
                self.dtypes.append(customers[column].dtype)
                self.static_codes.append(of_customer.astype(np.int64))
            self.radix.append(len(self.values[-1]))

    @property
    def size(self) -> int:
        return int(np.prod(self.radix)) if self.radix else 1

    def codes(self, customer: np.ndarray, plan: np.ndarray) -> np.ndarray:
        code = np.zeros(len(customer), dtype=np.int64)
        for column, radix, static in zip(self.by, self.radix, self.static_codes):
            part = plan + 1 if column == "plan" else static[customer]
            code = code * radix + part
        return code

    def table(self, codes: np.ndarray) -> pd.DataFrame | None:
        """The by-column values of each segment code."""
        if not self.by:
            return None
        columns = {}
        rest = np.asarray(codes, dtype=np.int64)
        for column, radix, values, dtype in reversed(list(zip(self.by, self.radix, self.values, self.dtypes))):
            columns[column] = pd.Series(values[rest % radix]).astype(dtype) if len(rest) else pd.Series([], dtype=dtype)
            rest = rest // radix
        return pd.DataFrame({c: columns[c] for c in self.by})


def invoices(arrays: BillingArrays, as_of: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Purchases: the one-time and recurring lines invoiced by as_of (invoiced_at, else service_start).

    Returns (line mask, invoice instant per kept line, invoice key per kept line,
    base-currency amount per kept line); an invoice is one customer and instant.
    """
    at = np.where(arrays.invoiced != NAT, arrays.invoiced, arrays.start)
    keep = (arrays.kind != REFUND) & (at != NAT) & (at <= as_of)
    customer, at_kept = arrays.customer[keep], at[keep]
    if not len(at_kept):
        return keep, at_kept, np.zeros(0, dtype=np.int64), arrays.amount[keep]
    key, _ = codes_of(customer, at_kept)
    return keep, at_kept, key, arrays.amount[keep]


# ----------------------------------------------------------------------------------------
# One ledger per billing table and context: the families of one run share it through a memo
# ----------------------------------------------------------------------------------------
def arrays_and_ledger(billing: pd.DataFrame, context: BillingContext, memo: Any = None) -> tuple[BillingArrays, Ledger]:
    """BillingArrays and Ledger of ``billing`` under ``context``.

    ``memo`` (an engine's :class:`~csmetrics.engines.base.Memo`, or None) shares them between
    the families of one run given the same frame: keyed by the frame and everything the ledger
    depends on (the spine, fx, base currency and fx mode; segments and other policies do not change it).
    """

    def make() -> tuple[BillingArrays, Ledger]:
        arrays = BillingArrays.of(billing, context)
        return arrays, build_ledger(arrays, context)

    if memo is None:
        return make()
    return memo.get(
        billing,
        ("ledger", len(billing), context.spine, context.fx_key, context.base_currency, context.policies.fx_mode),
        make,
    )
