"""order_by (one 64-bit sort of keys packed with row positions) and the step-function lookup built on it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csmetrics.metrics._billing import sort_order, step_value_at
from csmetrics.periods import NAT
from csmetrics.sorting import order_by

_INT64 = st.integers(-(2**63), 2**63 - 1)
_KEY_RANGES = st.sampled_from([(0, 3), (-5, 5), (0, 2**40), (-(2**62), 2**62), (-(2**63), 2**63 - 1), (7, 7)])


@st.composite
def _keys(draw):
    n = draw(st.integers(0, 60))
    keys = []
    for _ in range(draw(st.integers(1, 3))):
        low, high = draw(_KEY_RANGES)
        key = np.array(draw(st.lists(st.integers(low, high), min_size=n, max_size=n)), dtype=np.int64)
        if draw(st.booleans()):
            key = np.sort(key)  # an ascending last key is dropped (the stable sort keeps it)
        keys.append(key)
    return keys


@settings(max_examples=300, deadline=None)
@given(_keys())
def test_order_by_is_numpys_lexsort(keys):
    """Stable, most significant key first, for any int64 keys: narrow keys in one pass, wide ones
    (the whole int64 range, NAT included) in pieces."""
    np.testing.assert_array_equal(order_by(*keys), np.lexsort(keys[::-1]))


def test_order_by_on_many_rows_with_ties_and_wide_keys():
    rng = np.random.default_rng(5)
    n = 200_000
    customer = rng.integers(0, 5_000, n)
    instant = rng.integers(-(2**62), 2**62, n)  # with 18 bits of positions: two passes
    day = rng.integers(0, 40, n)  # many ties: the order among them is the rows'
    np.testing.assert_array_equal(order_by(customer, day), np.lexsort((day, customer)))
    np.testing.assert_array_equal(order_by(customer, instant), np.lexsort((instant, customer)))
    np.testing.assert_array_equal(order_by(customer, np.sort(instant)), np.lexsort((np.sort(instant), customer)))
    # timestamps on a day or a second grid: sorted by the quotient in one pass, the same order
    np.testing.assert_array_equal(sort_order(customer, day * 86_400 * 10**9), np.lexsort((day, customer)))
    seconds = rng.integers(0, 10**8, n) * 10**9 + 1_700_000_000 * 10**9
    np.testing.assert_array_equal(sort_order(customer, seconds), np.lexsort((seconds, customer)))
    seconds[7] += 1  # off the grid: pieces
    np.testing.assert_array_equal(sort_order(customer, seconds), np.lexsort((seconds, customer)))


def test_order_by_rejects_keys_of_different_lengths():
    with pytest.raises(ValueError, match="different lengths"):
        order_by(np.arange(3), np.arange(4))
    with pytest.raises(ValueError, match="at least one key"):
        order_by()


def _step_values_by_hand(keys, at, values, customer, instant):
    out = np.zeros(len(customer), dtype=values.dtype)
    for i, (c, t) in enumerate(zip(customer, instant, strict=True)):
        mine = np.flatnonzero((keys == c) & (at <= t))
        out[i] = values[mine[-1]] if len(mine) else 0
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 40), st.integers(-50, 50)), max_size=40),
    st.lists(st.tuples(st.integers(0, 7), st.integers(-2, 45)), max_size=30),
    st.sampled_from([86_400 * 10**9, 10**9, 1, 3_600 * 10**9 + 1]),
    st.booleans(),
)
def test_step_value_at_is_the_latest_value_at_or_before(rows, queries, unit, with_nat):
    """The combined-key binary search (keys fit int64) and the per-block search (NAT present) agree
    with a search by hand, in days, seconds or nanoseconds."""
    rows = sorted(rows)
    keys = np.array([r[0] for r in rows], dtype=np.int64)
    at = np.array([r[1] for r in rows], dtype=np.int64) * unit + 1_700_000_000 * 10**9
    values = np.array([r[2] for r in rows], dtype=np.int64)
    customer = np.array([q[0] for q in queries], dtype=np.int64)
    instant = np.array([q[1] for q in queries], dtype=np.int64) * unit + 1_700_000_000 * 10**9
    if with_nat and len(instant):
        instant[0] = NAT
    got = step_value_at(keys, at, values, customer, instant)
    np.testing.assert_array_equal(got, _step_values_by_hand(keys, at, values, customer, instant))


@settings(max_examples=200, deadline=None)
@given(_keys())
def test_codes_of_numbers_the_distinct_key_tuples_in_ascending_order(keys):
    from csmetrics.sorting import codes_of

    codes, n = codes_of(*keys)
    rows = list(zip(*(k.tolist() for k in keys), strict=True))
    distinct = sorted(set(rows))
    assert n == len(distinct)
    assert codes.tolist() == [distinct.index(r) for r in rows]
