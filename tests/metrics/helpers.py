"""Small builders for hand-worked metric tests."""

from __future__ import annotations

import pandas as pd


def line(customer, start, end, amount, plan=None, currency=None):
    row = {"customer_id": customer, "kind": "recurring", "amount": float(amount), "service_start": start, "service_end": end}
    if plan is not None:
        row["plan"] = plan
    if currency is not None:
        row["currency"] = currency
    return row


def purchase(customer, at, amount, kind="one_time", currency=None):
    row = {"customer_id": customer, "kind": kind, "amount": float(amount), "invoiced_at": at}
    if currency is not None:
        row["currency"] = currency
    return row


def billing(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def values(frame: pd.DataFrame, metric: str, column: str = "value", **segment) -> dict[str, float]:
    """{period 'YYYY-MM-DD': value} of one metric (and segment)."""
    rows = frame[frame["metric"] == metric]
    for key, value in segment.items():
        rows = rows[rows[key].isna()] if value is None else rows[rows[key] == value]
    return dict(zip(rows["period"].dt.strftime("%Y-%m-%d"), rows[column]))
