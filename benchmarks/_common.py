"""Shared helpers for the benchmark scripts: cached generated data, timing, memory."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from csmetrics.datagen import generate

CACHE = Path(__file__).resolve().parents[1] / "bench_data"


def cached_tables(name: str, tables: tuple[str, ...], **generate_kwargs) -> dict[str, pd.DataFrame]:
    """Generate once (deterministically) and cache as Parquet under bench_data/<name>/."""
    folder = CACHE / name
    if all((folder / f"{t}.parquet").exists() for t in tables):
        return {t: pd.read_parquet(folder / f"{t}.parquet") for t in tables}
    made = generate(only=tables, **generate_kwargs)
    folder.mkdir(parents=True, exist_ok=True)
    for t in tables:
        made[t].to_parquet(folder / f"{t}.parquet")
    return {t: made[t] for t in tables}


def median_seconds(fn: Callable[[], object], repeat: int = 3) -> float:
    """Median wall time of ``repeat`` runs after one warm-up."""
    fn()
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
