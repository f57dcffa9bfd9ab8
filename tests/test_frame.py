"""The metric frame: builder, schema, to_wide, exact re-aggregation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from csmetrics.frame import FrameBuilder, encode_segments, reaggregate, to_wide
from csmetrics.periods import make_spine, period_codes, to_utc
from csmetrics.schemas import MetricFrame


def spine(months: int = 3):
    codes = period_codes(pd.Series(pd.date_range("2024-01-01", periods=months, freq="MS", tz="UTC")), "M")
    return make_spine(codes, "M", "UTC", as_of=to_utc("2030-01-01"))


def test_builder_writes_the_long_frame_of_section_3():
    builder = FrameBuilder(spine(2), pd.DataFrame({"channel": ["chat", "email"]}))
    builder.add("tickets", np.array([[100, 50], [0, 10]]))
    builder.ratio("fcr_rate", np.array([[78, 25], [0, 5]]), np.array([[100, 50], [0, 10]]))
    frame = builder.build()
    MetricFrame.validate(frame)
    assert list(frame.columns) == ["period", "freq", "channel", "metric", "value", "numerator", "denominator", "ci_low", "ci_high"]
    fcr = frame[(frame["metric"] == "fcr_rate") & (frame["channel"] == "chat")]
    assert fcr["value"].iloc[0] == pytest.approx(0.78)  # the seed example: 78 of 100 at first contact
    assert np.isnan(fcr["value"].iloc[1])  # zero denominator -> NaN, not inf
    assert fcr["ci_low"].iloc[0] < 0.78 < fcr["ci_high"].iloc[0]
    assert frame.loc[frame["metric"] == "tickets", "numerator"].isna().all()


def test_to_wide():
    builder = FrameBuilder(spine(1))
    builder.add("tickets", np.array([[40.0]]))
    builder.ratio("csat", np.array([[40]]), np.array([[50]]))
    wide = to_wide(builder.build())
    assert wide[["tickets", "csat"]].to_numpy().tolist() == [[40.0, 0.8]]  # 40 positive of 50 -> 0.80


def test_to_wide_lays_out_every_key_combination_as_pivot_table_does():
    """Rows for each (period, freq, segment) combination of the keys' sorted values, nulls last, the
    metrics in order of appearance, an absent cell NaN: pandas' pivot_table(dropna=False) layout."""
    frame = pd.DataFrame(
        {
            "period": pd.to_datetime(["2024-02-01", "2024-02-01", "2024-01-01", "2024-01-01"], utc=True),
            "freq": "M",
            "plan": ["b", None, "a", "a"],
            "metric": ["y", "x", "y", "x"],
            "value": [3.0, 4.0, 2.0, 1.0],
        }
    )
    wide = to_wide(frame)
    assert list(wide.columns) == ["period", "freq", "plan", "y", "x"]
    assert wide["plan"].isna().tolist() == [False, False, True] * 2 and wide["plan"].tolist()[:2] == ["a", "b"]
    assert wide["period"].dt.month.tolist() == [1, 1, 1, 2, 2, 2]
    values = wide[["y", "x"]].to_numpy().tolist()
    assert values[0] == [2.0, 1.0]  # January, a
    assert np.isnan(values[1]).all() and np.isnan(values[2]).all()  # January b and null: absent
    assert values[4][0] == 3.0 and np.isnan(values[4][1])  # February b: y only
    assert np.isnan(values[5][0]) and values[5][1] == 4.0  # February null plan: x only


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from(["a", "b", None]), st.sampled_from(["m1", "m2", "m3"]), st.floats(-5, 5)),
        min_size=1,
        max_size=30,
        unique_by=lambda r: (r[0], r[1], r[2]),
    )
)
def test_to_wide_equals_pivot_table(rows):
    assume(any(plan is not None for _, plan, _, _ in rows))  # an all-null segment: pivot_table makes it float NaN, to_wide keeps None
    frame = pd.DataFrame(rows, columns=["month", "plan", "metric", "value"])
    frame.insert(0, "period", pd.to_datetime("2024-01-01", utc=True) + pd.to_timedelta(frame.pop("month") * 31, unit="D"))
    frame.insert(1, "freq", "M")
    expected = frame.pivot_table(
        index=["period", "freq", "plan"], columns="metric", values="value", aggfunc="first", dropna=False, observed=True
    )
    expected = expected.reindex(columns=list(dict.fromkeys(frame["metric"]))).reset_index()
    expected.columns.name = None
    pd.testing.assert_frame_equal(to_wide(frame), expected)


def test_null_segment_is_its_own_group():
    codes, table = encode_segments(pd.DataFrame({"region": ["NA", None, "EU", None]}))
    assert len(table) == 3 and table["region"].isna().sum() == 1
    assert codes[1] == codes[3] != codes[0]


def test_reaggregate_rolls_stocks_and_flows_up_over_time():
    builder = FrameBuilder(spine(3))
    builder.add("mrr", np.array([[10.0], [20.0], [30.0]]))
    builder.add("mrr_start", np.array([[5.0], [10.0], [20.0]]))
    builder.add("new_mrr", np.array([[1.0], [2.0], [3.0]]))
    builder.ratio("fcr_rate", np.array([[1], [2], [3]]), np.array([[2], [4], [4]]))
    builder.ratio("nrr", np.array([[1], [2], [3]]), np.array([[2], [4], [4]]))
    quarter = reaggregate(builder.build(), freq="Q").set_index("metric")
    assert quarter.loc["mrr", "value"] == 30.0  # snapshot at the quarter's end
    assert quarter.loc["mrr_start", "value"] == 5.0  # snapshot at its start
    assert quarter.loc["new_mrr", "value"] == 6.0
    assert quarter.loc["fcr_rate", "value"] == pytest.approx(6 / 10)
    assert "nrr" not in quarter.index  # a start-based rate does not pool over months


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 50), st.integers(0, 50)), min_size=1, max_size=30))
def test_property_reaggregating_segments_equals_unsegmented(rows):
    """Per-segment numerators/denominators summed equal the unsegmented computation."""
    seg = np.array([r[0] for r in rows])
    success = np.array([min(r[1], r[2]) for r in rows], dtype=float)
    trials = np.array([r[2] for r in rows], dtype=float)
    n_seg = 4
    builder = FrameBuilder(spine(1), pd.DataFrame({"segment": list("abcd")}))
    num = np.bincount(seg, success, n_seg)[None, :]
    den = np.bincount(seg, trials, n_seg)[None, :]
    builder.ratio("csat", num, den)
    builder.add("tickets", den)
    combined = reaggregate(builder.build()).set_index("metric")
    whole = FrameBuilder(spine(1))
    whole.ratio("csat", np.array([[success.sum()]]), np.array([[trials.sum()]]))
    whole.add("tickets", np.array([[trials.sum()]]))
    expected = whole.build().set_index("metric")
    for metric in ("csat", "tickets"):
        for column in ("value", "numerator", "denominator", "ci_low", "ci_high"):
            a, b = combined.loc[metric, column], expected.loc[metric, column]
            assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, rel=1e-12)


@pytest.mark.parametrize(
    "ids",
    [
        pd.Series([5, 3, 5, 9]),
        pd.Series([5, None, 5, 9], dtype="Int64"),
        pd.Series([None, None], dtype="Int64"),
        pd.Series([10**15, 3, None, 3], dtype="Int64"),
        pd.Series(["b", None, "a", "b"], dtype="str"),
        pd.Series([2**63 + 1, 3, 3], dtype="uint64"),
    ],
)
def test_dense_codes_tell_ids_apart_and_keep_missing(ids):
    from csmetrics.frame import dense_codes

    codes, width = dense_codes(ids)
    missing = ids.isna().to_numpy()
    assert (codes[missing] == -1).all() and (codes[~missing] >= 0).all() and (codes < width).all()
    present = ids[~missing].to_numpy(dtype=object)
    # equal ids, equal codes; different ids, different codes
    pairs = [(a == b, c == d) for a, c in zip(present, codes[~missing]) for b, d in zip(present, codes[~missing])]
    assert all(same_id == same_code for same_id, same_code in pairs)
    ordered, _ = dense_codes(ids, ordered=True)
    order = np.argsort(ordered[~missing], kind="stable")
    assert list(present[order]) == sorted(present)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.integers(-50, 50), min_size=0, max_size=30, unique=True),
    st.lists(st.integers(-80, 80), min_size=0, max_size=40),
    st.sampled_from([1, 10**12, "uint", "text"]),
)
def test_positions_in_is_get_indexer(ids, keys, kind):
    """Positions of keys among unique ids (-1 where absent), as pandas' get_indexer gives them: a table
    of offsets for integer ids of a narrow range, a hash for wide ids or text."""
    from csmetrics.frame import positions_in

    if kind == "text":
        index, found = pd.Index([f"c{i}" for i in ids], dtype="str"), np.array([f"c{k}" for k in keys], dtype=object)
    elif kind == "uint":
        index, found = pd.Index(np.array([i + 50 for i in ids], dtype=np.uint64)), np.array([k + 80 for k in keys], dtype=np.uint64)
    else:
        index, found = pd.Index(np.array(ids, dtype=np.int64) * kind), np.array(keys, dtype=np.int64) * kind
    got = positions_in(index, found)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, index.get_indexer(found))
