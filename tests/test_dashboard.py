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


# --------------------------------------------------------------------------
# The page as a customer-success lead reads it (issue 15)
# --------------------------------------------------------------------------
import re  # noqa: E402

from csmetrics.dashboard import format_value  # noqa: E402


@pytest.fixture(scope="module")
def sample_page():
    from csmetrics.io import read_tables
    from csmetrics.report import report

    tables, _ = read_tables("sample_data")
    result = report(tables, by=["region"])
    return result, result.html


def test_values_units_and_changes_read_like_a_person_writes_them():
    assert format_value(87964.7, "currency", "AUD") == "AUD 87,965"
    assert format_value(0.5432, "fraction") == "54.3%"
    assert format_value(373.0, "seconds") == "6.2 min"
    assert format_value(200.0, "minutes") == "3.3 h"
    from csmetrics.dashboard import _change_text

    assert _change_text(0.021, "fraction", None) == "▲ 2.1 pp"
    assert _change_text(-1713.0, "currency", "AUD") == "▼ AUD 1,713"
    assert _change_text(float("nan"), "count", None) == "no previous period"


def test_headlines_are_named_with_currency_answers_and_dates(sample_page):
    result, page = sample_page
    assert "headlines for November 2024, complete; December 2024 is partial" in page
    assert "As of 31 Dec 2024 07:24 UTC" in page
    assert "+00:00" not in page  # no raw timestamps
    assert "USD 87,965" in page  # MRR with its currency
    assert re.search(r"\d+ answers · 95% interval", page)  # NPS / CSAT answers and interval
    assert " pp (" in page  # rate changes in percentage points
    # snake_case names are not the tiles' labels
    tiles = re.findall(r'<div class="name">([^<]*)</div>', page)
    assert tiles and not any("_" in t for t in tiles)


def test_data_quality_panel(sample_page):
    _, page = sample_page
    assert "Base currency: <b>USD</b>, FX mode: <b>line</b>" in page
    assert "December 2024 is partial" in page
    assert "Health components with data: <b>4 of 4</b>" in page
    assert "rows rejected" in page


def test_quality_panel_names_rejections_missing_tables_and_a_thin_scorecard(tmp_path):
    from csmetrics.io import read_tables
    from csmetrics.report import report

    tables, _ = read_tables("sample_data")
    tickets = tables["tickets"].copy()
    tickets.loc[tickets.index[:3], "created_at"] = pd.NaT
    result = report({"tickets": tickets, "surveys": tables["surveys"]}, quarantine=True)
    page = result.html
    assert re.search(r"<td>tickets</td><td>[\d,]+</td><td>3</td><td>created_at", page)
    assert "Tables not found" in page and "<code>billing</code>" in page and "<code>events</code>" in page
    assert "Health components with data: <b>2 of 4</b>. Health scores rest on fewer than 3 components" in page
    # empty states: one line, no chart
    assert "No revenue data: the billing table was not found." in page
    assert "MRR bridge" not in page and "Usage retention" not in page


def test_no_answers_no_nps_chart(tmp_path):
    from csmetrics.report import report

    tickets = pd.DataFrame({"ticket_id": [1, 2], "customer_id": [7, 8], "created_at": ["2024-01-02", "2024-02-03"]})
    page = report({"tickets": tickets}).html
    assert "NPS" not in page.split("Definitions")[0].replace("No surveys data", "")
    assert "No surveys data: the surveys table was not found." in page


def test_charts_are_accessible_and_hoverable(sample_page):
    _, page = sample_page
    svgs = re.findall(r"<svg viewBox[^>]*>", page)
    assert len(svgs) >= 8
    assert all('role="img"' in s and "aria-label=" in s for s in svgs)
    assert page.count("<title>") > 100  # every mark carries its value
    # direction never by colour alone: arrows and words on the tiles, signed labels on the bridge
    assert "(better)" in page and "(worse)" in page and "▲" in page and "▼" in page
    # the Okabe-Ito palette, not red/green
    assert "#0072B2" in page and "#16a34a" not in page


def test_period_selector_segments_and_heatmaps(sample_page):
    _, page = sample_page
    options = re.findall(r'<option value="(p\d+)">', page)
    assert len(options) >= 12
    assert page.count('class="cards headline" data-period="p0"') == page.count('class="cards headline"') // len(options)
    assert "By segment, November 2024" in page and "By region" in page and 'data-segment="EMEA"' in page
    assert "Cohort logo retention" in page and "Cohort revenue retention" in page


def test_every_chart_has_a_legend_or_a_single_series(sample_page):
    _, page = sample_page
    figures = re.findall(r'<figure class="chart">(.*?)</figure>', page, flags=re.S)
    assert len(figures) >= 8
    for figure in figures:
        lines = figure.count("<polyline")
        stacked = len(set(re.findall(r'<rect [^>]*fill="(#[0-9A-Fa-f]{6})"><title>[^<]*, (red|yellow|green):', figure)))
        if lines > 1 or stacked > 1 or "95% interval" in figure:
            assert '<figcaption class="legend">' in figure, figure[:200]


def test_chart_functions_label_axes_and_values():
    from csmetrics.charts import line_chart, waterfall

    one = line_chart(["Jan", "Feb"], [("MRR", [1.0, 2.0])], title="MRR (AUD)", y_label="MRR (AUD)")
    assert "figcaption" not in one and "MRR (AUD)" in one and "<title>MRR, Feb: 2</title>" in one
    two = line_chart(["Jan", "Feb"], [("a", [1.0, 2.0]), ("b", [2.0, 1.0])], title="t", y_label="y")
    assert two.count('class="key"') == 2
    bars = waterfall([("start", 0, 100, 100), ("new", 100, 20, 20), ("churn", 110, 10, -10), ("end", 0, 110, 110)],
                     None, title="bridge", y_label="MRR (AUD)", fmt=lambda v: f"{v:,.0f}")  # fmt: skip
    assert "▲ 20" in bars and "▼ 10" in bars and 'aria-label="bridge: start 100, new 20, churn -10, end 110"' in bars
