"""fx_mode="spot" (METRICS.md §12): foreign MRR at each instant's rate, rate drift as fx_effect.

The numbers below are worked by hand from the definition: at an instant where a rate or a native
amount changes, the MRR already held is first revalued to the new rate (fx_effect), then the
native change is valued at the new rate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

import csmetrics
from csmetrics.options import ConfigError

from ..shared_data import FLIP_UNITS_PER_AUD, flipstartup_billing
from .helpers import billing, line, values
from .test_revenue_properties import SETTINGS


def rates(*rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["currency", "date", "rate"])


def monthly_eur(*amounts, start="2024-01-01"):
    first = pd.Timestamp(start)
    return billing(
        *(
            line(1, first + pd.DateOffset(months=i), first + pd.DateOffset(months=i + 1), a, currency="EUR")
            for i, a in enumerate(amounts)
        )
    )


EUR_110_120 = rates(("EUR", "2024-01-01", 1.10), ("EUR", "2024-02-15", 1.20))


def test_unchanged_euro_subscription_shows_fx_effect_not_expansion():
    # 100 EUR a month; EUR moves from 1.10 to 1.20 USD on Feb 15: +10 USD of fx effect, no expansion
    frame = csmetrics.revenue_metrics(
        monthly_eur(100, 100, 100), fx=EUR_110_120, base_currency="USD", fx_mode="spot", as_of="2024-03-20"
    )
    assert values(frame, "mrr") == pytest.approx({"2024-01-01": 110, "2024-02-01": 120, "2024-03-01": 120})
    assert values(frame, "fx_effect_mrr") == {"2024-01-01": 0, "2024-02-01": 10, "2024-03-01": 0}
    for kind in ("expansion_mrr", "contraction_mrr", "churned_mrr", "reactivation_mrr"):
        assert set(values(frame, kind).values()) == {0}, kind
    # NRR and GRR leave the fx effect out: the customer is retained at its native amount
    assert values(frame, "nrr")["2024-02-01"] == 1.0
    assert values(frame, "grr")["2024-02-01"] == 1.0
    moves = csmetrics.mrr_movements(
        monthly_eur(100, 100, 100), fx=EUR_110_120, base_currency="USD", fx_mode="spot", as_of="2024-03-20"
    )
    assert moves["kind"].tolist() == ["new", "fx_effect"]
    fx_row = moves.iloc[1]
    assert fx_row["instant"] == pd.Timestamp("2024-02-15", tz="UTC")
    assert (fx_row["amount"], fx_row["mrr_before"], fx_row["mrr_after"]) == pytest.approx((10, 110, 120))


def test_line_mode_is_the_default_and_books_the_new_rate_at_renewal():
    frame = csmetrics.revenue_metrics(monthly_eur(100, 100, 100), fx=EUR_110_120, base_currency="USD", as_of="2024-03-20")
    assert "fx_effect_mrr" not in set(frame["metric"])
    assert values(frame, "mrr") == pytest.approx({"2024-01-01": 110, "2024-02-01": 110, "2024-03-01": 120})
    assert values(frame, "expansion_mrr")["2024-03-01"] == pytest.approx(10)


def test_the_49_euro_renewal_is_no_contraction_in_spot_mode():
    # the example: 49 EUR renewed while EUR fell from 1.0850 to 1.0732: line mode books a
    # contraction of 49 x 0.0118 = 0.5782; spot mode books it as fx effect, and no movement
    fx = rates(("EUR", "2024-01-01", 1.0850), ("EUR", "2024-02-01", 1.0732))
    line_mode = csmetrics.revenue_metrics(monthly_eur(49, 49), fx=fx, base_currency="USD", as_of="2024-02-20")
    assert values(line_mode, "contraction_mrr")["2024-02-01"] == pytest.approx(0.5782)
    spot = csmetrics.revenue_metrics(monthly_eur(49, 49), fx=fx, base_currency="USD", fx_mode="spot", as_of="2024-02-20")
    assert values(spot, "contraction_mrr")["2024-02-01"] == 0
    assert values(spot, "fx_effect_mrr")["2024-02-01"] == pytest.approx(-0.5782)
    assert values(spot, "mrr")["2024-02-01"] == pytest.approx(49 * 1.0732)


def test_renewal_at_a_new_native_amount_is_valued_at_the_new_rate():
    # 100 EUR, then 150 EUR from Mar 1. (a) the rate moved on Feb 15: Mar 1 has expansion 50 x 1.20 = 60
    frame = csmetrics.revenue_metrics(
        monthly_eur(100, 100, 150), fx=EUR_110_120, base_currency="USD", fx_mode="spot", as_of="2024-03-20"
    )
    assert values(frame, "expansion_mrr")["2024-03-01"] == pytest.approx(60)
    assert values(frame, "fx_effect_mrr")["2024-03-01"] == 0
    # (b) the rate moves on the renewal day itself: first the 100 EUR held is revalued (+10), then
    # the +50 EUR is valued at the new rate (+60)
    same_day = rates(("EUR", "2024-01-01", 1.10), ("EUR", "2024-03-01", 1.20))
    frame = csmetrics.revenue_metrics(
        monthly_eur(100, 100, 150), fx=same_day, base_currency="USD", fx_mode="spot", as_of="2024-03-20"
    )
    assert values(frame, "fx_effect_mrr")["2024-03-01"] == pytest.approx(10)
    assert values(frame, "expansion_mrr")["2024-03-01"] == pytest.approx(60)
    moves = csmetrics.mrr_movements(
        monthly_eur(100, 100, 150), fx=same_day, base_currency="USD", fx_mode="spot", as_of="2024-03-20"
    )
    march = moves[moves["instant"] == pd.Timestamp("2024-03-01", tz="UTC")]
    assert march["kind"].tolist() == ["fx_effect", "expansion"]
    np.testing.assert_allclose(march[["mrr_before", "mrr_after"]].to_numpy(), [[110, 120], [120, 180]])


def test_churn_and_contraction_are_valued_at_the_rate_of_their_instant():
    # 100 EUR ends Mar 1, the day EUR goes to 1.20: fx +10, then churn of 100 x 1.20 = 120
    fx = rates(("EUR", "2024-01-01", 1.10), ("EUR", "2024-03-01", 1.20))
    frame = csmetrics.revenue_metrics(monthly_eur(100, 100), fx=fx, base_currency="USD", fx_mode="spot", as_of="2024-03-20")
    assert values(frame, "fx_effect_mrr")["2024-03-01"] == pytest.approx(10)
    assert values(frame, "churned_mrr")["2024-03-01"] == pytest.approx(120)
    assert values(frame, "mrr")["2024-03-01"] == 0
    # the churned start customer: NRR 0, revenue churn its whole start MRR
    assert values(frame, "nrr")["2024-03-01"] == 0


def test_two_currencies_of_one_customer_are_revalued_separately():
    # 100 EUR and 50 GBP a month; EUR 1.10 -> 1.20 on Feb 10, GBP 1.30 -> 1.25 on Feb 20:
    # fx effect in February = 100 x 0.10 - 50 x 0.05 = 7.5; MRR 120 + 62.5 = 182.5
    table = billing(
        line(1, "2024-01-01", "2024-04-01", 300, currency="EUR"),
        line(1, "2024-01-01", "2024-04-01", 150, currency="GBP"),
    )
    fx = rates(("EUR", "2024-01-01", 1.10), ("EUR", "2024-02-10", 1.20), ("GBP", "2024-01-01", 1.30), ("GBP", "2024-02-20", 1.25))
    frame = csmetrics.revenue_metrics(table, fx=fx, base_currency="USD", fx_mode="spot", as_of="2024-03-20")
    assert values(frame, "mrr") == pytest.approx({"2024-01-01": 175, "2024-02-01": 182.5, "2024-03-01": 182.5})
    assert values(frame, "fx_effect_mrr")["2024-02-01"] == pytest.approx(7.5)
    moves = csmetrics.mrr_movements(table, fx=fx, base_currency="USD", fx_mode="spot", as_of="2024-03-20")
    assert moves[moves["kind"] == "fx_effect"]["amount"].tolist() == pytest.approx([10, -2.5])


def test_rates_after_as_of_and_base_currency_lines_are_no_fx_effect():
    table = billing(line(1, "2024-01-01", "2024-07-01", 600, currency="EUR"), line(2, "2024-01-01", "2024-07-01", 600))
    fx = rates(("EUR", "2024-01-01", 1.10), ("EUR", "2024-05-01", 1.30))
    frame = csmetrics.revenue_metrics(table, fx=fx, base_currency="USD", fx_mode="spot", as_of="2024-03-20")
    assert set(values(frame, "fx_effect_mrr").values()) == {0}
    assert values(frame, "mrr")["2024-03-01"] == pytest.approx(110 + 100)


def test_fx_mode_is_checked():
    with pytest.raises(ConfigError, match="fx_mode must be one of line, spot"):
        csmetrics.revenue_metrics(monthly_eur(100), fx=EUR_110_120, base_currency="USD", fx_mode="Spot")
    with pytest.raises(ConfigError, match="fx_mode"):
        csmetrics.customer_metrics(monthly_eur(100), fx=EUR_110_120, base_currency="USD", fx_mode=None)


def bridge_gap(wide: pd.DataFrame) -> float:
    if wide.empty:
        return 0.0
    fx = wide["fx_effect_mrr"] if "fx_effect_mrr" in wide else 0.0
    bridge = (
        wide["mrr_start"] + wide["new_mrr"] + wide["reactivation_mrr"] + wide["expansion_mrr"]
        - wide["contraction_mrr"] - wide["churned_mrr"] + fx
    )  # fmt: skip
    return float((wide["mrr"] - bridge).abs().max())


def test_flipstartup_with_its_fixed_rates_is_the_same_in_both_modes(shared_data):
    # one rate per currency: nothing drifts, so spot mode gives line mode's numbers and no fx effect
    table, fx = flipstartup_billing(shared_data)
    valid, _ = csmetrics.validate(table, "billing", quarantine=True, fx=csmetrics.validate(fx, "fx"))
    line_mode = csmetrics.revenue_metrics(valid, fx=fx).set_index(["period", "metric"])["value"]
    spot = csmetrics.revenue_metrics(valid, fx=fx, fx_mode="spot").set_index(["period", "metric"])["value"]
    assert set(spot.xs("fx_effect_mrr", level="metric")) == {0}
    pd.testing.assert_series_equal(spot.drop("fx_effect_mrr", level="metric"), line_mode)


def drifting_rates(start="2007-01-01", end="2017-01-01") -> pd.DataFrame:
    """A rate path for flipStartup's currencies (per AUD): the package's 2016 rate, moved by a
    deterministic +-8% yearly cycle on the first of each quarter (a test path, not history)."""
    dates = pd.date_range(start, end, freq="QS")
    rows = []
    for currency, units in FLIP_UNITS_PER_AUD.items():
        if currency == "AUD":
            continue
        phase = len(currency) + ord(currency[0])
        for i, date in enumerate(dates):
            rows.append((currency, date, (1.0 / units) * (1 + 0.08 * np.sin(i * np.pi / 2 + phase))))
    return rates(*rows)


def test_flipstartup_in_spot_mode_the_bridge_holds_every_month(shared_data):
    table, _ = flipstartup_billing(shared_data)
    fx = drifting_rates()
    valid, _ = csmetrics.validate(table, "billing", quarantine=True, fx=csmetrics.validate(fx, "fx"))
    wide = csmetrics.to_wide(csmetrics.revenue_metrics(valid, fx=fx, base_currency="AUD", fx_mode="spot"))
    assert bridge_gap(wide) < 1e-6
    np.testing.assert_allclose(wide["mrr_start"].iloc[1:], wide["mrr"].iloc[:-1], atol=1e-6)
    assert wide["fx_effect_mrr"].abs().sum() > 0
    # per customer the movements (fx rows included) add up to the final MRR
    moves = csmetrics.mrr_movements(valid, fx=fx, base_currency="AUD", fx_mode="spot")
    final = csmetrics.current_mrr(valid, fx=fx, base_currency="AUD", fx_mode="spot")
    summed = moves.groupby("customer_id")["amount"].sum().reindex(final.index, fill_value=0.0)
    np.testing.assert_allclose(summed.to_numpy(), final.to_numpy(), atol=1e-6)
    # the fx rows carry, per customer and rate change, the metric frame's fx effect
    fx_rows = moves[moves["kind"] == "fx_effect"]
    assert fx_rows["amount"].sum() == pytest.approx(wide["fx_effect_mrr"].sum(), abs=1e-6)


def spot_oracle(table: pd.DataFrame, fx: pd.DataFrame, at: pd.Timestamp) -> float:
    """Spot MRR at an instant, line by line: native monthly amount x the rate at that instant."""
    total: dict[int, float] = {}
    for row in table.itertuples():
        if not (row.service_start <= at < row.service_end):
            continue
        months = (row.service_end.year - row.service_start.year) * 12 + row.service_end.month - row.service_start.month
        if months >= 1 and row.service_start + pd.DateOffset(months=months) == row.service_end:
            monthly = row.amount / months
        else:
            monthly = row.amount * 30.4375 / ((row.service_end - row.service_start) / pd.Timedelta(days=1))
        rate = 1.0
        if row.currency != "USD":
            mine = fx[fx["currency"] == row.currency].sort_values("date")
            earlier = mine[mine["date"] <= at]
            rate = float((earlier if len(earlier) else mine.iloc[:1])["rate"].iloc[-1])
        total[row.customer_id] = total.get(row.customer_id, 0.0) + monthly * rate
    return sum(max(v, 0.0) for v in total.values())


START = pd.Timestamp("2024-01-01")


@st.composite
def multi_currency(draw):
    rows = []
    for customer in range(1, draw(st.integers(1, 5)) + 1):
        for _ in range(draw(st.integers(1, 4))):
            start = START + pd.Timedelta(days=draw(st.integers(0, 120)))
            months = draw(st.sampled_from([1, 1, 3, 12]))
            end = start + (pd.DateOffset(months=months) if draw(st.booleans()) else pd.Timedelta(days=draw(st.integers(5, 80))))
            rows.append({
                "customer_id": customer, "kind": "recurring",
                "amount": float(draw(st.sampled_from([-20, 30, 49, 100, 1200]))),
                "service_start": start, "service_end": end,
                "currency": draw(st.sampled_from(["USD", "EUR", "GBP"])),
                "plan": draw(st.sampled_from(["a", "b"])),
            })  # fmt: skip
    fx_rows = [
        (currency, START + pd.Timedelta(days=draw(st.integers(0, 200))), draw(st.sampled_from([0.8, 1.1, 1.27, 1.3333])))
        for currency in ("EUR", "GBP")
        for _ in range(draw(st.integers(1, 4)))
    ]
    as_of = START + pd.Timedelta(days=draw(st.integers(30, 220)))
    return pd.DataFrame(rows), rates(*fx_rows).drop_duplicates(["currency", "date"]), as_of


@SETTINGS
@given(multi_currency())
def test_property_bridge_holds_in_both_modes_and_spot_mrr_is_the_oracle(case):
    table, fx, as_of = case
    for mode in ("line", "spot"):
        for by in (None, "plan"):
            frame = csmetrics.revenue_metrics(table, fx=fx, base_currency="USD", fx_mode=mode, as_of=as_of, by=by)
            assert bridge_gap(csmetrics.to_wide(frame)) < 1e-6, (mode, by)
    wide = csmetrics.to_wide(csmetrics.revenue_metrics(table, fx=fx, base_currency="USD", fx_mode="spot", as_of=as_of))
    # MRR at each period end (capped at as_of) is the line-by-line spot valuation
    for period, mrr in zip(wide["period"], wide["mrr"]):
        end = min(period.tz_localize(None) + pd.DateOffset(months=1) - pd.Timedelta(1, "ns"), as_of)
        assert mrr == pytest.approx(spot_oracle(table, fx, end), abs=1e-3)
    moves = csmetrics.mrr_movements(table, fx=fx, base_currency="USD", fx_mode="spot", as_of=as_of)
    assert moves.groupby("customer_id")["amount"].sum().sum() == pytest.approx(float(wide["mrr"].iloc[-1]), abs=1e-3)


def test_the_base_currency_is_the_one_whose_rates_are_all_one_when_fx_lists_every_currency():
    # flipStartup's fx lists AUD at 1.0 next to the others: AUD is the base, recorded in the manifest
    table = billing(line(1, "2024-01-01", "2024-02-01", 100, currency="AUD"), line(2, "2024-01-01", "2024-02-01", 100, currency="USD"))
    fx = rates(("AUD", "2000-01-01", 1.0), ("USD", "2000-01-01", 1.35))
    result = csmetrics.report({"billing": table, "fx": fx}, html=False)
    assert result.manifest["currency"]["base"] == "AUD"
    assert values(result.metrics, "mrr")["2024-01-01"] == pytest.approx(235)
    # two currencies at 1.0 leave it open: nothing is guessed
    fx2 = rates(("AUD", "2000-01-01", 1.0), ("USD", "2000-01-01", 1.0))
    assert csmetrics.report({"billing": table, "fx": fx2}, html=False).manifest["currency"]["base"] is None
