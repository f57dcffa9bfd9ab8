"""The external data sets of ../shared/data through validate in quarantine mode."""

from __future__ import annotations

import csmetrics

from .shared_data import flipstartup_billing, mrr_playbook_billing, ravenstack_tables, rows_accounted_for


def test_ravenstack_defects_are_quarantined_not_lost(shared_data):
    tables = ravenstack_tables(shared_data)
    valid, rejected = csmetrics.validate_tables(tables, quarantine=True)
    for name, table in tables.items():
        assert rows_accounted_for(table, valid[name], rejected[name]), name
    billing_reasons = rejected["billing"]["reason"]
    # most subscriptions have no end date: a recurring line needs its service period
    assert billing_reasons.str.startswith("service_end: required when kind is recurring (or give interval_months").sum() > 4000
    assert billing_reasons.str.contains("service_end: after service_start").sum() > 0
    assert len(valid["billing"]) > 1000  # the good rows are processed


def test_flipstartup_periods_ending_before_start_are_rejected(shared_data):
    billing, fx = flipstartup_billing(shared_data)
    fx_valid = csmetrics.validate(fx, "fx")
    valid, rejected = csmetrics.validate(billing, "billing", quarantine=True, fx=fx_valid)
    assert rows_accounted_for(billing, valid, rejected)
    assert len(rejected) > 0
    assert set(rejected["reason"]) == {"service_end: after service_start"}
    assert (rejected["ValidTo"] if "ValidTo" in rejected else rejected["service_end"]).notna().all()


def test_mrr_playbook_is_clean(shared_data):
    billing = mrr_playbook_billing(shared_data)
    assert len(csmetrics.validate(billing, "billing")) == 121
