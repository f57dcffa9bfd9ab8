"""Benchmark data at scale, deterministic: python benchmarks/generate.py --scale {tiny,small,medium,large} --out DIR

large: 1,000,000 customers x 36 months (about 16M billing lines with this generator's
monthly/annual mix, upgrades, downgrades, churn, reactivation, discounts), about 10M tickets,
5M survey rows and 50M events. medium is a tenth, small a hundredth, tiny a thousandth
(for the smoke test). Parquet, one file per table, made by csmetrics.datagen.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from csmetrics.datagen import generate, write

# customers; the per-active-customer-month rates put large at ~10M tickets / ~50M events / ~5M surveys
SCALES = {"tiny": 1_000, "small": 10_000, "medium": 100_000, "large": 1_000_000}
RATES = {"tickets_per_active_month": 0.53, "events_per_active_month": 1.6, "nps_send_rate": 0.05}


def make(scale: str, out: Path, seed: int = 2026) -> dict[str, int]:
    tables = generate(SCALES[scale], 36, seed=seed, **RATES)
    write(tables, out)
    return {name: len(frame) for name, frame in tables.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=list(SCALES), required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    start = time.perf_counter()
    rows = make(args.scale, args.out)
    print(f"{args.scale}: " + ", ".join(f"{k} {v:,}" for k, v in rows.items()) + f" in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
