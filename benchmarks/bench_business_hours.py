"""Business minutes for many tickets (issue 16's target: 10M in at most 3 s on this machine).

    python benchmarks/bench_business_hours.py [--rows 10000000] [--repeat 3]

Random creation instants over two years and response times up to ten days, a Europe/Berlin schedule
with a lunch break and holidays (both daylight-saving changes fall inside the range).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from csmetrics import Schedule, business_minutes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    origin = pd.Timestamp("2023-01-01", tz="UTC").value
    start = origin + rng.integers(0, 730 * 86_400, args.rows) * 10**9
    end = start + rng.integers(0, 10 * 86_400, args.rows) * 10**9
    start_s = pd.Series(pd.DatetimeIndex(start.view("M8[ns]"), tz="UTC"))
    end_s = pd.Series(pd.DatetimeIndex(end.view("M8[ns]"), tz="UTC"))
    schedule = Schedule(tz="Europe/Berlin", hours={d: ["09:00-12:00", "13:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
                        holidays=["2023-12-25", "2023-12-26", "2024-12-25", "2024-12-26"])  # fmt: skip
    times = []
    for _ in range(args.repeat):
        began = time.perf_counter()
        business_minutes(start_s, end_s, schedule)
        times.append(time.perf_counter() - began)
    seconds = float(np.median(times))
    print(f"{'pipeline':<40} {'rows':>12} {'seconds':>9} {'rows/s':>14}")
    print(f"{'business_minutes (Europe/Berlin)':<40} {args.rows:>12,} {seconds:>9.2f} {args.rows / seconds:>14,.0f}")


if __name__ == "__main__":
    main()
