"""The generator is deterministic, valid, and made sample_data/."""

from __future__ import annotations

import pandas as pd

import csmetrics
from csmetrics.datagen import generate


def test_sample_data_is_what_the_generator_makes(sample_tables):
    fresh = generate(500, 24, start="2023-01-01", seed=7)
    assert set(fresh) == set(sample_tables)
    for name, table in fresh.items():
        pd.testing.assert_frame_equal(table.reset_index(drop=True), sample_tables[name], check_dtype=False, obj=name)


def test_generated_tables_are_valid_and_rich():
    tables = generate(200, 12, seed=3)
    valid, rejected = csmetrics.validate_tables(tables, quarantine=True)
    assert all(len(r) == 0 for r in rejected.values())
    billing = tables["billing"]
    assert set(billing["kind"]) == {"recurring", "one_time", "refund"}
    assert (billing["amount"] < 0).any()  # discounts
    assert set(billing["currency"]) == {"USD", "EUR"}
    assert set(tables["tickets"]["channel"]) == {"email", "chat", "phone", "web"}
    surveys = tables["surveys"]
    assert set(surveys["survey"]) == {"nps", "csat", "ces", "cxi"} and surveys["score"].isna().any()
    assert tables["events"]["session_id"].isna().any() and tables["events"]["session_id"].notna().any()
    pd.testing.assert_frame_equal(generate(50, 6, seed=1)["billing"], generate(50, 6, seed=1)["billing"])
