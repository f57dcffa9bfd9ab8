"""Customer health (METRICS.md §10): a configurable scorecard, its aggregates and the at-risk list.

Each customer and period gets up to four component scores on 0-100:

- usage: active days in the period against the customer's own baseline, the
  mean active days of its previous ``baseline_periods`` periods:
  100 * min(active / baseline, 1); with no baseline yet, 100 if active else 0.
  Present for every scored customer when events are given.
- sentiment: the latest NPS (score * 10) or CSAT ((score - min) / (max - min)
  * 100) answer up to the period end. Missing until the customer has answered.
- support: the ticket load, tickets created in the period plus older tickets
  still open at its end (each ticket once), inverted: 100 * max(0, 1 - load / scale). ``scale`` is learned by ``fit``
  (the 95th percentile of the load over customer-periods with any) unless given.
- revenue: MRR at the period end against ``baseline_periods`` periods before:
  100 * min(now / before, 1); 100 for a customer new since then.

The score is the weighted mean of the components present (weights renormalised);
``components_used`` counts them and ``contribution_<component>`` is each one's
share of the score (they add up to it). Bands: red < 40 <= yellow < 70 <= green.
Scored customers (§14): when billing is given, those active in the period (MRR > 0
at some instant of it up to as_of, in exact money units), so a churned customer is
scored in its churn period and not after; else the periods with its events, tickets
created or survey answers. The at-risk list leaves out customers with MRR 0 at the period end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from csmetrics.frame import FrameBuilder, attach_segments, dense_codes, encode_segments, positions_in, text_of_codes
from csmetrics.metrics._billing import (
    MONEY_SCALE,
    BillingContext,
    arrays_and_ledger,
    build_groups,
    group_peaks,
    prepare,
)
from csmetrics.metrics._common import Grid, combine, dense, distinct_per_cell, instant_range, long_partial
from csmetrics.options import (
    ConfigError,
    NotFittedError,
    check_bands,
    check_freq,
    check_int,
    check_number,
    check_tz,
    check_weights,
)
from csmetrics.periods import NAT, Spine, instants, local_ns, make_spine, period_codes, resolve_as_of
from csmetrics.schemas import AS_OF_COLUMNS, survey_scale
from csmetrics.stats import quantile_of_counts

__all__ = [
    "BANDS",
    "COMPONENTS",
    "Inputs",
    "Scorecard",
    "aggregate_finalize",
    "aggregate_partial",
    "band_of",
    "health_spine",
    "load_counts",
    "red_by_mrr",
    "scores_spine",
    "weighted_score",
]

COMPONENTS = ("usage", "sentiment", "support", "revenue")
BANDS = ("red", "yellow", "green")
_DAY = 86_400 * 10**9


def weighted_score(scores: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted mean of the components present (NaN = missing), renormalising the weights.

    ``scores`` is (rows, components). Returns (score, components_used, contributions);
    contributions (rows, components) add up to the score. A zero weight changes nothing.

    Examples
    --------
    Gainsight's documented weighted example: weights 20/15/22 on scores 47/59/21.

    >>> score, used, _ = weighted_score(np.array([[47.0, 59.0, 21.0]]), np.array([20.0, 15.0, 22.0]))
    >>> round(float(score[0]), 3), int(used[0])
    (40.123, 3)
    """
    present = ~np.isnan(scores) & (weights > 0)
    total = (present * weights).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        contributions = np.where(present, np.nan_to_num(scores) * weights / total[:, None], np.nan)
        score = np.where(total > 0, np.nansum(np.where(present, contributions, 0.0), axis=1), np.nan)
    return score, present.sum(axis=1), contributions


def band_of(score: np.ndarray, edges: tuple[float, float]) -> np.ndarray:
    """red below the first edge, yellow below the second, green from it; None where no score."""
    return np.array([*BANDS, None], dtype=object)[_band_codes(np.asarray(score, dtype=float), edges)]


class Scorecard:
    """The parameters and the pure steps of a health scorecard (:class:`csmetrics.HealthScorecard`
    adds ``fit``, ``transform`` and ``score`` on tables, through an engine).

    Parameters
    ----------
    weights : mapping component -> weight (default: equal); a component left out weighs 0.
    bands : (red_below, green_from), default (40, 70).
    baseline_periods : periods of history for the usage baseline and the revenue trend.
    support_scale : fixed ticket load that scores 0 (default: learned by ``fit``).
    """

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        bands: tuple[float, float] = (40.0, 70.0),
        baseline_periods: int = 3,
        support_scale: float | None = None,
        trend_periods: int = 3,
    ):
        self.weights = check_weights(weights, COMPONENTS)
        self.trend_periods = check_int("trend_periods", trend_periods, low=2)
        self.bands = check_bands(bands)
        self.baseline_periods = check_int("baseline_periods", baseline_periods, low=1)
        self.support_scale = (
            None if support_scale is None else check_number("support_scale", support_scale, low=0, low_open=True)
        )

    def check_is_fitted(self) -> None:
        """NotFittedError unless the learned attributes are there."""
        if not hasattr(self, "support_scale_") or not hasattr(self, "weights_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit() or score() first")

    def fit_loads(self, loads: np.ndarray, counts: np.ndarray) -> Scorecard:
        """Fit from the distinct positive ticket loads of scored customer-periods and their counts
        (what a partitioned engine sums across partitions; the quantile is exact)."""
        if self.support_scale is not None:
            self.support_scale_ = float(self.support_scale)
        else:
            self.support_scale_ = float(max(quantile_of_counts(loads, counts, 0.95), 1.0)) if len(loads) else 1.0
        self.weights_ = self._weights()
        return self

    def finish(self, rows: pd.DataFrame, spine: Spine) -> pd.DataFrame:
        """Score the component inputs of :meth:`Inputs.rows` (a fitted scorecard), with each
        customer's change over time (§14): score_change and band_change against the
        immediately preceding period (NaN / empty when not scored then) and trend, the
        least-squares slope of the score over its scored periods among the last
        ``trend_periods`` (NaN with fewer than 2). Rows come out ordered by (period, customer_id)."""
        self.check_is_fitted()
        key, width = _cell_keys(rows, spine, self.trend_periods)
        if len(key) > 1 and not (key[1:] > key[:-1]).all():  # Inputs.rows gives them in order already
            order = np.argsort(key, kind="stable")
            rows, key = rows.take(order), key[order]
        load = rows["support_load"].to_numpy(dtype=float)
        support = 100 * np.maximum(0.0, 1 - load / self.support_scale_)  # NaN load (no tickets table): NaN
        # components as columns of one Fortran-ordered block: each column is contiguous, and the output
        # frame holds the columns themselves (no copy of the 20M-row block at large)
        picked = np.stack(
            [
                rows["usage"].to_numpy(dtype=float),
                rows["sentiment"].to_numpy(dtype=float),
                support,
                rows["revenue"].to_numpy(dtype=float),
            ]
        ).T
        score, used, contributions = weighted_score(picked, self.weights_)
        band = _band_codes(score, self.bands)
        out: dict[str, Any] = {"customer_id": rows["customer_id"].array, "period": rows["period"].array}
        for i, name in enumerate(COMPONENTS):
            out[name] = picked[:, i]
        out["score"] = score
        out["band"] = text_of_codes(band, BANDS)
        out["components_used"] = used
        for i, name in enumerate(COMPONENTS):
            out[f"contribution_{name}"] = contributions[:, i]
        out["weakest_component"] = text_of_codes(_weakest(picked, self.weights_, used), COMPONENTS)
        out["mrr"] = rows["mrr"].to_numpy(dtype=float)
        out["score_change"], out["band_change"], out["trend"] = _over_time(key, width, score, band, self.trend_periods)
        return pd.DataFrame(out, copy=False)

    def _weights(self) -> np.ndarray:
        if self.weights is None:
            return np.ones(len(COMPONENTS))
        unknown = set(self.weights) - set(COMPONENTS)
        if unknown:
            raise KeyError(f"unknown health component(s) {sorted(unknown)}; components are {COMPONENTS}")
        return np.array([float(self.weights.get(c, 0.0)) for c in COMPONENTS])


class Inputs:
    """Per (customer, period) arrays of the component inputs, on one customer x period grid."""

    customers: pd.DataFrame | None
    spine: Spine
    as_of: pd.Timestamp
    ids: pd.Index
    shape: tuple[int, int]
    seen: np.ndarray
    usage: np.ndarray
    sentiment: np.ndarray
    support_load: np.ndarray
    has_support: bool
    mrr: np.ndarray
    revenue: np.ndarray
    live: np.ndarray

    @classmethod
    def build(
        cls,
        card: Scorecard,
        *,
        events: pd.DataFrame | None = None,
        surveys: pd.DataFrame | None = None,
        tickets: pd.DataFrame | None = None,
        billing: pd.DataFrame | None = None,
        fx: pd.DataFrame | None = None,
        customers: pd.DataFrame | None = None,
        freq: str = "M",
        tz: str = "UTC",
        as_of: object = None,
        start: object = None,
        end: object = None,
        spine: Spine | None = None,
        memo: Any = None,
        billing_context: BillingContext | None = None,
    ) -> Inputs:
        """``billing_context``: a report's (its policies, e.g. spot fx, and the whole table's periods),
        so the MRR component is the MRR the report's revenue families book, from their ledger."""
        self = cls()
        self.customers = customers
        self.spine = spine or health_spine(
            events=events,
            surveys=surveys,
            tickets=tickets,
            billing=billing,
            freq=freq,
            tz=tz,
            as_of=as_of,
            start=start,
            end=end,
        )
        self.as_of = self.spine.as_of
        ids = [t["customer_id"] for t in (events, surveys, tickets, billing) if t is not None]
        self.ids = pd.Index(pd.concat(ids, ignore_index=True).unique()) if ids else pd.Index([], dtype=object)
        try:
            self.ids = self.ids.sort_values()  # rows() then come out in (period, customer_id) order
        except TypeError:  # ids that do not compare: Scorecard.finish orders the rows
            pass
        n_c, n_p = len(self.ids), self.spine.n
        self.shape = (n_c, n_p)
        k = card.baseline_periods
        first_seen = np.full(n_c, n_p, dtype=np.int64)
        kept = {}  # the events' and tickets' rows, read again below
        for table, column in (
            (events, "timestamp"),
            (surveys, "responded_at"),
            (tickets, "created_at"),
            (billing, "invoiced_at"),
            (billing, "service_start"),
        ):
            if table is None or column not in table:
                continue
            rows, period = self._rows(table, column)
            np.minimum.at(first_seen, rows, np.clip(period, 0, n_p))
            if table is events or table is tickets:
                kept[column] = rows, period
        self.seen = np.arange(n_p)[None, :] >= first_seen[:, None]

        self.usage = np.full(self.shape, np.nan)
        if events is not None:
            active = self._distinct_days(events, *kept.pop("timestamp"))
            cumulative = np.concatenate([np.zeros((n_c, 1)), np.cumsum(active, axis=1)], axis=1)
            periods = np.arange(n_p)
            lo = np.maximum(periods - k, 0)
            history = periods - lo
            with np.errstate(invalid="ignore", divide="ignore"):
                baseline = (cumulative[:, periods] - cumulative[:, lo]) / np.where(history > 0, history, np.nan)
                ratio = np.minimum(active / baseline, 1.0)
            self.usage = np.where(
                np.nan_to_num(baseline) > 0, 100 * np.nan_to_num(ratio), np.where(active > 0, 100.0, 0.0)
            )

        self.sentiment = self._sentiment(surveys) if surveys is not None else np.full(self.shape, np.nan)
        self.support_load = np.zeros(self.shape)
        self.has_support = tickets is not None
        if tickets is not None:
            self.support_load = self._ticket_load(tickets, *kept.pop("created_at"))

        self.mrr = np.full(self.shape, np.nan)
        self.revenue = np.full(self.shape, np.nan)
        if billing is not None:
            self.mrr, self.live = self._mrr(billing, fx, memo, billing_context)
            before = np.zeros(self.shape)
            before[:, k:] = self.mrr[:, :-k] if k > 0 else self.mrr
            with np.errstate(invalid="ignore", divide="ignore"):
                trend = np.where(
                    before > 0, 100 * np.minimum(self.mrr / before, 1.0), np.where(self.mrr > 0, 100.0, np.nan)
                )
            self.revenue = trend
        else:
            # §14: without billing, a customer is scored in the periods with its events, tickets or answers
            self.live = np.zeros(self.shape, dtype=bool)
            answered = None
            if surveys is not None:
                answered = surveys[surveys["score"].notna()]
            survey_time = "responded_at" if surveys is not None and "responded_at" in surveys else "sent_at"
            for table, column in ((events, "timestamp"), (tickets, "created_at"), (answered, survey_time)):
                if table is None or column not in table:
                    continue
                rows, period = self._rows(table, column)
                inside = (period >= 0) & (period < n_p)
                self.live[rows[inside], period[inside]] = True
        return self

    def _rows(self, table: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
        """(row of self.ids, spine index) of the table's rows with ``column`` set and by as_of."""
        t = instants(table[column])
        ok = (t != NAT) & (t <= self.as_of.value)
        rows = positions_in(self.ids, table["customer_id"].to_numpy()[ok])
        return rows, self.spine.index(period_codes(t[ok], self.spine.freq, self.spine.tz))

    def _cell_sum(self, rows: np.ndarray, period: np.ndarray, weights=None) -> np.ndarray:
        inside = (period >= 0) & (period < self.shape[1])
        flat = rows[inside] * self.shape[1] + period[inside]
        w = None if weights is None else np.asarray(weights)[inside]
        return np.bincount(flat, weights=w, minlength=self.shape[0] * self.shape[1]).reshape(self.shape).astype(float)

    def _distinct_days(self, events: pd.DataFrame, rows: np.ndarray, period: np.ndarray) -> np.ndarray:
        """Active (local) days per customer and period (``rows``, ``period``: the events' :meth:`_rows`)."""
        t = instants(events["timestamp"])
        day = np.floor_divide(local_ns(t[(t != NAT) & (t <= self.as_of.value)], self.spine.tz), _DAY)
        if len(day) == 0:
            return np.zeros(self.shape)
        # distinct days per (customer, period) cell of the spine (a day lies in one period)
        inside = (period >= 0) & (period < self.shape[1])
        cell = rows[inside].astype(np.int64) * self.shape[1] + period[inside]
        days = distinct_per_cell(cell, day[inside] - day.min(), self.shape[0] * self.shape[1])
        return days.reshape(self.shape)

    def _sentiment(self, surveys: pd.DataFrame) -> np.ndarray:
        answered_at = surveys["responded_at"] if "responded_at" in surveys else surveys["sent_at"]
        kind = surveys["survey"]
        usable = surveys["score"].notna() & kind.isin(["nps", "csat"]) & answered_at.notna()
        part = surveys[usable.to_numpy(dtype=bool)]
        low, high = survey_scale(part)
        score = part["score"].to_numpy(dtype=float)
        value = np.where(
            part["survey"].to_numpy() == "nps",
            score * 10,
            100 * (score - low) / np.where(high > low, high - low, np.nan),
        )
        t = instants(answered_at[usable.to_numpy(dtype=bool)])
        ok = t <= self.as_of.value
        rows = positions_in(self.ids, part["customer_id"].to_numpy()[ok])
        period = np.clip(self.spine.index(period_codes(t[ok], self.spine.freq, self.spine.tz)), 0, self.shape[1] - 1)
        order = np.argsort(t[ok], kind="stable")  # later answers overwrite earlier ones
        latest = np.full(self.shape, np.nan)
        latest[rows[order], period[order]] = value[ok][order]
        # carry the latest answer forward through the periods without one
        index = np.where(np.isnan(latest), -1, np.arange(self.shape[1])[None, :])
        index = np.maximum.accumulate(index, axis=1)
        return np.where(index >= 0, np.take_along_axis(latest, np.maximum(index, 0), axis=1), np.nan)

    def _ticket_load(self, tickets: pd.DataFrame, rows: np.ndarray, period: np.ndarray) -> np.ndarray:
        """Open tickets per customer and period (``rows``, ``period``: the tickets' :meth:`_rows`)."""
        created = instants(tickets["created_at"])
        inside_rows = (created != NAT) & (created <= self.as_of.value)
        load = self._cell_sum(rows, period)
        resolved = (
            instants(tickets["resolved_at"])[inside_rows] if "resolved_at" in tickets else np.full(len(rows), NAT)
        )
        abandoned = (
            tickets["abandoned"].to_numpy(dtype=bool)[inside_rows]
            if "abandoned" in tickets
            else np.zeros(len(rows), bool)
        )
        done = (resolved != NAT) & (resolved <= self.as_of.value)
        stop = np.where(done, self.spine.index(period_codes(resolved, self.spine.freq, self.spine.tz)), self.shape[1])
        open_ = ~abandoned
        n_c, n_p = self.shape
        # still open at the end of later periods (its creation period already counts it once)
        start = np.clip(period[open_] + 1, 0, n_p)
        stop = np.clip(stop[open_], 0, n_p)
        keep = stop > start
        diff = np.zeros(n_c * (n_p + 1))
        np.add.at(diff, rows[open_][keep] * (n_p + 1) + start[keep], 1.0)
        np.add.at(diff, rows[open_][keep] * (n_p + 1) + stop[keep], -1.0)
        return load + np.cumsum(diff.reshape(n_c, n_p + 1), axis=1)[:, :n_p]

    def _mrr(
        self, billing: pd.DataFrame, fx: pd.DataFrame | None, memo: Any = None, context: BillingContext | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """MRR at each period end (exact: summed in integer money units) and whether the customer
        is active in the period (§14: MRR > 0 at some instant of it up to as_of)."""
        calendar = (self.spine.freq, self.spine.tz, self.as_of)
        if context is None or (context.spine.freq, context.spine.tz, context.spine.as_of) != calendar:
            billing, context = prepare(billing, freq=self.spine.freq, tz=self.spine.tz, fx=fx, as_of=self.as_of)
        arrays, ledger = arrays_and_ledger(billing, context, memo)  # the revenue families' ledger when they share it
        groups = build_groups(ledger, context.spine.n)
        shift = context.spine.first - self.spine.first  # the billing spine may start earlier or later
        rows = positions_in(self.ids, arrays.customer_ids[groups.customer])
        n_c, n_p = self.shape
        at = groups.period + shift
        start = np.clip(at, 0, n_p)
        stop = np.clip(groups.next_period + shift, 0, n_p)
        stop = np.where(groups.next_period >= context.spine.n, n_p, stop)
        keep = (stop > start) & (rows >= 0)
        units = np.zeros(n_c * (n_p + 1), dtype=np.int64)
        np.add.at(units, rows[keep] * (n_p + 1) + start[keep], groups.end_mrr[keep])
        np.add.at(units, rows[keep] * (n_p + 1) + stop[keep], -groups.end_mrr[keep])
        mrr_units = np.cumsum(units.reshape(n_c, n_p + 1), axis=1)[:, :n_p]
        # active: in a period with instants, MRR > 0 before the first or after any of them; in the
        # periods up to the customer's next instant, its MRR after the last one (> 0 in exact units)
        active = np.zeros(n_c * (n_p + 1), dtype=np.int64)
        after_start = np.clip(at + 1, 0, n_p)
        carried = keep & (groups.end_mrr > 0) & (stop > after_start)
        np.add.at(active, rows[carried] * (n_p + 1) + after_start[carried], 1)
        np.add.at(active, rows[carried] * (n_p + 1) + stop[carried], -1)
        live = np.cumsum(active.reshape(n_c, n_p + 1), axis=1)[:, :n_p] > 0
        inside = (rows >= 0) & (at >= 0) & (at < n_p)
        highest, first_instant = group_peaks(ledger)
        # the MRR before the group's first instant counts when that instant comes after the period starts
        period_start = np.asarray(context.spine.starts.asi8)[np.clip(groups.period, 0, context.spine.n - 1)]
        peak = ((groups.start_mrr > 0) & (first_instant > period_start)) | (highest > 0)
        live[rows[inside & peak], at[inside & peak]] = True
        return mrr_units / MONEY_SCALE, live

    def rows(self) -> pd.DataFrame:
        """The component inputs of every scored (live) customer and period, before the scale is known,
        by (period, customer_id)."""
        periods, rows = np.nonzero(self.live.T)
        out = pd.DataFrame({"customer_id": self.ids.to_numpy()[rows], "period": self.spine.starts[periods]})
        out["usage"] = self.usage[rows, periods]
        out["sentiment"] = self.sentiment[rows, periods]
        out["support_load"] = self.support_load[rows, periods] if self.has_support else np.nan
        out["revenue"] = self.revenue[rows, periods]
        out["mrr"] = self.mrr[rows, periods]
        return out


def _weakest(picked: np.ndarray, weights: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Code of the component that costs each row the most points (weight share * (100 - its score);
    the first on ties), -1 where none is used: one component at a time (no (rows, components) temporaries).
    The shares' common denominator (the row's weight total) does not change which is largest."""
    best = np.full(len(picked), -np.inf)
    weakest = np.full(len(picked), -1, dtype=np.int64)
    for i, weight in enumerate(weights):
        if weight <= 0:
            continue
        column = picked[:, i]
        cost = np.where(np.isnan(column), -np.inf, weight * (100 - column))
        higher = cost > best
        best = np.where(higher, cost, best)
        weakest[higher] = i
    return np.where(used > 0, weakest, -1)


def _band_codes(score: np.ndarray, edges: tuple[float, float]) -> np.ndarray:
    """The band of each score as a code into BANDS (-1 where no score): :func:`band_of`'s rule."""
    with np.errstate(invalid="ignore"):
        code = (score >= edges[0]).astype(np.int8) + (score >= edges[1])
    return np.where(np.isnan(score), np.int8(-1), code)


def _cell_keys(rows: pd.DataFrame, spine: Spine, trend_periods: int) -> tuple[np.ndarray, int]:
    """(key per row, customers' width): (period index + trend_periods) * width + customer code, the
    codes in customer_id order, so that keys ascend with (period, customer_id) and the row of the same
    customer ``lag`` periods earlier has the key ``lag * width`` lower (never negative)."""
    period = spine.index(period_codes(rows["period"], spine.freq, spine.tz)).astype(np.int64)
    codes, width = dense_codes(rows["customer_id"], ordered=True)
    return (period + trend_periods) * width + codes, width


#: band_change texts by (previous band code + 1) * 4 + (band code + 1); "" where either is missing or equal
_TRANSITIONS = ("", *(f"{a}->{b}" for a in BANDS for b in BANDS if a != b))
_TRANSITION_OF = np.array(
    [
        _TRANSITIONS.index(f"{BANDS[i - 1]}->{BANDS[j - 1]}") if i and j and i != j else 0
        for i in range(4)
        for j in range(4)
    ]
)


def _over_time(
    key: np.ndarray, width: int, score: np.ndarray, band: np.ndarray, trend_periods: int
) -> tuple[np.ndarray, Any, np.ndarray]:
    """(score_change, band_change, trend) of rows in ascending :func:`_cell_keys` order: the same
    customer's earlier rows are found by binary search with ascending needles (one pass each)."""
    n = len(key)

    def back(lag: int) -> np.ndarray:
        """Row of the same customer ``lag`` periods earlier, or -1."""
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        wanted = key - lag * width
        pos = np.minimum(np.searchsorted(key, wanted), n - 1)
        return np.where(key[pos] == wanted, pos, -1)

    earlier = {lag: back(lag) for lag in range(1, max(trend_periods, 2))}
    previous = earlier[1]
    had = previous >= 0
    safe = np.maximum(previous, 0)
    change = np.where(had, score - score[safe], np.nan) if n else score.copy()
    prior_band = np.where(had, band[safe], -1) if n else band
    transition = text_of_codes(_TRANSITION_OF[(prior_band.astype(np.int64) + 1) * 4 + (band + 1)], _TRANSITIONS)
    # least-squares slope over the scored periods among the last trend_periods (x = -lag)
    count, sx, sy, sxx, sxy = (np.zeros(n) for _ in range(5))
    for lag in range(trend_periods):
        value = score if lag == 0 else np.where(earlier[lag] >= 0, score[np.maximum(earlier[lag], 0)], np.nan)
        present = ~np.isnan(value)
        y = np.where(present, value, 0.0)
        x = -float(lag)
        count += present
        sx += present * x
        sy += y
        sxx += present * x * x
        sxy += x * y
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (count * sxy - sx * sy) / (count * sxx - sx * sx)
    return change, transition, np.where(count >= 2, slope, np.nan)


def health_spine(
    *,
    freq: str = "M",
    tz: str = "UTC",
    as_of: object = None,
    start: object = None,
    end: object = None,
    **tables: pd.DataFrame | None,
) -> Spine:
    """The scorecard's periods: from the earliest to the latest timestamp (up to as_of) of any table."""
    known = [instants(t[c]) for name, t in tables.items() if t is not None for c in AS_OF_COLUMNS[name] if c in t]
    if not known:
        raise ConfigError("HealthScorecard needs at least one of events, surveys, tickets, billing")
    freq, tz = check_freq(freq), check_tz(tz)
    latest = max((int(k.max()) for k in known if len(k)), default=NAT)  # NaT is the smallest int64
    if as_of is None and latest == NAT:
        raise ConfigError("the health tables hold no timestamps: cannot infer as_of; pass as_of=")
    as_of_ts = resolve_as_of(as_of) if as_of is not None else pd.Timestamp(latest, tz="UTC")
    # the earliest and latest instant by as_of of each column (no copy of the columns)
    ranges = [r for r in (instant_range(k, as_of_ts.value) for k in known) if r is not None]
    if as_of is not None:  # as with the other families, an explicit as_of runs the spine through its period
        ranges.append((as_of_ts.value, as_of_ts.value))
    bounds = (
        np.array([min(r[0] for r in ranges), max(r[1] for r in ranges)], dtype=np.int64)
        if ranges
        else np.array([], dtype=np.int64)
    )
    return make_spine(period_codes(bounds, freq, tz), freq, tz, as_of_ts, start, end)


def load_counts(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Distinct positive ticket loads of scored rows and how often each occurs."""
    load = rows["support_load"].to_numpy(dtype=float)
    return np.unique(load[load > 0], return_counts=True)


def scores_spine(periods: Sequence[pd.Series], freq: str, tz: str) -> Spine:
    """The periods from the first to the last of the scored rows' (as_of: the last period's start)."""
    codes = np.concatenate([period_codes(p, freq, tz) for p in periods if len(p)] or [np.array([], dtype=np.int64)])
    as_of = max((p.max() for p in periods if len(p)), default=pd.Timestamp.now(tz="UTC"))
    first, last = (int(codes.min()), int(codes.max())) if len(codes) else (0, 0)
    return Spine(freq=freq, tz=tz, first=first, last=last, as_of=pd.Timestamp(as_of).tz_convert("UTC"))


_SCORE_SUMS = ("scored", "score_sum", *(f"n_{band}" for band in BANDS), "new_red", "change_sum", "changes")


def aggregate_partial(scores: pd.DataFrame, spine: Spine, *, by=None, customers=None) -> pd.DataFrame:
    """Additive sums per (period, segment) of scored rows: count, score sum, rows per band."""
    by = [by] if isinstance(by, str) else list(by or [])
    seg, seg_table = encode_segments(attach_segments(scores, by, customers, "customers"))
    grid = Grid(spine.n, len(seg_table) if seg_table is not None else 1)
    scored = ~scores["score"].isna().to_numpy()
    cells = grid.points(spine.index(period_codes(scores["period"], spine.freq, spine.tz)), seg)
    columns = {
        "scored": grid.add(cells, scored),
        "score_sum": grid.add(cells, np.where(scored, scores["score"].to_numpy(dtype=float), 0.0)),
    }
    band = {name: scored & _is(scores["band"], name) for name in BANDS}  # text compared in Arrow, not per row
    for name in BANDS:
        columns[f"n_{name}"] = grid.add(cells, band[name])
    # newly red: red now, scored in the preceding period and not red then (band_change ends in ->red)
    moved = (
        ~_is(scores["band_change"], "") & scores["band_change"].notna().to_numpy() if "band_change" in scores else False
    )
    columns["new_red"] = grid.add(cells, band["red"] & moved)
    change = scores["score_change"].to_numpy(dtype=float) if "score_change" in scores else np.full(len(scores), np.nan)
    columns["change_sum"] = grid.add(cells, np.nan_to_num(change))
    columns["changes"] = grid.add(cells, ~np.isnan(change))
    return long_partial(columns, _SCORE_SUMS, seg_table, spine.n)


def _is(text: pd.Series, value: str) -> np.ndarray:
    """Rows whose text equals ``value`` (null: False)."""
    return (text == value).to_numpy(dtype=bool, na_value=False)


def aggregate_finalize(partials: Sequence[pd.DataFrame], spine: Spine, *, by=None) -> pd.DataFrame:
    """health_score_mean and band shares from the partials of disjoint customer sets."""
    by = [by] if isinstance(by, str) else list(by or [])
    a, seg_table = dense(combine(partials, by, _SCORE_SUMS), by, _SCORE_SUMS, spine.n)
    builder = FrameBuilder(spine, seg_table)
    builder.ratio("health_score_mean", a["score_sum"], a["scored"])
    for name in BANDS:
        builder.ratio(f"health_{name}_share", a[f"n_{name}"], a["scored"])
    builder.add("health_new_red", a["new_red"])
    builder.ratio("health_score_change_mean", a["change_sum"], a["changes"])
    return builder.build()


def red_by_mrr(scores: pd.DataFrame, period: object = None) -> pd.DataFrame:
    """The red rows of a scorecard's period (default: the last), largest MRR first, then lowest score."""
    if scores.empty:
        return scores
    if period is None:
        target = scores["period"].max()
    else:
        target = pd.Timestamp(period)
        target = target.tz_localize(scores["period"].dt.tz) if target.tzinfo is None else target
    # §14: a customer scored in its churn period but with MRR 0 at its end is no longer at risk
    red = scores[(scores["period"] == target) & (scores["band"] == "red") & ~(scores["mrr"] == 0)]
    # customer_id last: ties come out in one order whatever order the rows arrive in (either engine)
    return red.sort_values(
        ["mrr", "score", "customer_id"], ascending=[False, True, True], na_position="last", kind="stable"
    ).reset_index(drop=True)
