"""The dashboard's pieces, as a person reads them."""

from __future__ import annotations

import pandas as pd
import pytest

from csmetrics.dashboard import bridge_layout


def test_bridge_axis_covers_a_running_total_above_start_and_end():
    # start 100,000; +5,000 new; +1,713 expansion; -6,000 churn: the running total peaks at 106,713,
    # above both the start and the end (100,713); the axis must show it and every bar whole
    at = pd.Series({"mrr_start": 100_000.0, "new_mrr": 5_000.0, "expansion_mrr": 1_713.0, "churned_mrr": 6_000.0})
    steps, bars, limits = bridge_layout(at)
    assert [b[0] for b in bars] == ["start", "new", "reactivation", "expansion", "contraction", "churn", "end"]
    assert bars[-1][2] == pytest.approx(100_713)
    low, high = limits
    for name, bottom, height in bars[1:-1]:
        assert low <= bottom and bottom + height <= high, name
    assert high >= 106_713 and low <= 100_000
    expansion = dict((b[0], b) for b in bars)["expansion"]
    assert expansion[1:] == (105_000, 1_713)


def test_bridge_from_zero_and_with_fx_effect():
    steps, bars, limits = bridge_layout(pd.Series({"mrr_start": 0.0, "new_mrr": 300.0, "fx_effect_mrr": -20.0}))
    assert limits is None  # starts at 0: the axis starts at 0
    assert [b[0] for b in bars][-2:] == ["fx effect", "end"]
    assert bars[-2][1:] == (280.0, 20.0) and bars[-1][2] == 280.0


def test_retention_curve_weights_cohorts_by_size_and_skips_partial_periods():
    from csmetrics.dashboard import retention_curve

    frame = pd.DataFrame(
        {
            "cohort": pd.to_datetime(["2024-01-01"] * 3 + ["2024-02-01"] * 2, utc=True),
            "offset": [0, 1, 2, 0, 1],
            "cohort_users": [10, 10, 10, 30, 30],
            "active_users": [10, 5, 2, 30, 6],
            "retention": [1, 0.5, 0.2, 1, 0.2],
            "retention_unbounded": [1, 0.6, 0.2, 1, 0.3],
            "partial": [False, False, True, False, True],
        }
    )
    curve = retention_curve(frame)
    assert curve["offset"].tolist() == [0, 1]
    assert curve["users"].tolist() == [40, 10]  # offset 1 of February is partial: left out
    assert curve["retention"].tolist() == pytest.approx([1.0, 0.5])
    assert curve["retention_unbounded"].tolist() == pytest.approx([1.0, 0.6])


def test_report_has_usage_retention_active_days_and_movers(tmp_path):
    from csmetrics.io import read_tables
    from csmetrics.report import report

    tables, _ = read_tables("sample_data")
    result = report(tables, html=True)
    assert len(result.usage_retention) and len(result.active_days)
    movers = result.health_movers
    assert 0 < len(movers) <= 25 and movers["period"].nunique() == 1
    # newly red first, then by the largest drop
    assert movers["newly_red"].is_monotonic_decreasing
    for flag, group in movers.groupby("newly_red"):
        assert group["score_change"].is_monotonic_increasing
        assert flag or (group["score_change"] < 0).all()
    for title in ("Usage retention, all cohorts", "Active days per user", "Health movers"):
        assert title in result.html
    out = result.write(tmp_path / "out")
    for name in ("usage_retention", "active_days", "health_movers"):
        assert (out / f"{name}.parquet").exists(), name
