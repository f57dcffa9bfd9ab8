"""Intervals and tests against published numbers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from csmetrics.stats import (
    nps_difference_test,
    nps_interval,
    quantile_by_group,
    quantiles_by_group_columns,
    safe_ratio,
    two_proportion_test,
    wilson_interval,
)


def test_nps_worked_case_of_metrics_md():
    # METRICS.md §7: 50 promoters, 30 passives, 20 detractors -> NPS 30, [14.05, 44.20]
    low, high = nps_interval(np.array([50]), np.array([20]), np.array([100]), z=1.96)
    assert round(low[0], 2) == 14.05 and round(high[0], 2) == 44.20


def test_wilson_matches_newcombe_1998():
    # Newcombe (1998), Statistics in Medicine 17:857, Table I: 81/263 -> 0.2553 to 0.3662
    low, high = wilson_interval(np.array([81]), np.array([263]))
    assert low[0] == pytest.approx(0.2553, abs=5e-5) and high[0] == pytest.approx(0.3662, abs=5e-5)
    # 15/148 -> 0.0624 to 0.1605
    low, high = wilson_interval(np.array([15]), np.array([148]))
    assert low[0] == pytest.approx(0.0624, abs=5e-5) and high[0] == pytest.approx(0.1605, abs=5e-5)


def test_empty_groups_give_nan_not_inf():
    assert np.isnan(safe_ratio(np.array([1.0]), np.array([0.0]))).all()
    low, high = wilson_interval(np.array([0]), np.array([0]))
    assert np.isnan(low[0]) and np.isnan(high[0])
    low, high = nps_interval(np.array([0]), np.array([0]), np.array([0]))
    assert np.isnan(low[0])


def test_two_proportion_test_hand_computed():
    # 40/100 vs 60/100: pooled 0.5, se = sqrt(0.25 * 0.02) = 0.0707, z = 2.828, p = 0.00468
    z, p = two_proportion_test(np.array([40]), np.array([100]), np.array([60]), np.array([100]))
    assert z[0] == pytest.approx(2.8284, abs=1e-4) and p[0] == pytest.approx(0.004678, abs=1e-5)


def test_nps_difference_test_symmetry_and_zero():
    z, p = nps_difference_test(np.array([50]), np.array([20]), np.array([100]), np.array([50]), np.array([20]), np.array([100]))
    assert z[0] == 0 and p[0] == pytest.approx(1.0)
    z1, _ = nps_difference_test(np.array([50]), np.array([20]), np.array([100]), np.array([30]), np.array([40]), np.array([100]))
    z2, _ = nps_difference_test(np.array([30]), np.array([40]), np.array([100]), np.array([50]), np.array([20]), np.array([100]))
    assert z1[0] == pytest.approx(-z2[0]) and z1[0] < -1.96


@given(st.integers(0, 500), st.integers(0, 500))
def test_property_wilson_contains_estimate(k, extra):
    n = k + extra
    low, high = wilson_interval(np.array([k]), np.array([n]))
    if n == 0:
        assert np.isnan(low[0])
    else:
        assert 0 <= low[0] <= k / n <= high[0] <= 1


@given(st.integers(0, 300), st.integers(0, 300), st.integers(0, 300))
def test_property_nps_interval_contains_adjusted_estimate(promoters, passives, detractors):
    n = promoters + passives + detractors
    low, high = nps_interval(np.array([promoters]), np.array([detractors]), np.array([n]))
    if n:
        adjusted = 100 * ((promoters + 0.75) - (detractors + 0.75)) / (n + 3)
        assert -100 <= low[0] <= adjusted <= high[0] <= 100


@given(st.lists(st.tuples(st.integers(0, 4), st.floats(-1e6, 1e6, allow_nan=False)), min_size=1, max_size=60),
       st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
def test_property_quantile_by_group_equals_numpy(rows, q):
    groups = np.array([g for g, _ in rows])
    values = np.array([v for _, v in rows])
    out = quantile_by_group(values, groups, 5, q)
    # the many-groups path (lexsort) must agree with the few-groups path (partition)
    spread = quantile_by_group(values, groups * 1000, 5000, q)[::1000]
    np.testing.assert_allclose(spread, out, rtol=1e-12, atol=1e-9)
    for g in range(5):
        if (groups == g).any():
            assert out[g] == np.quantile(values[groups == g], q)  # exactly numpy's linear method
        else:
            assert np.isnan(out[g])


@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.one_of(st.just(float("nan")), st.floats(-1e6, 1e6, allow_nan=False)),
                  st.one_of(st.just(float("nan")), st.floats(0, 1e3, allow_nan=False))),
        min_size=1, max_size=60,
    )
)  # fmt: skip
def test_property_quantiles_of_several_columns_equal_numpy_ignoring_nan(rows):
    """Columns ordered by group once, NaN kept in the slices: each column's quantiles are numpy's
    over its own non-NaN values of the group."""
    groups = np.array([g for g, _, _ in rows])
    first, second = np.array([a for _, a, _ in rows]), np.array([b for _, _, b in rows])
    results = quantiles_by_group_columns([first, second], groups, 5, (0.5, 0.9))
    for values, out in zip((first, second), results, strict=True):
        for g in range(5):
            mine = values[(groups == g) & ~np.isnan(values)]
            if len(mine):
                assert out[g].tolist() == np.quantile(mine, [0.5, 0.9]).tolist()
            else:
                assert np.isnan(out[g]).all()
