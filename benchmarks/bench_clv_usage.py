"""Issue 19's benchmark: rfm_summary and the BG/NBD fit over many customers, and usage_retention
over a generated events table.

    python benchmarks/bench_clv_usage.py [--customers 1000000] [--events DATA_DIR/events.parquet]

Purchases: each customer buys on a geometric number of days (mean 3) spread over 18 months, with
amounts from a gamma distribution, as one_time billing lines (validated once, outside the timing).
Events: the benchmark generator's events (``benchmarks/generate.py``), weekly retention, 12 offsets.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

import csmetrics


def purchases(customers: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    per_customer = rng.geometric(1 / 3, customers)
    customer = np.repeat(np.arange(customers), per_customer)
    origin = pd.Timestamp("2023-01-01", tz="UTC").value
    first = rng.integers(0, 120, customers)[customer]
    is_first = np.r_[True, customer[1:] != customer[:-1]]
    day = first + np.where(is_first, 0, rng.integers(1, 420, len(customer)))
    instant = origin + day.astype(np.int64) * 86_400 * 10**9 + rng.integers(0, 86_400, len(customer)) * 10**9
    return pd.DataFrame(
        {
            "customer_id": customer,
            "kind": "one_time",
            "amount": np.round(rng.gamma(2.0, 20.0, len(customer)), 2),
            "invoiced_at": pd.DatetimeIndex(instant.view("M8[ns]"), tz="UTC"),
        }
    )


def timed(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - began)
    return out, float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--events", default="bench_data/medium/events.parquet")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    billing = csmetrics.validate(purchases(args.customers), "billing")
    as_of = pd.Timestamp("2024-06-30", tz="UTC")
    rows = []
    summary, seconds = timed(lambda: csmetrics.rfm_summary(billing, as_of=as_of, validated=True), args.repeat)
    rows.append(("rfm_summary", len(billing), seconds))
    _, seconds = timed(lambda: csmetrics.BetaGeoModel().fit(summary), args.repeat)
    rows.append(("BetaGeoModel.fit", len(summary), seconds))
    _, seconds = timed(lambda: csmetrics.GammaGammaModel().fit(summary), args.repeat)
    rows.append(("GammaGammaModel.fit", int((summary["frequency"] > 0).sum()), seconds))
    try:
        events = pd.read_parquet(args.events)
    except FileNotFoundError:
        events = None
        print(f"({args.events} not found: python benchmarks/generate.py --scale medium --out bench_data/medium)")
    if events is not None:
        events = csmetrics.validate(events, "events")
        _, seconds = timed(lambda: csmetrics.usage_retention(events, freq="W", periods=12, validated=True), args.repeat)
        rows.append(("usage_retention (W, 12)", len(events), seconds))
        _, seconds = timed(lambda: csmetrics.active_days_distribution(events, validated=True), args.repeat)
        rows.append(("active_days_distribution (M)", len(events), seconds))
    print(f"{'pipeline':<32} {'rows':>12} {'seconds':>9} {'rows/s':>14}")
    for name, n, seconds in rows:
        print(f"{name:<32} {n:>12,} {seconds:>9.2f} {n / seconds:>14,.0f}")


if __name__ == "__main__":
    main()
