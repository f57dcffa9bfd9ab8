"""Intervals and tests: pure numpy, vectorized over periods and segments.

- :func:`safe_ratio`: a ratio that is NaN, never inf, where the base is zero.
- :func:`wilson_interval`: Wilson score interval of a proportion.
- :func:`nps_interval`: adjusted-Wald interval of NPS (Rocks 2016, "Confidence
  intervals for Net Promoter Scores"), the formula of METRICS.md §7.
- :func:`two_proportion_test`, :func:`nps_difference_test`: is a change real?
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "Z95",
    "normal_two_sided_p",
    "nps_adjusted",
    "nps_difference_test",
    "nps_interval",
    "quantile_by_group",
    "quantile_of_counts",
    "quantiles_by_group",
    "quantiles_by_group_columns",
    "safe_ratio",
    "two_proportion_test",
    "wilson_interval",
]

Z95 = 1.959963984540054


def safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 or NaN."""
    num = np.asarray(numerator, dtype=float)
    den = np.asarray(denominator, dtype=float)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    ok = np.isfinite(den) & (den != 0)
    np.divide(num, den, out=out, where=ok)
    return out


def wilson_interval(successes: np.ndarray, n: np.ndarray, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval; NaN where n == 0.

    Examples
    --------
    >>> low, high = wilson_interval(np.array([40]), np.array([50]))
    >>> round(float(low[0]), 4), round(float(high[0]), 4)
    (0.6696, 0.8876)
    """
    k = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    p = safe_ratio(k, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        z2n = z * z / n
        center = (p + z2n / 2) / (1 + z2n)
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z2n)
    # the Wilson interval always contains p; clamp away rounding (k = 0 gives low = 0 exactly)
    low = np.clip(np.minimum(center - half, p), 0.0, 1.0)
    high = np.clip(np.maximum(center + half, p), 0.0, 1.0)
    return np.where(n > 0, low, np.nan), np.where(n > 0, high, np.nan)


def nps_adjusted(promoters: np.ndarray, detractors: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Adjusted-Wald NPS estimate (as a fraction) and its variance."""
    n3 = np.asarray(n, dtype=float) + 3.0
    p = (np.asarray(promoters, dtype=float) + 0.75) / n3
    d = (np.asarray(detractors, dtype=float) + 0.75) / n3
    diff = p - d
    return diff, (p + d - diff * diff) / n3


def nps_interval(
    promoters: np.ndarray, detractors: np.ndarray, n: np.ndarray, z: float = Z95
) -> tuple[np.ndarray, np.ndarray]:
    """Adjusted-Wald 95% interval of NPS on the -100..100 scale; NaN where n == 0.

    The interval is centred on the adjusted estimate, so with very few answers it
    need not contain the raw NPS (one promoter: NPS 100, interval [-48.5, 98.5]).

    Examples
    --------
    The worked case of METRICS.md §7 (50 promoters, 30 passives, 20 detractors):

    >>> low, high = nps_interval(np.array([50]), np.array([20]), np.array([100]), z=1.96)
    >>> round(float(low[0]), 2), round(float(high[0]), 2)
    (14.05, 44.2)
    """
    diff, var = nps_adjusted(promoters, detractors, n)
    half = z * np.sqrt(var)
    n = np.asarray(n, dtype=float)
    low = np.clip(100 * (diff - half), -100.0, 100.0)
    high = np.clip(100 * (diff + half), -100.0, 100.0)
    return np.where(n > 0, low, np.nan), np.where(n > 0, high, np.nan)


def normal_two_sided_p(z: np.ndarray) -> np.ndarray:
    """Two-sided p-value of a standard normal statistic."""
    z = np.asarray(z, dtype=float)
    erfc = np.vectorize(math.erfc, otypes=[float])
    return np.where(np.isnan(z), np.nan, erfc(np.abs(np.nan_to_num(z)) / math.sqrt(2)))


def two_proportion_test(
    k1: np.ndarray, n1: np.ndarray, k2: np.ndarray, n2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled two-proportion z test of p2 - p1; returns (z, p-value), NaN where undefined."""
    k1, n1, k2, n2 = (np.asarray(a, dtype=float) for a in (k1, n1, k2, n2))
    pooled = safe_ratio(k1 + k2, n1 + n2)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = safe_ratio(safe_ratio(k2, n2) - safe_ratio(k1, n1), se)
    return z, normal_two_sided_p(z)


def nps_difference_test(
    promoters1: np.ndarray,
    detractors1: np.ndarray,
    n1: np.ndarray,
    promoters2: np.ndarray,
    detractors2: np.ndarray,
    n2: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """z test of the change in NPS using the adjusted-Wald variance of both periods."""
    d1, v1 = nps_adjusted(promoters1, detractors1, n1)
    d2, v2 = nps_adjusted(promoters2, detractors2, n2)
    valid = (np.asarray(n1) > 0) & (np.asarray(n2) > 0)
    z = np.where(valid, safe_ratio(d2 - d1, np.sqrt(v1 + v2)), np.nan)
    return z, normal_two_sided_p(z)


def quantiles_by_group(
    values: np.ndarray, groups: np.ndarray, n_groups: int, qs: tuple[float, ...] = (0.5,)
) -> np.ndarray:
    """Linear-interpolation quantiles (numpy's default) of ``values`` per integer group.

    Returns an array (n_groups, len(qs)); NaN values are ignored and a group
    with no values gives NaN. With few groups (the usual period x segment grid)
    rows are ordered by group with a radix sort and each group's slice is
    partitioned; with many groups one lexsort by (group, value) picks the order
    statistics by position.
    """
    return quantiles_by_group_columns([values], groups, n_groups, qs)[0]


def quantiles_by_group_columns(
    columns: Sequence[np.ndarray], groups: np.ndarray, n_groups: int, qs: tuple[float, ...] = (0.5,)
) -> list[np.ndarray]:
    """:func:`quantiles_by_group` of several value columns over the same groups: with few groups the
    rows are ordered by group once for all of them, NaN kept (a partition puts NaN last, so the order
    statistics of a group's non-NaN values are the first of its slice)."""
    groups = np.asarray(groups, dtype=np.int64)
    if n_groups > 4096:
        return [_quantiles_by_lexsort(np.asarray(v, dtype=float), groups, n_groups, qs) for v in columns]
    counts = np.bincount(groups, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    order = np.argsort(groups.astype(np.int16), kind="stable")  # radix sort for 16-bit keys
    levels = np.asarray(qs, dtype=float)
    out = []
    for values in columns:
        values = np.asarray(values, dtype=float)
        missing = np.isnan(values)
        valid = counts - np.bincount(groups, weights=missing, minlength=n_groups).astype(np.int64)
        ordered = values[order]
        result = np.full((n_groups, len(qs)), np.nan)
        for group in np.flatnonzero(valid):
            m = int(valid[group])
            chunk = ordered[starts[group] : starts[group] + counts[group]]
            # numpy's "linear" method step by step (one partition per group, not np.quantile's checks)
            virtual = (m - 1) * levels
            below = np.floor(virtual).astype(np.int64)
            above = below + 1
            last = virtual >= m - 1
            below[last] = above[last] = m - 1
            chunk.partition(np.unique(np.concatenate([below, above])))
            result[group] = _lerp(chunk[below], chunk[above], virtual - below)
        out.append(result)
    return out


def _quantiles_by_lexsort(values: np.ndarray, groups: np.ndarray, n_groups: int, qs: tuple[float, ...]) -> np.ndarray:
    """Many groups: one lexsort by (group, value), the order statistics picked by position."""
    keep = ~np.isnan(values)
    values, groups = values[keep], groups[keep]
    out = np.full((n_groups, len(qs)), np.nan)
    counts = np.bincount(groups, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sorted_values = values[np.lexsort((values, groups))]
    has = counts > 0
    for column, q in enumerate(qs):
        pos = q * (counts[has] - 1)
        lower = np.floor(pos).astype(np.int64)
        upper = np.minimum(lower + 1, counts[has] - 1)
        low_v = sorted_values[starts[has] + lower]
        high_v = sorted_values[starts[has] + upper]
        out[has, column] = low_v + (high_v - low_v) * (pos - lower)
    return out


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy's interpolation between neighbouring order statistics (exactly, so results equal np.quantile)."""
    diff = b - a
    out = a + diff * t
    return np.where(t >= 0.5, b - diff * (1 - t), out)


def quantile_by_group(values: np.ndarray, groups: np.ndarray, n_groups: int, q: float) -> np.ndarray:
    """One quantile per group (see :func:`quantiles_by_group`)."""
    return quantiles_by_group(values, groups, n_groups, (q,))[:, 0]


def quantile_of_counts(values: np.ndarray, counts: np.ndarray, q: float) -> float:
    """numpy's linear quantile of the multiset with each of ``values`` repeated ``counts`` times.

    ``values`` need not be sorted or distinct (histograms of several partitions can simply be
    concatenated); the result equals ``np.quantile(np.repeat(values, counts), q)``.

    Examples
    --------
    >>> float(quantile_of_counts(np.array([1.0, 3.0, 2.0]), np.array([2, 1, 1]), 0.5))
    1.5
    """
    values, inverse = np.unique(np.asarray(values, dtype=float), return_inverse=True)
    counts = np.bincount(inverse, weights=np.asarray(counts, dtype=float), minlength=len(values))
    total = int(counts.sum())
    if total == 0:
        return float("nan")
    ends = np.cumsum(counts)
    h = (total - 1) * q
    lower = int(np.floor(h))
    a = values[np.searchsorted(ends, lower, side="right")]
    b = values[np.searchsorted(ends, min(lower + 1, total - 1), side="right")]
    t = h - lower
    # numpy's _lerp, so the result is bit-for-bit np.quantile's
    return float(b - (b - a) * (1 - t)) if t >= 0.5 else float(a + (b - a) * t)
