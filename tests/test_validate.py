"""Validation: every rule of METRICS.md §1 with a bad case, messages, coercion, quarantine."""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import csmetrics
from csmetrics import ValidationError, validate
from csmetrics.schemas import DIMENSIONS

from .shared_data import rows_accounted_for


def good_tickets() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticket_id": [1, 2, 3],
            "customer_id": [10, 10, 11],
            "created_at": ["2024-01-01 09:00", "2024-01-02 10:00", "2024-01-03 11:00"],
            "first_response_at": ["2024-01-01 09:05", None, "2024-01-03 11:30"],
            "resolved_at": ["2024-01-01 12:00", None, "2024-01-04 11:00"],
            "channel": ["email", "chat", "phone"],
            "contacts": [1, 2, 1],
            "handle_seconds": [300.0, 200.0, 100.0],
            "wait_seconds": [0.0, 30.0, 10.0],
            "abandoned": [False, False, True],
            "reopens": [0, 1, 0],
        }
    )


def good_surveys() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "response_id": ["r1", "r2", "r3", "r4", "r5"],
            "customer_id": [10, 10, 11, 11, 12],
            "survey": ["nps", "nps", "csat", "ces", "cxi"],
            "score": [9, None, 4, 6, 5],
            "sent_at": ["2024-01-01"] * 5,
            "responded_at": ["2024-01-02", None, "2024-01-02", "2024-01-02", "2024-01-02"],
            "component": [None, None, None, None, "empathy"],
        }
    )


def good_billing() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [1, 1, 2, 2],
            "kind": ["recurring", "recurring", "one_time", "refund"],
            "amount": [100.0, -20.0, 50.0, -50.0],
            "service_start": ["2024-01-01", "2024-01-01", None, None],
            "service_end": ["2024-02-01", "2024-02-01", None, None],
            "invoiced_at": ["2024-01-01", "2024-01-01", "2024-01-05", "2024-01-09"],
        }
    )


def failing_rules(df: pd.DataFrame, table: str, **kwargs) -> set[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        validate(df, table, **kwargs)
    return set(zip(info.value.failures["column"], info.value.failures["rule"]))


def test_good_tables_pass_and_are_coerced():
    tickets = validate(good_tickets(), "tickets")
    assert str(tickets["created_at"].dtype) == "datetime64[ns, UTC]"
    assert tickets["created_at"].iloc[0] == pd.Timestamp("2024-01-01 09:00", tz="UTC")
    assert tickets["contacts"].dtype == np.float64
    assert tickets["ticket_id"].dtype == np.int64
    surveys = validate(good_surveys(), "surveys")
    assert pd.api.types.is_string_dtype(surveys["response_id"])
    assert len(validate(good_billing(), "billing")) == 4


def test_tz_aware_timestamps_are_converted_to_utc():
    df = good_tickets()
    df["created_at"] = pd.to_datetime(df["created_at"]).dt.tz_localize("Europe/Berlin")
    df["first_response_at"] = pd.NaT
    df["resolved_at"] = pd.NaT
    out = validate(df, "tickets")
    assert out["created_at"].iloc[0] == pd.Timestamp("2024-01-01 08:00", tz="UTC")


@pytest.mark.parametrize(
    "table, make, mutate, expected",
    [
        ("tickets", good_tickets, lambda d: d.assign(ticket_id=[1, 1, 3]), ("ticket_id", "unique")),
        ("tickets", good_tickets, lambda d: d.assign(first_response_at=["2023-12-31", None, None]),
         ("first_response_at", "not before created_at")),
        ("tickets", good_tickets, lambda d: d.assign(resolved_at=[None, "2024-01-01", None]),
         ("resolved_at", "not before created_at")),
        ("tickets", good_tickets, lambda d: d.assign(handle_seconds=[-1.0, 1.0, 1.0]), ("handle_seconds", ">= 0")),
        ("tickets", good_tickets, lambda d: d.assign(wait_seconds=[1.0, -5.0, 1.0]), ("wait_seconds", ">= 0")),
        ("tickets", good_tickets, lambda d: d.assign(contacts=[0, 1, 1]), ("contacts", ">= 1")),
        ("tickets", good_tickets, lambda d: d.assign(contacts=[1.5, 1, 1]), ("contacts", "whole number")),
        ("tickets", good_tickets, lambda d: d.assign(reopens=[0, -1, 0]), ("reopens", ">= 0")),
        ("tickets", good_tickets, lambda d: d.assign(created_at=["2024-01-01", "not a date", "2024-01-03"]),
         ("created_at", "coercible to timestamp")),
        ("tickets", good_tickets, lambda d: d.assign(customer_id=[1, None, 2]), ("customer_id", "not null")),
        ("surveys", good_surveys, lambda d: d.assign(response_id=["r1", "r1", "r3", "r4", "r5"]), ("response_id", "unique")),
        ("surveys", good_surveys, lambda d: d.assign(score=[11, None, 4, 6, 5]), ("score", "nps score is a whole number 0..10")),
        ("surveys", good_surveys, lambda d: d.assign(score=[8.5, None, 4, 6, 5]), ("score", "nps score is a whole number 0..10")),
        ("surveys", good_surveys, lambda d: d.assign(score=[9, None, 6, 6, 5]), ("score", "within [scale_min, scale_max]")),
        ("surveys", good_surveys, lambda d: d.assign(score=[9, None, 4, 8, 5]), ("score", "within [scale_min, scale_max]")),
        ("surveys", good_surveys, lambda d: d.assign(survey=["nps", "nps", "csat", "ces", "ces2"]), ("survey", "one of")),
        ("surveys", good_surveys, lambda d: d.assign(component=[None, None, None, None, "speed"]),
         ("component", "one of effort/empathy/understanding/efficiency for cxi")),
        ("surveys", good_surveys, lambda d: d.assign(score=[9, None, 4, "x", 5]), ("score", "coercible to float")),
        ("billing", good_billing, lambda d: d.assign(kind=["recurring", "recurring", "one_time", "gift"]), ("kind", "one of")),
        ("billing", good_billing, lambda d: d.assign(service_end=["2024-01-01", "2024-02-01", None, None]),
         ("service_end", "after service_start")),
        ("billing", good_billing, lambda d: d.assign(service_end=[None, "2024-02-01", None, None]),
         ("service_end", "required when kind is recurring")),
        ("billing", good_billing, lambda d: d.assign(service_start=["2024-01-01", None, None, None]),
         ("service_start", "required when kind is recurring")),
        ("billing", good_billing, lambda d: d.assign(invoiced_at=["2024-01-01", "2024-01-01", None, "2024-01-09"]),
         ("invoiced_at", "required when kind is one_time/refund")),
        ("billing", good_billing, lambda d: d.assign(line_id=[1, 2, 2, 3]), ("line_id", "unique")),
        ("customers", lambda: pd.DataFrame({"customer_id": [1, 2, 2]}), lambda d: d, ("customer_id", "unique")),
        ("costs", lambda: pd.DataFrame({"incurred_at": ["2024-01-01"] * 2, "category": ["sales", "capex"], "amount": [1.0, 2.0]}),
         lambda d: d.assign(amount=[1.0, -2.0]), ("amount", ">= 0")),
        ("fx", lambda: pd.DataFrame({"currency": ["EUR", "EUR"], "date": ["2024-01-01", "2024-02-01"], "rate": [1.1, 1.2]}),
         lambda d: d.assign(rate=[1.1, 0.0]), ("rate", "> 0")),
        ("fx", lambda: pd.DataFrame({"currency": ["EUR", "EUR"], "date": ["2024-01-01", "2024-02-01"], "rate": [1.1, 1.2]}),
         lambda d: d.assign(date=["2024-01-01", "2024-01-01"]), ("currency,date", "unique together")),
        ("events", lambda: pd.DataFrame({"customer_id": [1], "timestamp": ["2024-01-01"], "event": ["login"], "duration_seconds": [3.0]}),
         lambda d: d.assign(duration_seconds=[-3.0]), ("duration_seconds", ">= 0")),
    ],
)
def test_each_rule_rejects_its_bad_input(table, make, mutate, expected):
    good = make()
    if table != "customers":
        validate(good, table)  # the unmutated table is valid
        assert _direct_pass(good, table)
    bad = mutate(good)
    rules = failing_rules(bad, table)
    column, rule = expected
    assert any(c == column and r.startswith(rule) for c, r in rules), rules
    # the direct evaluation that spares pandera's run on valid tables finds the failure too
    assert not _direct_pass(bad, table)
    # and so do both with the dimensions as categoricals (as read from Parquet)
    dims = {c: "category" for c in DIMENSIONS.get(table, ()) if c in bad and not bad[c].isna().all()}
    if dims:
        rules = failing_rules(bad.astype(dims), table)
        assert any(c == column and r.startswith(rule) for c, r in rules), rules
        assert not _direct_pass(bad.astype(dims), table)


def _direct_pass(df: pd.DataFrame, table: str) -> bool:
    """No coercion failure and every rule holds by the direct evaluation (validate's fast path)."""
    validation = importlib.import_module("csmetrics.validate")
    coerced, failures = validation.coerce(df.reset_index(drop=True), table)
    return not failures and validation._passes(coerced, validation.schema_of(table))


def test_missing_required_column_is_an_error_in_both_modes():
    df = good_tickets().drop(columns=["created_at"])
    for quarantine in (False, True):
        with pytest.raises(ValidationError, match="created_at: rule 'required column is missing'"):
            validate(df, "tickets", quarantine=quarantine)


def test_mixed_currencies_need_fx_in_both_modes():
    billing = good_billing().assign(currency=["USD", "USD", "EUR", "EUR"])
    for quarantine in (False, True):
        with pytest.raises(ValidationError, match="mixed currencies need an fx table"):
            validate(billing, "billing", quarantine=quarantine)
    fx = validate(pd.DataFrame({"currency": ["EUR"], "date": ["2024-01-01"], "rate": [1.1]}), "fx")
    assert len(validate(billing, "billing", fx=fx)) == 4  # USD is the base: the one currency fx lacks
    three = billing.assign(currency=["USD", "GBP", "EUR", "EUR"])
    # two currencies without a rate: the base is ambiguous, and the error says so (issue 12; it used to
    # reject every row as "has an fx rate"), in both modes
    for quarantine in (False, True):
        with pytest.raises(ValidationError, match="base currency is ambiguous") as info:
            validate(three, "billing", fx=fx, quarantine=quarantine)
        assert info.value.failures["value"].iloc[0] == ["GBP", "USD"]
    # with the base given, the other currency's rows fail, naming the base
    rules = failing_rules(three, "billing", fx=fx, base_currency="USD")
    assert rules == {("currency", "has an fx rate (base currency USD)")}


def test_message_names_table_column_rule_count_and_examples():
    df = good_tickets()
    df = pd.concat([df] * 4, ignore_index=True).assign(ticket_id=range(12))
    df.loc[[1, 4, 7, 8, 9, 10, 11], "handle_seconds"] = -1.0
    with pytest.raises(ValidationError) as info:
        validate(df, "tickets")
    message = str(info.value)
    assert "table 'tickets'" in message
    assert "tickets.handle_seconds: rule '>= 0': 7 rows, e.g. rows [1, 4, 7, 8, 9] values [-1.0, -1.0, -1.0, -1.0, -1.0]" in message
    assert info.value.table == "tickets"
    assert len(info.value.failures) == 7
    assert list(info.value.failures.columns) == ["table", "row", "column", "rule", "value"]


def test_all_failures_are_reported_at_once():
    df = good_tickets().assign(handle_seconds=[-1.0, 1.0, 1.0], ticket_id=[1, 1, 3])
    rules = failing_rules(df, "tickets")
    assert {("handle_seconds", ">= 0"), ("ticket_id", "unique")} <= rules


def test_quarantine_keeps_every_row_with_reasons_and_original_values():
    df = good_tickets().assign(handle_seconds=[-1.0, 1.0, 1.0], created_at=["2024-01-01 09:00", "garbage", "2024-01-03"])
    df.index = [100, 200, 300]
    valid, rejected = validate(df, "tickets", quarantine=True)
    assert list(valid.index) == [300]
    assert list(rejected.index) == [100, 200]
    assert rejected.loc[200, "created_at"] == "garbage"  # unchanged
    assert rejected.loc[100, "reason"] == "handle_seconds: >= 0"
    assert "created_at: coercible to timestamp" in rejected.loc[200, "reason"]
    assert rows_accounted_for(df, valid, rejected)


def test_ids_keep_integers_or_become_strings():
    ints = validate(good_tickets().assign(customer_id=[10.0, 10.0, 11.0]), "tickets")
    assert ints["customer_id"].dtype == np.int64
    mixed = validate(good_tickets().assign(customer_id=[10, "a", 11]), "tickets")
    assert pd.api.types.is_string_dtype(mixed["customer_id"]) and list(mixed["customer_id"]) == ["10", "a", "11"]


def test_validate_tables_harmonises_customer_id_types():
    tables = {
        "tickets": good_tickets(),
        "customers": pd.DataFrame({"customer_id": ["10", "11", "x"], "region": ["NA", "EU", "NA"]}),
    }
    valid, rejected = csmetrics.validate_tables(tables)
    assert rejected == {}
    assert set(valid["tickets"]["customer_id"]) <= set(valid["customers"]["customer_id"])


@st.composite
def messy_tickets(draw):
    n = draw(st.integers(1, 40))
    ids = draw(st.lists(st.integers(0, 30), min_size=n, max_size=n))
    handle = draw(st.lists(st.one_of(st.none(), st.floats(-5, 5, allow_nan=False)), min_size=n, max_size=n))
    offsets = draw(st.lists(st.one_of(st.none(), st.integers(-3, 3)), min_size=n, max_size=n))
    created = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(n), unit="h")
    resolved = [created[i] + pd.Timedelta(hours=o) if o is not None else pd.NaT for i, o in enumerate(offsets)]
    return pd.DataFrame(
        {
            "ticket_id": ids,
            "customer_id": 1,
            "created_at": created,
            "resolved_at": pd.to_datetime(resolved, utc=True),
            "handle_seconds": handle,
        }
    )


@settings(max_examples=60, deadline=None)
@given(messy_tickets())
def test_property_quarantine_identity(df):
    valid, rejected = validate(df, "tickets", quarantine=True)
    assert rows_accounted_for(df, valid, rejected)
    assert rejected["reason"].str.len().gt(0).all()
    # the valid part passes on its own, and every rejected row breaks a rule
    validate(valid, "tickets")
    dup = df["ticket_id"].duplicated(keep=False)
    bad = dup | (df["handle_seconds"] < 0) | (df["resolved_at"] < df["created_at"])
    assert set(rejected.index) == set(df.index[bad.fillna(False)])


@pytest.mark.parametrize("ids, duplicated", [([1, 2, 3, 4], []), ([4, 1, 3, 2], []), ([1, 2, 2, 3], [2, 2]), ([3, 1, 3, 2], [3, 3])])
def test_unique_ids_sorted_or_not(ids, duplicated):
    # strictly increasing integer ids skip pandera's hash check; anything else keeps it
    tickets = pd.DataFrame({"ticket_id": ids, "customer_id": 1, "created_at": "2024-01-01"})
    valid, rejected = csmetrics.validate(tickets, "tickets", quarantine=True)
    assert sorted(rejected["ticket_id"].tolist()) == duplicated
    assert set(rejected["reason"]) <= {"ticket_id: unique"}
    assert len(valid) == len(ids) - len(duplicated)


def test_schemas_are_built_without_importing_dask():
    """The cold-start shortcut (issue 14): the schemas equal pandera's own build, and building them in a
    fresh process does not import Dask (0.5 s when it is installed)."""
    import subprocess
    import sys

    from csmetrics.validate import MODELS, _build_schema

    for table, model in MODELS.items():
        assert _build_schema(model) == model.to_schema(), table
    code = "import sys; from csmetrics.validate import TABLES, schema_of; [schema_of(t) for t in TABLES]; print('dask' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
