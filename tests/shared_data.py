"""Map the external data sets of ../shared/data onto csmetrics tables (test fixtures only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

# flipStartup's own fixed rates: units of currency per AUD (11 Jun 2016)
FLIP_UNITS_PER_AUD = {"AUD": 1.0, "CNY": 4.84, "EUR": 0.66, "GBP": 0.52, "NZD": 1.05, "USD": 0.74}


def mrr_playbook_billing(shared: Path) -> pd.DataFrame:
    """One recurring line per subscription period; amount = monthly_amount x months."""
    raw = pd.read_csv(shared / "mrr_playbook_subscription_periods.csv")
    start = pd.to_datetime(raw["start_date"])
    end = pd.to_datetime(raw["end_date"])
    months = (end.dt.year - start.dt.year) * 12 + (end.dt.month - start.dt.month)
    return pd.DataFrame(
        {
            "line_id": raw["subscription_id"],
            "customer_id": raw["customer_id"],
            "kind": "recurring",
            "amount": raw["monthly_amount"] * months,
            "service_start": raw["start_date"],
            "service_end": raw["end_date"],
        }
    )


def flipstartup_billing(shared: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Invoice lines as recurring billing lines in six currencies, and the fx table (base AUD)."""
    raw = pd.read_csv(shared / "flipstartup_invoice_lines.csv")
    billing = pd.DataFrame(
        {
            "line_id": raw["InvoiceLineID"],
            "customer_id": raw["name"],
            "kind": "recurring",
            "amount": raw["Amount"],
            "service_start": raw["ValidFrom"],
            "service_end": raw["ValidTo"],
            "invoiced_at": raw["ValidFrom"],
            "currency": raw["currency"],
        }
    )
    fx = pd.DataFrame(
        {
            "currency": list(FLIP_UNITS_PER_AUD),
            "date": "2000-01-01",
            "rate": [1.0 / units for units in FLIP_UNITS_PER_AUD.values()],
        }
    )
    return billing, fx


def ravenstack_tables(shared: Path, open_ended: bool = False) -> dict[str, pd.DataFrame]:
    """RavenStack's five files as customers, billing, tickets, surveys and events.

    ``open_ended``: subscriptions as §17 interval lines (monthly: mrr_amount every month; annual:
    arr_amount every 12 months), so the 90% without an end date run until as_of."""
    folder = shared / "ravenstack"
    accounts = pd.read_csv(folder / "ravenstack_accounts.csv")
    subs = pd.read_csv(folder / "ravenstack_subscriptions.csv")
    churn = pd.read_csv(folder / "ravenstack_churn_events.csv")
    usage = pd.read_csv(folder / "ravenstack_feature_usage.csv")
    tickets_raw = pd.read_csv(folder / "ravenstack_support_tickets.csv")

    customers = accounts.rename(columns={"account_id": "customer_id", "signup_date": "signup_at", "plan_tier": "plan"})
    recurring = pd.DataFrame(
        {
            "line_id": subs["subscription_id"],
            "customer_id": subs["account_id"],
            "kind": "recurring",
            # an annual contract bills arr_amount for its year; monthly bills mrr per month
            "amount": subs["mrr_amount"],
            "service_start": subs["start_date"],
            "service_end": subs["end_date"],
            "plan": subs["plan_tier"],
        }
    )
    if open_ended:
        annual = subs["billing_frequency"].eq("annual")
        recurring["interval_months"] = np.where(annual, 12.0, 1.0)
        recurring["amount"] = np.where(annual, subs["arr_amount"], subs["mrr_amount"]).astype(float)
    refunds = pd.DataFrame(
        {
            "line_id": churn["churn_event_id"],
            "customer_id": churn["account_id"],
            "kind": "refund",
            "amount": churn["refund_amount_usd"],
            "invoiced_at": churn["churn_date"],
        }
    )
    submitted = pd.to_datetime(tickets_raw["submitted_at"], format="mixed")
    tickets = pd.DataFrame(
        {
            "ticket_id": tickets_raw["ticket_id"],
            "customer_id": tickets_raw["account_id"],
            "created_at": tickets_raw["submitted_at"],
            "priority": tickets_raw["priority"],
            "first_response_at": submitted + pd.to_timedelta(tickets_raw["first_response_time_minutes"], unit="min"),
            "resolved_at": tickets_raw["closed_at"],
        }
    )
    answered = tickets_raw["satisfaction_score"].notna()
    surveys = pd.DataFrame(
        {
            "response_id": tickets_raw["ticket_id"] + "-csat",
            "customer_id": tickets_raw["account_id"],
            "survey": "csat",
            "score": tickets_raw["satisfaction_score"],
            "sent_at": tickets_raw["closed_at"],
            "responded_at": tickets_raw["closed_at"].where(answered),
            "ticket_id": tickets_raw["ticket_id"],
        }
    )
    sub_account = subs.set_index("subscription_id")["account_id"]
    events = pd.DataFrame(
        {
            "customer_id": sub_account.reindex(usage["subscription_id"]).to_numpy(),
            "timestamp": usage["usage_date"],
            "event": usage["feature_name"],
            "duration_seconds": usage["usage_duration_secs"],
        }
    )
    billing = pd.concat([recurring, refunds], ignore_index=True)
    return {"customers": customers, "billing": billing, "tickets": tickets, "surveys": surveys, "events": events}


def rows_accounted_for(table: pd.DataFrame, valid: pd.DataFrame, rejected: pd.DataFrame) -> bool:
    """valid + rejected = input, index for index, each exactly once."""
    combined = np.sort(np.concatenate([valid.index.to_numpy(), rejected.index.to_numpy()]))
    return len(valid) + len(rejected) == len(table) and bool((combined == np.sort(table.index.to_numpy())).all())
