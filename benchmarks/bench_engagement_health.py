"""engagement_metrics by month over ~50M events (sessions included); HealthScorecard over 200k customers x 24 months.

Run on demand:  python benchmarks/bench_engagement_health.py [--events-customers 200000] [--health-customers 200000]
Prints seconds (median of 3 after a warm-up, 1 run for the largest), rows/s and peak RSS.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import csmetrics  # noqa: E402
from _common import cached_tables, median_seconds, peak_rss_mb  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events-customers", type=int, default=200_000)
    parser.add_argument("--events-per-month", type=float, default=8.0)
    parser.add_argument("--health-customers", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    start = time.perf_counter()
    events = cached_tables(f"events_{args.events_customers}_{args.events_per_month}", ("events",),
                           n_customers=args.events_customers, months=36, seed=9,
                           events_per_active_month=args.events_per_month)["events"]  # fmt: skip
    generated = time.perf_counter() - start
    valid_events = csmetrics.validate(events, "events")
    rows_events = len(valid_events)
    engagement = median_seconds(lambda: csmetrics.engagement_metrics(valid_events, validated=True), repeat=args.repeat)
    events = valid_events = None  # free the events before the scorecard data is made

    health = cached_tables(f"health_{args.health_customers}_24", ("events", "tickets", "surveys", "billing", "fx"),
                           n_customers=args.health_customers, months=24, seed=4, events_per_active_month=4.0)  # fmt: skip
    valid, _ = csmetrics.validate_tables(health)
    card = csmetrics.HealthScorecard()
    scores = card.score(validated=True, **valid)
    scoring = median_seconds(lambda: card.score(validated=True, **valid), repeat=args.repeat)

    print(f"{'pipeline':<58} {'rows':>12} {'seconds':>9} {'rows/s':>14}")
    print(f"{'engagement_metrics by month (sessions, MAU, adoption)':<58} {rows_events:>12,} {engagement:>9.2f} {rows_events / engagement:>14,.0f}")
    print(f"{'HealthScorecard.score (customer-period rows out)':<58} {len(scores):>12,} {scoring:>9.2f} {len(scores) / scoring:>14,.0f}")
    print("  health inputs: " + ", ".join(f"{k} {len(v):,}" for k, v in valid.items()))
    print(f"peak RSS {peak_rss_mb():,.0f} MB (includes the data); data generation {generated:.0f} s (cached afterwards)")


if __name__ == "__main__":
    main()
