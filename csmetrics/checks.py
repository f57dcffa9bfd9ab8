"""Checks that catch mapping mistakes (issue 17): warnings, not errors, when validated tables are
probably mapped wrong.

- fx rates that look inverted: a currency usually worth more than the base quoted below 1 at
  every date (or one worth less quoted above 1), when the inverse of its median rate is close to
  what the currency is usually worth;
- amounts that look like cents (minor units): every billing amount a whole number, more than half above 10,000
  (so the median is above it);
- a recurring line that runs longer than 5 years (a sentinel end date such as 9999-12-31, or a
  lifetime deal);
- the converted MRR jumping more than 10x between neighbouring months (fx direction, cents).

Each check returns plain sentences; :func:`check_mapping` also raises them as
:class:`MappingWarning`, and the report lists them in its manifest and on the dashboard.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd

from csmetrics.periods import NAT, instants
from csmetrics.validate import resolve_base_currency

__all__ = ["USD_VALUE", "MappingWarning", "billing_facts", "billing_warnings", "check_mapping", "mrr_jumps"]

#: Whole-number amounts, more than half of them above this: probably minor units (cents).
_CENTS_MEDIAN = 10_000


class MappingWarning(UserWarning):
    """A table that is valid but probably mapped wrong (inverted fx, cents, sentinel dates)."""


#: Rough value of one unit in US dollars (order of magnitude is all the inversion check needs).
USD_VALUE = {
    "USD": 1.0, "EUR": 1.08, "GBP": 1.27, "CHF": 1.12, "AUD": 0.66, "NZD": 0.6, "CAD": 0.73, "JPY": 0.0067,
    "CNY": 0.14, "INR": 0.012, "SEK": 0.095, "NOK": 0.093, "DKK": 0.145, "PLN": 0.25, "BRL": 0.19, "MXN": 0.055,
    "ZAR": 0.054, "SGD": 0.74, "HKD": 0.128, "KRW": 0.00073, "KWD": 3.25, "BHD": 2.65, "OMR": 2.6, "JOD": 1.41,
}  # fmt: skip


def _fx_warnings(fx: pd.DataFrame, base: str | None) -> list[str]:
    if base is None or base.upper() not in USD_VALUE or not len(fx):
        return []
    out = []
    base_usd = USD_VALUE[base.upper()]
    for currency, rates in fx.groupby(fx["currency"].astype("str"))["rate"]:
        usual = USD_VALUE.get(currency.upper())
        if usual is None or currency.upper() == base.upper():
            continue
        expected = usual / base_usd  # base units per unit of the currency
        median = float(rates.median())
        if not median > 0:
            continue
        wrong_side = (expected > 1.2 and (rates < 1).all()) or (expected < 1 / 1.2 and (rates > 1).all())
        if wrong_side and abs(np.log((1 / median) / expected)) < abs(np.log(median / expected)):
            out.append(
                f"fx: {currency} rates look inverted (median {median:.4g} {base} per {currency}; one {currency} is "
                f"usually worth about {expected:.4g} {base}). fx.rate is units of the base currency per unit of "
                f"the currency: amount x rate = base amount."
            )
    return out


def billing_facts(billing: pd.DataFrame) -> dict[str, float]:
    """What the billing checks need of (a bucket or partition of) validated billing; additive over rows
    (``max_years`` by max), so any engine can combine its parts with :func:`billing_warnings`."""
    amount = billing["amount"].to_numpy(dtype=float)
    amount = amount[np.isfinite(amount)]
    facts = {"n": float(len(amount)), "whole": float(np.sum(amount == np.round(amount))),
             "above": float(np.sum(np.abs(amount) > _CENTS_MEDIAN)), "long": 0.0, "max_years": 0.0}  # fmt: skip
    if {"service_start", "service_end", "kind"} <= set(billing.columns) and len(billing):
        start, end = instants(billing["service_start"]), instants(billing["service_end"])
        recurring = (billing["kind"] == "recurring").to_numpy(dtype=bool) & (start != NAT) & (end != NAT)
        years = (end - start) / (365.25 * 86_400e9)
        long = recurring & (years > 5)
        facts["long"] = float(long.sum())
        facts["max_years"] = float(years[long].max()) if long.any() else 0.0
    return facts


def billing_warnings(parts: list[dict[str, float]]) -> list[str]:
    """The billing mapping warnings of the combined :func:`billing_facts` of disjoint parts."""
    total = {k: sum(p[k] for p in parts) for k in ("n", "whole", "above", "long")}
    out = []
    if total["n"] and total["whole"] == total["n"] and total["above"] > total["n"] / 2:
        out.append(
            f"billing: amounts look like minor units (cents): all {int(total['n']):,} are whole numbers and more than "
            f"half exceed {_CENTS_MEDIAN:,}. amount is in currency units; divide cents by 100."
        )
    if total["long"]:
        longest = max(p["max_years"] for p in parts)
        out.append(
            f"billing: {int(total['long']):,} recurring line(s) run longer than 5 years (up to {longest:,.0f}"
            " years): a sentinel end date? A subscription that runs until cancelled takes interval_months and a null "
            "service_end (§17)."
        )
    return out


def mrr_jumps(metrics: pd.DataFrame) -> list[str]:
    """Company-wide monthly MRR that grows or falls more than 10x between neighbouring periods."""
    if not len(metrics) or "metric" not in metrics:
        return []
    rows = metrics[metrics["metric"] == "mrr"]
    segments = [c for c in rows.columns if c not in ("period", "freq", "metric", "value", "numerator", "denominator",
                                                      "ci_low", "ci_high")]  # fmt: skip
    if segments:
        rows = rows[rows[segments].isna().all(axis=1)]
    mrr = rows.sort_values("period")["value"].to_numpy(dtype=float)
    periods = rows.sort_values("period")["period"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = mrr[1:] / mrr[:-1]
    jump = np.flatnonzero((mrr[:-1] > 0) & (mrr[1:] > 0) & ((ratio > 10) | (ratio < 0.1)))
    if not len(jump):
        return []
    at = pd.Timestamp(periods[jump[0] + 1])
    return [
        f"revenue: MRR changes more than 10x between neighbouring periods ({len(jump)} time(s), first at "
        f"{at:%Y-%m-%d}: {mrr[jump[0]]:,.0f} -> {mrr[jump[0] + 1]:,.0f}): check the fx direction and the amount units."
    ]


def check_mapping(
    tables: Mapping[str, pd.DataFrame],
    base_currency: str | None = None,
    *,
    warn: bool = True,
    billing_parts: list[dict[str, float]] | None = None,
) -> list[str]:
    """The mapping warnings of validated pandas tables (billing, fx), or of ``billing_parts`` (the
    :func:`billing_facts` of an engine's buckets or partitions) in place of billing; each is also raised as a
    :class:`MappingWarning` when ``warn``."""
    out: list[str] = []
    billing, fx = tables.get("billing"), tables.get("fx")
    if billing_parts is not None:
        out += billing_warnings(billing_parts)
    elif isinstance(billing, pd.DataFrame) and len(billing):
        out += billing_warnings([billing_facts(billing)])
    if isinstance(fx, pd.DataFrame) and len(fx):
        base = base_currency
        if base is None and isinstance(billing, pd.DataFrame) and "currency" in billing:
            currencies = set(billing["currency"].dropna().astype(str))
            base = resolve_base_currency(currencies, set(fx["currency"].astype(str)), None, fx)
        out += _fx_warnings(fx, base)
    if warn:
        for message in out:
            warnings.warn(message, MappingWarning, stacklevel=2)
    return out
