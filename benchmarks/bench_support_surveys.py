"""support_metrics by month x channel over ~10M tickets; survey_metrics by month x touchpoint over 5M rows.

Run on demand:  python benchmarks/bench_support_surveys.py [--tickets 10000000] [--surveys 5000000]
Prints seconds (median of 3 after a warm-up), rows/s and peak RSS.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import csmetrics  # noqa: E402
from _common import CACHE, median_seconds, peak_rss_mb  # noqa: E402
from bench_validate import ticket_table  # noqa: E402


def survey_table(n: int, seed: int = 3) -> pd.DataFrame:
    """n survey rows (NPS, CSAT, CES, CXI), a third unanswered, over three years."""
    path = CACHE / f"surveys_{n}.parquet"
    if path.exists():
        return pd.read_parquet(path)
    rng = np.random.default_rng(seed)
    kind = rng.choice(4, n, p=[0.4, 0.35, 0.15, 0.1])
    high = np.array([10, 5, 7, 5])[kind]
    low = np.array([0, 1, 1, 1])[kind]
    score = (low + rng.integers(0, 11, n) % (high - low + 1)).astype(float)
    score[rng.random(n) < 0.33] = np.nan
    sent = pd.Timestamp("2023-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 3 * 365 * 86400, n), unit="s")
    frame = pd.DataFrame(
        {
            "response_id": np.arange(n),
            "customer_id": rng.integers(1, 1_000_000, n),
            "survey": pd.Series(np.array(["nps", "csat", "ces", "cxi"])[kind], dtype="str"),
            "score": score,
            "sent_at": sent,
            "responded_at": (sent + pd.to_timedelta(rng.integers(0, 86400, n), unit="s")).where(~np.isnan(score)),
            "component": pd.Series(np.where(kind == 3, np.array(["effort", "empathy", "understanding", "efficiency"])[rng.integers(0, 4, n)], None), dtype="str"),
            "touchpoint": pd.Series(np.array(["web", "support", "onboarding"])[rng.integers(0, 3, n)], dtype="str"),
            "comment": pd.Series(np.where(rng.random(n) < 0.2, "a comment", None), dtype="str"),
        }
    )
    CACHE.mkdir(exist_ok=True)
    frame.to_parquet(path)
    return frame


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=10_000_000)
    parser.add_argument("--surveys", type=int, default=5_000_000)
    args = parser.parse_args()
    tickets = csmetrics.validate(ticket_table(args.tickets), "tickets")
    surveys = csmetrics.validate(survey_table(args.surveys), "surveys")
    targets = {"urgent": 60, "high": 240, "normal": 1440, "low": 2880}
    support = median_seconds(lambda: csmetrics.support_metrics(tickets, by="channel", sla_targets=targets, validated=True))
    survey = median_seconds(lambda: csmetrics.survey_metrics(surveys, by="touchpoint", validated=True))
    print(f"{'pipeline':<48} {'rows':>12} {'seconds':>9} {'rows/s':>14}")
    print(f"{'support_metrics, month x channel':<48} {len(tickets):>12,} {support:>9.2f} {len(tickets) / support:>14,.0f}")
    print(f"{'survey_metrics, month x touchpoint':<48} {len(surveys):>12,} {survey:>9.2f} {len(surveys) / survey:>14,.0f}")
    print(f"peak RSS {peak_rss_mb():,.0f} MB (includes the data)")


if __name__ == "__main__":
    main()
