"""revenue_metrics + customer_metrics by month x plan over ~1M customers x 36 months.

Run on demand:  python benchmarks/bench_revenue.py [--customers 1000000]
Prints seconds (median of 3 after a warm-up), rows/s and peak RSS.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import csmetrics  # noqa: E402
from _common import cached_tables, median_seconds, peak_rss_mb  # noqa: E402
from csmetrics.metrics import customers as customers_family  # noqa: E402
from csmetrics.metrics import revenue as revenue_family  # noqa: E402
from csmetrics.metrics._billing import prepare  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=36)
    args = parser.parse_args()
    tables = cached_tables(f"revenue_{args.customers}_{args.months}", ("billing", "fx"),
                           n_customers=args.customers, months=args.months, seed=5)  # fmt: skip
    billing, fx = tables["billing"], tables["fx"]
    rows = len(billing)
    valid = csmetrics.validate(billing, "billing", fx=fx)

    def both():
        prepared, context = prepare(valid, fx=fx, by="plan")
        summed = revenue_family.combine([revenue_family.partial(prepared, context)], context)
        return revenue_family.finalize(summed, context), customers_family.finalize(summed, context)

    compute = median_seconds(both)
    check = median_seconds(lambda: csmetrics.validate(billing, "billing", fx=fx), repeat=1)
    print(f"{'step':<52} {'rows':>12} {'seconds':>9} {'rows/s':>14}")
    print(f"{'revenue + customer metrics, month x plan':<52} {rows:>12,} {compute:>9.2f} {rows / compute:>14,.0f}")
    print(f"{'validate billing':<52} {rows:>12,} {check:>9.2f} {rows / check:>14,.0f}")
    print(f"peak RSS {peak_rss_mb():,.0f} MB (includes the data)")


if __name__ == "__main__":
    main()
