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
