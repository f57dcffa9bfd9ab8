"""Validation speed: ``csmetrics.validate`` over ~10 million ticket rows (and the other tables).

Run on demand (not in CI):  python benchmarks/bench_validate.py [--tickets 10000000]
Prints a table of seconds (median of 3 after a warm-up), rows/s and peak RSS.
Data is generated deterministically and cached under bench_data/ (git-ignored).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import csmetrics  # noqa: E402
from _common import CACHE, median_seconds, peak_rss_mb  # noqa: E402
from csmetrics.datagen import generate  # noqa: E402


def ticket_table(n_tickets: int) -> pd.DataFrame:
    path = CACHE / f"tickets_{n_tickets}.parquet"
    if path.exists():
        return pd.read_parquet(path)
    # 200k customers x 36 months gives ~3.78M active customer-months
    customers = 200_000
    rate = n_tickets / (customers * 36 * 0.525)
    tickets = generate(customers, 36, seed=11, tickets_per_active_month=rate, only=("tickets",))["tickets"]
    CACHE.mkdir(exist_ok=True)
    tickets.to_parquet(path)
    return tickets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=10_000_000)
    args = parser.parse_args()
    tickets = ticket_table(args.tickets)
    rows = len(tickets)
    seconds = median_seconds(lambda: csmetrics.validate(tickets, "tickets"))
    as_strings = tickets.assign(created_at=tickets["created_at"].dt.strftime("%Y-%m-%d %H:%M:%S")).head(1_000_000)
    seconds_parse = median_seconds(lambda: csmetrics.validate(as_strings, "tickets"), repeat=1)
    peak_mb = peak_rss_mb()
    print(f"{'case':<46} {'rows':>12} {'seconds':>9} {'rows/s':>14}")
    print(f"{'tickets, typed columns (Parquet)':<46} {rows:>12,} {seconds:>9.2f} {rows / seconds:>14,.0f}")
    print(f"{'tickets, created_at as text (1M rows)':<46} {len(as_strings):>12,} {seconds_parse:>9.2f} {len(as_strings) / seconds_parse:>14,.0f}")
    print(f"peak RSS {peak_mb:,.0f} MB (includes the data)")


if __name__ == "__main__":
    main()
