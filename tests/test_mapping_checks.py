"""Warnings for probable mapping mistakes (issue 17): inverted fx, cents, sentinel ends, MRR jumps."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

import csmetrics
from csmetrics import MappingWarning

from .shared_data import FLIP_UNITS_PER_AUD, flipstartup_billing


def test_inverted_flipstartup_rates_are_flagged_and_the_right_ones_are_not(shared_data):
    billing, fx = flipstartup_billing(shared_data)
    inverted = fx.assign(rate=[FLIP_UNITS_PER_AUD[c] for c in fx["currency"]])  # units per AUD: the wrong way round
    with pytest.warns(MappingWarning, match="USD rates look inverted"):
        result = csmetrics.report({"billing": billing, "fx": inverted}, quarantine=True, html=True)
    flagged = [w for w in result.manifest["warnings"] if "inverted" in w]
    assert {w.split()[1] for w in flagged} == {"CNY", "EUR", "GBP", "USD"}  # NZD is near parity: not decidable
    assert "Check the mapping:" in result.html and "look inverted" in result.html
    with warnings.catch_warnings():
        warnings.simplefilter("error", MappingWarning)
        right = [w for w in csmetrics.check_mapping({"fx": fx}, "AUD") if "inverted" in w]
    assert right == []


def test_cents_and_sentinel_ends_are_flagged():
    billing = pd.DataFrame({"customer_id": [1, 2, 3], "kind": "recurring", "amount": [4900.0, 19900.0, 99900.0],
                            "service_start": pd.to_datetime(["2024-01-01"] * 3, utc=True),
                            "service_end": pd.to_datetime(["2024-02-01", "2024-02-01", "2099-12-31"], utc=True)})  # fmt: skip
    found = csmetrics.check_mapping({"billing": csmetrics.validate(billing, "billing")}, warn=False)
    assert any("look like minor units (cents)" in w for w in found)
    assert any("1 recurring line(s) run longer than 5 years" in w for w in found)
    fine = billing.assign(amount=[49.0, 199.5, 999.0], service_end=pd.to_datetime(["2024-02-01"] * 3, utc=True))
    assert csmetrics.check_mapping({"billing": csmetrics.validate(fine, "billing")}, warn=False) == []


def test_mrr_jumping_tenfold_is_flagged():
    billing = pd.DataFrame({"customer_id": [1, 1], "kind": "recurring", "amount": [100.0, 5000.0],
                            "service_start": ["2024-01-01", "2024-02-01"], "service_end": ["2024-02-01", "2024-03-01"]})  # fmt: skip
    result = csmetrics.report({"billing": billing}, html=False, as_of="2024-02-15")
    assert any("MRR changes more than 10x" in w for w in result.manifest["warnings"])


@pytest.mark.parametrize("engine", ["pandas", "threads", "dask"])
def test_every_engine_scans_billing_for_mapping_mistakes(engine):
    """The billing checks combine per-bucket (per-partition) facts: the same warnings on every engine."""
    import dask
    import dask.dataframe as dd

    n = 40
    billing = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "kind": "recurring",
                            "amount": [4900.0 + 1000 * (i % 7) for i in range(n)],
                            "service_start": pd.to_datetime(["2024-01-01"] * n, utc=True),
                            "service_end": pd.to_datetime(["2024-02-01"] * (n - 2) + ["2099-12-31"] * 2, utc=True)})  # fmt: skip
    tables = {"billing": dd.from_pandas(billing, npartitions=4, sort=False) if engine == "dask" else billing}
    with dask.config.set(scheduler="threads", num_workers=2), warnings.catch_warnings():
        warnings.simplefilter("ignore", MappingWarning)
        options = {"buckets": 3} if engine != "pandas" else {}
        result = csmetrics.report(tables, html=False, as_of="2024-01-20", engine=engine, **options)
    found = result.manifest["warnings"]
    assert not any("minor units" in w for w in found)  # 4,900-10,900: whole, but fewer than half above 10,000
    assert any("2 recurring line(s) run longer than 5 years (up to 76 years)" in w for w in found)
    # in cents: every amount whole and more than half above 10,000
    cents = billing.assign(amount=billing["amount"] * 100)
    tables = {"billing": dd.from_pandas(cents, npartitions=4, sort=False) if engine == "dask" else cents}
    with dask.config.set(scheduler="threads", num_workers=2), warnings.catch_warnings():
        warnings.simplefilter("ignore", MappingWarning)
        result = csmetrics.report(tables, html=False, as_of="2024-01-20", engine=engine, **options)
    assert any("all 40 are whole numbers and more than half exceed 10,000" in w for w in result.manifest["warnings"])


def test_the_cents_rule_is_the_median_rule():
    facts = csmetrics.checks.billing_facts
    for amounts, flagged in (([20_000.0, 30_000.0, 5.0], True), ([20_000.0, 5.0, 7.0], False), ([20_000.0, 30_000.5, 40_000.0], False)):
        frame = pd.DataFrame({"amount": amounts})
        assert bool(csmetrics.checks.billing_warnings([facts(frame)])) is flagged
        halves = csmetrics.checks.billing_warnings([facts(frame.iloc[:1]), facts(frame.iloc[1:])])
        assert bool(halves) is flagged
