"""Fivetran's Stripe schema -> billing and customers (METRICS.md §17).

Mapping (each choice is in docs/DATA_GUIDE.md, "From Fivetran's Stripe tables"):

- **Subscriptions**: the current version of each subscription (``subscription_history`` rows
  with ``_fivetran_active`` true, else the older ``subscription`` table) and its items
  (``subscription_item``). Each item is one recurring line: amount = unit price x quantity in
  currency units (minor units by the currency's ISO 4217 exponent: 2 for USD, 0 for JPY, 3 for
  KWD); the price and interval come from the item's ``price_id`` (``price``) or ``plan_id``
  (``plan``). Month and year intervals give ``interval_months`` (x interval_count) and an
  open end; week and day intervals give a fixed-end line of one interval (the current period).
- service_start = the subscription's start_date (else created), moved to trial_end when a trial
  runs past it (a trial at price 0 is not MRR); service_end = ended_at, else cancel_at, else the
  current period's end when cancel_at_period_end; else null (runs until cancelled). A
  subscription whose trial covers its whole life gives no line.
- **One-off charges**: invoice line items without a subscription become one_time lines
  (invoiced_at = the invoice's created, else the line's period_start; the customer is the
  invoice's). **Refunds** (status succeeded) become refund lines; the customer is the charge's.
- **Customers**: ``customer``: customer_id = id, signup_at = created.
- Rows with ``livemode`` false are left out (test-mode data), as the dbt package does.
- as_of = the newest ``_fivetran_synced`` of the tables read (the export's sync instant).

- **Discounts**: ``subscription_discount`` rows with their ``coupon`` (percent_off or amount_off;
  once, repeating or forever) become negative recurring lines (see :func:`_discount_lines`).

Left out (named in the guide): usage-based prices, tiered billing schemes, credit notes, taxes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from csmetrics.metrics._billing import add_months
from csmetrics.periods import NAT, instants
from csmetrics.validate import validate

__all__ = [
    "AdapterError",
    "Converted",
    "fivetran_stripe",
    "is_true",
    "minor_unit_exponent",
    "need_table",
    "parse_time",
    "read_source",
    "synced_as_of",
]

_ZERO_DECIMAL = {
    "BIF",
    "CLP",
    "DJF",
    "GNF",
    "JPY",
    "KMF",
    "KRW",
    "MGA",
    "PYG",
    "RWF",
    "UGX",
    "VND",
    "VUV",
    "XAF",
    "XOF",
    "XPF",
}
_THREE_DECIMAL = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"}


class AdapterError(ValueError):
    """A source table an adapter needs is missing, or cannot be read."""


@dataclass
class Converted:
    """An adapter's output: csmetrics tables, the export's as_of, and what was read."""

    tables: dict[str, pd.DataFrame]
    as_of: pd.Timestamp | None
    used: dict[str, list[str]] = field(default_factory=dict)  # source table -> columns read
    notes: list[str] = field(default_factory=list)
    schedules: dict[str, Any] = field(default_factory=dict)  # Zendesk: schedule id -> Schedule
    adapter: str = "fivetran-stripe"

    def write(self, out: Path | str) -> list[Path]:
        """Each table as ``<name>.parquet`` in ``out`` (created), and ``as_of.txt``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, table in self.tables.items():
            path = out / f"{name}.parquet"
            table.to_parquet(path, index=False)
            written.append(path)
        if self.as_of is not None:
            (out / "as_of.txt").write_text(self.as_of.isoformat() + "\n")
        # what was converted, for the report's manifest (csmetrics report records it)
        source = {"adapter": self.adapter, "as_of": str(self.as_of) if self.as_of is not None else None,
                  "used": self.used, "notes": self.notes}  # fmt: skip
        (out / "source.json").write_text(json.dumps(source, indent=2) + "\n")
        return written


def minor_unit_exponent(currency: object) -> int:
    """Digits after the decimal point of a currency's minor unit (ISO 4217)."""
    code = str(currency).upper()
    return 0 if code in _ZERO_DECIMAL else 3 if code in _THREE_DECIMAL else 2


def read_source(source: Path | str | Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Tables of a folder (``name.csv``, ``name_data.csv``, ``name.parquet``) or a mapping, by name."""
    if isinstance(source, Mapping):
        return dict(source)
    folder = Path(source)
    if not folder.is_dir():
        raise AdapterError(f"{folder} is not a folder")
    tables = {}
    for path in sorted(folder.iterdir()):
        name = path.name
        for suffix in ("_data.csv", ".csv", ".parquet"):
            if name.endswith(suffix):
                key = name[: -len(suffix)]
                tables[key] = pd.read_csv(path, dtype=str) if suffix.endswith("csv") else pd.read_parquet(path)
                break
    return tables


def need_table(
    tables: Mapping[str, pd.DataFrame], name: str, columns: list[str], used: dict, source: str = "fivetran-stripe"
) -> pd.DataFrame:
    if name not in tables:
        raise AdapterError(f"{source}: the source has no {name!r} table (found: {', '.join(sorted(tables)) or 'none'})")
    table = tables[name]
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise AdapterError(f"{source}: table {name!r} lacks column(s) {missing}")
    used[name] = list(dict.fromkeys([*used.get(name, []), *columns]))  # several readers of one table add up
    return table


def synced_as_of(tables: Mapping[str, pd.DataFrame], used: Mapping[str, list[str]]) -> pd.Timestamp | None:
    """The export's as_of: the newest ``_fivetran_synced`` of the tables read (None without one)."""
    synced = [
        parse_time(t["_fivetran_synced"]).max()
        for name, t in tables.items()
        if name in used and "_fivetran_synced" in t
    ]
    synced = [s for s in synced if pd.notna(s)]
    return max(synced) if synced else None


def parse_time(values: pd.Series) -> pd.Series:
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
    # Stripe's far-future sentinels (9999-...) do not fit a timestamp: they mean "no end"
    return parsed


def is_true(values: pd.Series | None, default: bool = False) -> np.ndarray:
    if values is None:
        return np.full(0, default)
    return values.astype(str).str.strip().str.lower().isin(["true", "t", "1", "yes"]).to_numpy()


def _live(table: pd.DataFrame) -> pd.DataFrame:
    if "livemode" not in table:
        return table
    return table[is_true(table["livemode"]) | table["livemode"].isna().to_numpy()]


def _units(cents: pd.Series, currency: pd.Series) -> np.ndarray:
    exponent = currency.map(minor_unit_exponent).to_numpy(dtype=float)
    return pd.to_numeric(cents, errors="coerce").to_numpy(dtype=float) / 10.0**exponent


def fivetran_stripe(source: Path | str | Mapping[str, pd.DataFrame]) -> Converted:
    """billing and customers from Fivetran's Stripe tables (a folder or a mapping of frames)."""
    tables = {k: _live(v) for k, v in read_source(source).items()}
    used: dict[str, list[str]] = {}
    notes: list[str] = []
    history = _invoiced_history(tables, used)
    billing = [history]
    if "subscription_item" in tables or not len(history):
        billing.append(_subscription_lines(tables, used, notes, history))
    recurring = [b for b in billing if len(b)]
    if "subscription_discount" in tables and recurring:
        billing.append(_discount_lines(tables, used, notes, pd.concat(recurring, ignore_index=True)))
    if "invoice_line_item" in tables:
        billing.append(_one_off_lines(tables, used))
    if "refund" in tables:
        billing.append(_refund_lines(tables, used))
    billing_frame = (
        pd.concat([b for b in billing if len(b)], ignore_index=True) if any(len(b) for b in billing) else billing[0]
    )
    billing_frame = billing_frame.drop(columns=["subscription_id"], errors="ignore")
    currencies = sorted(set(billing_frame["currency"].dropna())) if "currency" in billing_frame else []
    if len(currencies) > 1:
        # Stripe holds no exchange rates: validate the lines' own rules; the fx table is the user's
        notes.append(
            f"billing is in {len(currencies)} currencies ({', '.join(currencies)}): add an fx table before reporting"
        )
        placeholder = pd.DataFrame(
            {"currency": currencies[1:], "date": pd.Timestamp("2000-01-01", tz="UTC"), "rate": 1.0}
        )
        out = {"billing": validate(billing_frame, "billing", fx=validate(placeholder, "fx"))}
    else:
        out = {"billing": validate(billing_frame, "billing")}
    if "customer" in tables:
        customer = need_table(tables, "customer", ["id", "created"], used)
        customers = pd.DataFrame(
            {"customer_id": customer["id"].to_numpy(), "signup_at": parse_time(customer["created"]).to_numpy()}
        )
        out["customers"] = validate(customers, "customers")
    return Converted(out, synced_as_of(tables, used), used, notes)


def _invoiced_history(tables: Mapping[str, pd.DataFrame], used: dict) -> pd.DataFrame:
    """Recurring history: invoice lines of a subscription, each a fixed line over its own service
    period (period_start to period_end) for its amount; the customer and date are the invoice's."""
    lines = tables.get("invoice_line_item")
    if lines is None or "subscription_id" not in lines or "invoice" not in tables:
        return pd.DataFrame()
    lines = need_table(
        tables,
        "invoice_line_item",
        ["id", "invoice_id", "amount", "currency", "period_start", "period_end", "subscription_id"],
        used,
    )
    merged = _with_invoice(lines[lines["subscription_id"].notna()], tables, used)
    if not len(merged):
        return pd.DataFrame()
    key = merged["price_id"] if "price_id" in merged else merged.get("plan_id", pd.Series(None, index=merged.index))
    names = _plan_names(tables, used)
    plan = key.map(names).where(key.map(names).notna(), key) if key is not None else None
    return pd.DataFrame(
        {
            "line_id": merged["id"].to_numpy(),
            "customer_id": merged["inv_customer_id"].to_numpy(),
            "kind": "recurring",
            "amount": _units(merged["amount"], merged["currency"]),
            "service_start": parse_time(merged["period_start"]).to_numpy(),
            "service_end": parse_time(merged["period_end"]).to_numpy(),
            "invoiced_at": merged["invoiced"].to_numpy(),
            "currency": merged["currency"].str.upper().to_numpy(),
            "plan": plan.to_numpy() if plan is not None else None,
            "subscription_id": merged["subscription_id"].to_numpy(),
        }
    )


def _plan_names(tables: Mapping[str, pd.DataFrame], used: dict) -> pd.Series:
    """Plan or price id -> its nickname (else its product, else the id)."""
    try:
        prices = _price_table(tables, used, recurring_only=False)
    except AdapterError:
        return pd.Series(dtype=object)
    return pd.Series(prices["plan_name"].to_numpy(), index=prices["price_key"].to_numpy())


def _subscription_lines(
    tables: Mapping[str, pd.DataFrame], used: dict, notes: list[str], history: pd.DataFrame
) -> pd.DataFrame:
    if "subscription_history" in tables:
        subs = need_table(tables, "subscription_history", ["id", "customer_id", "start_date", "created"], used)
        if "_fivetran_active" in subs:
            subs = subs[is_true(subs["_fivetran_active"])]
    else:
        subs = need_table(tables, "subscription", ["id", "customer_id", "start_date", "created"], used)
    items = need_table(tables, "subscription_item", ["id", "subscription_id", "quantity"], used)
    prices = _price_table(tables, used)
    merged = items.merge(subs.add_prefix("sub_"), left_on="subscription_id", right_on="sub_id", how="inner")
    key = merged["price_id"] if "price_id" in merged and merged["price_id"].notna().any() else merged.get("plan_id")
    if key is None:
        raise AdapterError("fivetran-stripe: subscription_item has neither price_id nor plan_id")
    merged = merged.assign(_price=key.to_numpy()).merge(prices, left_on="_price", right_on="price_key", how="inner")
    dropped = len(items) - len(merged)
    if dropped:
        notes.append(f"{dropped} subscription item(s) without a known subscription or price were left out")
    quantity = pd.to_numeric(merged["quantity"], errors="coerce").fillna(1).to_numpy()
    amount = merged["unit_units"].to_numpy(dtype=float) * quantity
    start = parse_time(merged["sub_start_date"]).fillna(parse_time(merged["sub_created"]))
    trial_end = (
        parse_time(merged["sub_trial_end"])
        if "sub_trial_end" in merged
        else pd.Series(pd.NaT, index=merged.index, dtype="datetime64[ns, UTC]")
    )
    start = start.where(~(trial_end > start).fillna(False), trial_end)
    ended = (
        parse_time(merged["sub_ended_at"])
        if "sub_ended_at" in merged
        else pd.Series(pd.NaT, index=merged.index, dtype="datetime64[ns, UTC]")
    )
    cancel_at = (
        parse_time(merged["sub_cancel_at"])
        if "sub_cancel_at" in merged
        else pd.Series(pd.NaT, index=merged.index, dtype="datetime64[ns, UTC]")
    )
    period_end_column = "current_period_end" if "current_period_end" in merged else "sub_current_period_end"
    period_end = (
        parse_time(merged[period_end_column])
        if period_end_column in merged
        else pd.Series(pd.NaT, index=merged.index, dtype="datetime64[ns, UTC]")
    )
    at_period_end = (
        is_true(merged["sub_cancel_at_period_end"])
        if "sub_cancel_at_period_end" in merged
        else np.zeros(len(merged), bool)
    )
    end = ended.fillna(cancel_at).where(ended.notna() | cancel_at.notna(), period_end.where(at_period_end))
    if len(history):  # invoices are the facts for the periods they cover: the item runs on after them
        invoiced_to = parse_time(history["service_end"]).groupby(history["subscription_id"].to_numpy()).max()
        after = merged["subscription_id"].map(invoiced_to)
        start = start.where(~(after > start).fillna(False), after)
    interval = merged["interval_months"].to_numpy(dtype=float)
    fixed = np.isnan(interval)  # week and day prices: one interval, the current period
    period_start_column = "current_period_start" if "current_period_start" in merged else "sub_current_period_start"
    if fixed.any() and period_start_column in merged:
        start = start.where(~fixed, parse_time(merged[period_start_column]))
        end = end.where(~fixed, period_end)
    lines = pd.DataFrame(
        {
            "line_id": merged["id"].to_numpy(),
            "customer_id": merged["sub_customer_id"].to_numpy(),
            "kind": "recurring",
            "amount": amount,
            "service_start": start.to_numpy(),
            "service_end": end.to_numpy(),
            "interval_months": interval,
            "invoiced_at": start.to_numpy(),
            "currency": merged["currency"].str.upper().to_numpy(),
            "plan": merged["plan_name"].to_numpy(),
            "subscription_id": merged["subscription_id"].to_numpy(),
        }
    )
    for column in ("service_start", "service_end", "invoiced_at"):  # one dtype, also when every end is empty
        lines[column] = pd.to_datetime(lines[column], utc=True)
    lived = lines["service_end"].isna() | (lines["service_end"] > lines["service_start"])
    if (~lived).any():
        notes.append(f"{int((~lived).sum())} subscription(s) ended within their trial: no MRR")
    return lines[lived.to_numpy()].reset_index(drop=True)


def _discount_lines(
    tables: Mapping[str, pd.DataFrame], used: dict, notes: list[str], recurring: pd.DataFrame
) -> pd.DataFrame:
    """§17: subscription discounts (``subscription_discount`` with its ``coupon``) as negative recurring
    lines, one per discounted line of the subscription, over the part of it the discount covers.

    A discount runs from its start to its end (repeating: start + duration_in_months when end is empty;
    forever: open); ``once`` covers the subscription's first billing cycle from its start. Per billing
    cycle the factor is percent_off / 100, or amount_off / the cycle's total (capped at 1: an invoice does
    not go below zero), the cycle being an invoiced period (the lines of the subscription starting at one
    instant; it is discounted when it starts inside the discount) or the item's running interval (the
    negative line has the item's interval_months, from the later of both starts to the earlier end)."""
    discounts = need_table(tables, "subscription_discount", ["id", "coupon_id", "subscription_id", "start"], used)
    coupon = need_table(tables, "coupon", ["id", "duration"], used)
    merged = discounts.merge(coupon.add_prefix("c_"), left_on="coupon_id", right_on="c_id", how="inner")
    if len(merged) < len(discounts):
        notes.append(f"{len(discounts) - len(merged)} subscription discount(s) name no known coupon: left out")
    if not len(merged) or "subscription_id" not in recurring:
        return pd.DataFrame()
    percent = pd.to_numeric(merged.get("c_percent_off"), errors="coerce").to_numpy(dtype=float)
    currency = (
        merged["c_currency"].astype(str).str.upper() if "c_currency" in merged else pd.Series("", index=merged.index)
    )
    off = _units(merged["c_amount_off"], currency) if "c_amount_off" in merged else np.full(len(merged), np.nan)
    start = parse_time(merged["start"])
    end = (
        parse_time(merged["end"])
        if "end" in merged
        else pd.Series(pd.NaT, index=merged.index, dtype="datetime64[ns, UTC]")
    )
    duration = merged["c_duration"].astype(str).str.lower().to_numpy()
    months = pd.to_numeric(merged.get("c_duration_in_months"), errors="coerce").to_numpy(dtype=float)
    repeating = (duration == "repeating") & end.isna().to_numpy() & ~np.isnan(months)
    if repeating.any():
        end = end.copy()
        later = add_months(instants(start[repeating].dt.as_unit("ns")), months[repeating])
        end[repeating] = pd.DatetimeIndex(later.view("M8[ns]"), tz="UTC").as_unit(end.dt.unit)
    ids = pd.DataFrame({"d_id": merged["id"].to_numpy(), "subscription_id": merged["subscription_id"].to_numpy(),
                        "d_start": start.to_numpy(), "d_end": end.where(duration != "forever").to_numpy(),
                        "once": duration == "once", "percent": percent, "off": off, "off_currency": currency.to_numpy()})  # fmt: skip
    known = ~np.isnan(percent) | ~np.isnan(off)
    if (~known).any():
        notes.append(f"{int((~known).sum())} coupon(s) with neither percent_off nor amount_off: left out")
    lines = recurring.assign(_interval=recurring.get("interval_months", pd.Series(np.nan, index=recurring.index)))
    pairs = ids[known].merge(lines, on="subscription_id", how="inner")
    if not len(pairs):
        return pd.DataFrame()
    for column in ("service_start", "service_end", "d_start", "d_end", "invoiced_at"):
        pairs[column] = pd.to_datetime(pairs[column], utc=True)
    s, e = pairs["service_start"], pairs["service_end"]
    fixed = pairs["_interval"].isna().to_numpy()
    open_end = pairs["d_end"].isna()
    # invoiced cycles: discounted when they start inside the discount; once: the first such cycle only
    inside = (s >= pairs["d_start"]) & (open_end | (s < pairs["d_end"]))
    first_cycle = s.where(inside & fixed).groupby(pairs["d_id"]).transform("min")
    fixed_hit = fixed & inside.to_numpy() & (~pairs["once"].to_numpy() | (s == first_cycle).to_numpy())
    # running items: the overlap of the item and the discount (once: one interval of it)
    lo = s.where(s > pairs["d_start"], pairs["d_start"])
    step = pairs["_interval"].fillna(0).to_numpy(dtype=np.int64)
    lo_ns = instants(lo.dt.as_unit("ns"))
    once_end = np.where(lo_ns != NAT, add_months(lo_ns, step), NAT)  # one interval of the item
    hi_disc = pairs["d_end"].where(
        ~pairs["once"], pd.Series(pd.to_datetime(once_end.view("M8[ns]"), utc=True), index=pairs.index)
    )
    hi = e.where(hi_disc.isna() | (e.notna() & (e < hi_disc)), hi_disc)
    already = pairs["once"] & first_cycle.notna()  # the once discount went to an invoiced cycle
    item_hit = ~fixed & (hi.isna() | (hi > lo)).to_numpy() & ~already.to_numpy()
    hit = fixed_hit | item_hit
    pairs = pairs.assign(service_start=lo.where(item_hit, s), service_end=hi.where(item_hit, e))[hit]
    cycle = pairs["d_id"].astype(str) + "|" + pairs["service_start"].astype(str)
    total = pairs.groupby(cycle)["amount"].transform("sum").to_numpy(dtype=float)
    same = pairs["off_currency"].to_numpy() == pairs["currency"].astype(str).to_numpy()
    by_amount = ~np.isnan(pairs["off"].to_numpy()) & same
    if (~np.isnan(pairs["off"].to_numpy()) & ~same).any():
        notes.append("amount_off coupon(s) in another currency than their subscription: left out")
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(
            by_amount, np.minimum(pairs["off"].to_numpy() / total, 1.0), pairs["percent"].to_numpy() / 100
        )
    factor = np.where(total > 0, factor, np.nan)
    keep = ~np.isnan(factor)
    out = pd.DataFrame(
        {
            "line_id": (pairs["d_id"].astype(str) + "-" + pairs["line_id"].astype(str)).to_numpy(),
            "customer_id": pairs["customer_id"].to_numpy(),
            "kind": "recurring",
            "amount": -factor * pairs["amount"].to_numpy(dtype=float),
            "service_start": pairs["service_start"].to_numpy(),
            "service_end": pairs["service_end"].to_numpy(),
            "interval_months": pairs["_interval"].to_numpy(dtype=float),
            "invoiced_at": pairs["invoiced_at"].where(fixed[hit], pairs["service_start"]).to_numpy(),
            "currency": pairs["currency"].to_numpy(),
            "plan": pairs["plan"].to_numpy(),
        }
    )[keep]
    return out.reset_index(drop=True)


def _price_table(tables: Mapping[str, pd.DataFrame], used: dict, recurring_only: bool = True) -> pd.DataFrame:
    """price_key, unit_units (currency units), currency, interval_months (NaN: week/day), plan_name."""
    frames = []
    if "price" in tables:
        price = need_table(
            tables, "price", ["id", "unit_amount", "currency", "recurring_interval", "recurring_interval_count"], used
        )
        frames.append(_prices(price, "unit_amount", "recurring_interval", "recurring_interval_count", recurring_only))
    if "plan" in tables:
        plan = need_table(tables, "plan", ["id", "amount", "currency", "interval", "interval_count"], used)
        frames.append(_prices(plan, "amount", "interval", "interval_count", recurring_only))
    if not frames:
        raise AdapterError("fivetran-stripe: the source has neither a 'price' nor a 'plan' table")
    return pd.concat(frames, ignore_index=True).drop_duplicates("price_key")


def _prices(table: pd.DataFrame, amount: str, interval: str, count: str, recurring_only: bool = True) -> pd.DataFrame:
    unit = table[interval].astype(str).str.lower()
    n = pd.to_numeric(table[count], errors="coerce").fillna(1).to_numpy()
    months = np.where(unit == "month", n, np.where(unit == "year", 12 * n, np.nan))
    recurring = unit.isin(["month", "year", "week", "day"]).to_numpy()
    name = table["nickname"] if "nickname" in table else pd.Series(None, index=table.index)
    name = name.where(name.notna() & (name.astype(str) != ""), table.get("product_id", table["id"]))
    return pd.DataFrame(
        {
            "price_key": table["id"].to_numpy(),
            "unit_units": _units(table[amount], table["currency"]),
            "currency": table["currency"].to_numpy(),
            "interval_months": months,
            "plan_name": name.to_numpy(),
        }
    )[recurring if recurring_only else np.ones(len(table), dtype=bool)]


def _one_off_lines(tables: Mapping[str, pd.DataFrame], used: dict) -> pd.DataFrame:
    lines = need_table(tables, "invoice_line_item", ["id", "invoice_id", "amount", "currency", "period_start"], used)
    one_off = lines[lines["subscription_id"].isna()] if "subscription_id" in lines else lines
    if not len(one_off) or "invoice" not in tables:
        return pd.DataFrame()
    merged = _with_invoice(one_off, tables, used)
    return pd.DataFrame(
        {
            "line_id": merged["id"].to_numpy(),
            "customer_id": merged["inv_customer_id"].to_numpy(),
            "kind": "one_time",
            "amount": _units(merged["amount"], merged["currency"]),
            "invoiced_at": merged["invoiced"].to_numpy(),
            "currency": merged["currency"].str.upper().to_numpy(),
        }
    )


def _with_invoice(lines: pd.DataFrame, tables: Mapping[str, pd.DataFrame], used: dict) -> pd.DataFrame:
    """Invoice lines with their invoice's customer (inv_customer_id) and date (invoiced: the invoice's
    created, else the line's period_start); lines of an unknown invoice are left out."""
    invoice = need_table(tables, "invoice", ["id", "customer_id"], used)
    columns = ["id", "customer_id"] + (["created"] if "created" in invoice else [])
    merged = lines.merge(invoice[columns].add_prefix("inv_"), left_on="invoice_id", right_on="inv_id", how="inner")
    return merged.assign(
        invoiced=parse_time(merged["inv_created"] if "inv_created" in merged else merged["period_start"])
    )


def _refund_lines(tables: Mapping[str, pd.DataFrame], used: dict) -> pd.DataFrame:
    refund = need_table(tables, "refund", ["id", "amount", "currency", "created", "charge_id"], used)
    if "status" in refund:
        refund = refund[refund["status"].astype(str).str.lower() == "succeeded"]
    if "charge" not in tables or not len(refund):
        return pd.DataFrame()
    charge = need_table(tables, "charge", ["id", "customer_id"], used)
    merged = refund.merge(
        charge[["id", "customer_id"]].add_prefix("ch_"), left_on="charge_id", right_on="ch_id", how="inner"
    )
    merged = merged[merged["ch_customer_id"].notna()]
    return pd.DataFrame(
        {
            "line_id": merged["id"].to_numpy(),
            "customer_id": merged["ch_customer_id"].to_numpy(),
            "kind": "refund",
            "amount": _units(merged["amount"], merged["currency"]),
            "invoiced_at": parse_time(merged["created"]).to_numpy(),
            "currency": merged["currency"].str.upper().to_numpy(),
        }
    )
