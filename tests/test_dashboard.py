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
