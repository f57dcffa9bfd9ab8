"""csmetrics side by side with DuckDB (SQL, 2 threads) and Polars (lazy), and a naive pandas baseline.

    python benchmarks/generate.py --scale medium --out bench_data/medium
    python benchmarks/run.py --scale medium [--data bench_data/medium] [--pipelines support revenue ...] [--json out.json]

Each pipeline runs in its own process (so peak RSS is per pipeline). Inside it the engines
are interleaved: one warm-up, then three rounds of csmetrics, DuckDB and Polars; the
reported compute time is the median (data already in each engine's memory: a pandas
DataFrame, a DuckDB table, a Polars DataFrame); read time is the load from Parquet.
The naive pandas version (groupby.apply, per-customer Python) runs on a 1% sample of
customers and is extrapolated x100 (labelled so). "max_abs_diff" is the largest
difference between csmetrics and either engine over the metrics all three compute.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from csmetrics.io import read_table  # noqa: E402  (csmetrics' own reader, as the CLI reads: dimensions dictionary-encoded)
from csmetrics.schemas import DIMENSIONS  # noqa: E402

#: the csmetrics engines timed: one core, and customer buckets on every core
CSM_ENGINES = ("pandas", "threads")

PIPELINES = ("support", "surveys", "revenue", "engagement", "validate", "report")
TABLES_OF = {
    "support": ("tickets",),
    "surveys": ("surveys",),
    "revenue": ("billing", "fx"),
    "engagement": ("events",),
    "validate": ("events", "tickets", "surveys", "billing", "customers", "costs", "fx"),
    "report": ("events", "tickets", "surveys", "billing", "customers", "costs", "fx"),
}


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _timed_median(fn, repeat: int):
    """The median of ``repeat`` timed calls after an untimed one (a single read of a file moves by a
    third between runs, and a process's first reads pay for its fresh memory)."""
    seconds, out = [], fn() if repeat > 1 else None
    for _ in range(max(repeat, 1)):
        out = None  # the previous read is freed first, as a reader would hold one copy
        elapsed, out = _timed(fn)
        seconds.append(elapsed)
    return statistics.median(seconds), out


def _period_key(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    period = pd.to_datetime(out["period"])
    out["period"] = (period.dt.tz_convert("UTC").dt.tz_localize(None) if period.dt.tz is not None else period).astype("datetime64[ns]")
    return out


def max_difference(reference: pd.DataFrame, other: pd.DataFrame, keys: list[str], metrics: list[str]) -> float:
    """Largest |difference| over shared metrics; a row or a NaN present on one side only is inf."""
    a = _period_key(reference).set_index(keys)[metrics].sort_index()
    b = _period_key(other).set_index(keys)[metrics].sort_index()
    a, b = a.align(b, join="outer")
    x, y = a.to_numpy(dtype=float), b.to_numpy(dtype=float)
    both_nan = np.isnan(x) & np.isnan(y)
    diff = np.abs(x - y)
    diff[both_nan] = 0.0
    diff[np.isnan(diff)] = np.inf
    return float(diff.max()) if diff.size else 0.0


def csmetrics_wide(frame: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    import csmetrics

    wide = csmetrics.to_wide(frame)
    return wide[[*keys, *metrics]]


def sample_customers(tables: dict[str, pd.DataFrame], share: float = 0.01) -> dict[str, pd.DataFrame]:
    ids = pd.Index(pd.concat([t["customer_id"] for t in tables.values() if "customer_id" in t]).unique())
    keep = set(ids[np.random.default_rng(0).random(len(ids)) < share])
    return {k: (t[t["customer_id"].isin(keep)] if "customer_id" in t else t) for k, t in tables.items()}


def run_pipeline(name: str, data: str, repeat: int, naive: bool, only: str | None = None) -> dict:
    """One pipeline, all engines (or ``only`` one), in this (child) process."""
    import polars as pl

    import csmetrics
    import engines

    paths = {t: Path(data) / f"{t}.parquet" for t in TABLES_OF[name]}
    read = {}
    reads = 1 if name in ("validate", "report") else 3  # each engine's read: the median of three
    read["csmetrics"], frames = _timed_median(lambda: {t: read_table(p, DIMENSIONS.get(t, ())) for t, p in paths.items()}, reads)
    con, plf = engines.duck(), {}
    if name not in ("validate", "report") and only in (None, "duckdb"):  # no copies the run does not use
        read["duckdb"], _ = _timed_median(lambda: [engines.duck_load(con, t, p) for t, p in paths.items() if t in engines.DUCK_TABLES], reads)
    if name not in ("validate", "report") and only in (None, "polars"):
        read["polars"], plf = _timed_median(lambda: {t: pl.read_parquet(p) for t, p in paths.items()}, reads)
    valid = {}
    result = {"rows": {t: len(f) for t, f in frames.items()}, "read_seconds": read}
    if name not in ("validate", "report"):

        def validated() -> dict:
            out = {t: csmetrics.validate(f, t) for t, f in frames.items() if t not in ("billing",)}
            if "billing" in frames:
                out["billing"] = csmetrics.validate(frames["billing"], "billing", fx=out.get("fx"))
            return out

        # the first call builds the schemas (once a process); the second is what each run costs
        result["validate_cold_seconds"], valid = _timed(validated)
        result["validate_seconds"], valid = _timed(validated)

    keys, metrics, runners = ["period"], [], {}
    from csmetrics import plans
    from csmetrics.api import _one
    from csmetrics.engines import open_engine

    def fresh(kind: str):
        """A new engine per run (timed: the threads engine's bucketing counts), so no run reuses an
        earlier run's memo (the billing ledger)."""
        return open_engine(valid, engine=kind, validated=True)[0]

    def on(kind: str, plan):
        def run():
            engine = fresh(kind)
            return _one(engine, plan(engine))

        return run

    window = {"freq": "M", "tz": "UTC", "as_of": None, "start": None, "end": None}
    if name == "support":
        keys, metrics = ["period", "channel"], engines.SUPPORT
        runners = {f"csmetrics[{k}]": (lambda k=k: csmetrics_wide(on(k, lambda e: plans.support(e, by="channel", **window))(), keys, metrics)) for k in CSM_ENGINES}
        runners |= {"duckdb": lambda: engines.support_duckdb(con), "polars": lambda: engines.support_polars(plf["tickets"])}
        naive_fn = lambda sample: engines.support_naive(sample["tickets"])  # noqa: E731
    elif name == "surveys":
        keys, metrics = ["period", "touchpoint"], engines.SURVEYS
        runners = {f"csmetrics[{k}]": (lambda k=k: csmetrics_wide(on(k, lambda e: plans.surveys(e, by="touchpoint", **window))(), keys, metrics)) for k in CSM_ENGINES}
        runners |= {"duckdb": lambda: engines.surveys_duckdb(con), "polars": lambda: engines.surveys_polars(plf["surveys"])}
        naive_fn = lambda sample: engines.surveys_naive(sample["surveys"])  # noqa: E731
    elif name == "revenue":
        metrics = engines.REVENUE

        def csm_revenue(kind: str):
            # both families by month x plan from one pass over billing (as the report runs them) ...
            engine = fresh(kind)
            context = plans.billing_context(engine, by="plan", **window)
            revenue, customers = _one(engine, plans.revenue(engine, context))
            # ... and the company-wide numbers the engines are checked against: an exact re-aggregation
            return csmetrics_wide(csmetrics.reaggregate(pd.concat([revenue, customers])), keys, metrics)

        runners = {f"csmetrics[{k}]": (lambda k=k: csm_revenue(k)) for k in CSM_ENGINES}
        runners |= {"duckdb": lambda: engines.revenue_duckdb(con), "polars": lambda: engines.revenue_polars(plf["billing"], plf["fx"])}
        naive_fn = lambda sample: engines.revenue_naive(sample["billing"], sample["fx"])  # noqa: E731
    elif name == "engagement":
        metrics = engines.ENGAGEMENT

        def csm_engagement(kind: str):
            frame = on(kind, lambda e: plans.engagement(e, **window))()
            return csmetrics_wide(frame.query("metric != 'feature_adoption'").drop(columns="event"), keys, metrics)

        runners = {f"csmetrics[{k}]": (lambda k=k: csm_engagement(k)) for k in CSM_ENGINES}
        runners |= {"duckdb": lambda: engines.engagement_duckdb(con), "polars": lambda: engines.engagement_polars(plf["events"])}
        naive_fn = lambda sample: engines.engagement_naive(sample["events"])  # noqa: E731
    elif name == "validate":
        runners = {"csmetrics[pandas]": lambda: csmetrics.validate_tables(frames)}
        naive_fn = None
    else:  # report
        runners = {f"csmetrics[{k}]": (lambda k=k: csmetrics.report(frames, html=False, engine=k)) for k in CSM_ENGINES}
        naive_fn = None

    if only is not None:
        runners = {k: v for k, v in runners.items() if k == only or (only == "csmetrics" and k.startswith("csmetrics"))}
        naive = naive and only == "csmetrics"
    outputs = {engine: fn() for engine, fn in runners.items()}  # warm-up
    times: dict[str, list[float]] = {engine: [] for engine in runners}
    for _ in range(repeat):
        for engine, fn in runners.items():
            seconds, outputs[engine] = _timed(fn)
            times[engine].append(seconds)
    result["compute_seconds"] = {engine: statistics.median(t) for engine, t in times.items()}
    if only is not None:
        result["output"] = outputs[next(iter(runners))]
        result["keys"], result["metrics"] = keys, metrics
    elif metrics:
        reference = outputs["csmetrics[pandas]"]
        others = [e for e in outputs if e != "csmetrics[pandas]"]
        result["max_abs_diff_by_engine"] = {e: max_difference(reference, outputs[e], keys, metrics) for e in others}
        result["max_abs_diff"] = max(result["max_abs_diff_by_engine"].values())
    # end to end: read the Parquet files (+ validate, for csmetrics) + compute
    validate_seconds = result.get("validate_seconds", 0.0)
    result["end_to_end_seconds"] = {
        e: result["compute_seconds"][e] + read.get(e.split("[")[0], read["csmetrics"]) + (validate_seconds if e.startswith("csmetrics") else 0.0)
        for e in result["compute_seconds"]
        if name not in ("validate", "report") or e.startswith("csmetrics")
    }
    if naive and naive_fn is not None and name != "validate":
        plain = {t: f.astype({c: "str" for c in f.columns if isinstance(f[c].dtype, pd.CategoricalDtype)}) for t, f in frames.items()}
        sample = sample_customers(plain)  # the naive baselines take plain text, as pd.read_parquet gives
        seconds, _ = _timed(lambda: naive_fn(sample))
        result["naive_extrapolated"] = seconds * 100
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="medium")
    parser.add_argument("--data", type=Path, default=None, help="generated data folder (default bench_data/<scale>)")
    parser.add_argument("--pipelines", nargs="*", default=list(PIPELINES), choices=PIPELINES)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--isolate", action="store_true",
                        help="run each engine in its own process (when three engines' copies do not fit in memory)")
    args = parser.parse_args()
    data = args.data or Path(__file__).resolve().parents[1] / "bench_data" / args.scale
    if not (data / "tickets.parquet").exists():
        from generate import make

        print(f"generating {args.scale} data into {data} ...", flush=True)
        make(args.scale, data)
    results = {}
    context = get_context("spawn")
    for name in args.pipelines:
        if args.isolate and name not in ("validate", "report"):
            results[name] = isolated(name, str(data), args.repeat, not args.no_naive, context)
        else:
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                results[name] = pool.submit(run_pipeline, name, str(data), args.repeat, not args.no_naive).result()
        print_row(name, results[name])
    malloc = "off (CSMETRICS_MALLOC=default)" if os.environ.get("CSMETRICS_MALLOC", "").lower() == "default" else "on"
    print(f"(median of {args.repeat} after a warm-up; compute only, data in memory; csmetrics' malloc tuning {malloc}; naive = 1% sample x 100)")
    if args.json:
        summary = {
            "scale": args.scale,
            "threads": thread_counts(),
            "pipelines": {
                name: {
                    "compute_seconds": r["compute_seconds"],
                    "end_to_end_seconds": r["end_to_end_seconds"],
                    "validate_seconds": r.get("validate_seconds"),
                    "validate_cold_seconds": r.get("validate_cold_seconds"),
                    "ratios": ratios(r),
                    "naive_extrapolated": r.get("naive_extrapolated"),
                    "max_abs_diff": r.get("max_abs_diff"),
                    "max_abs_diff_by_engine": r.get("max_abs_diff_by_engine"),
                    "peak_rss_mb": r["peak_rss_mb"],
                    "read_seconds": r["read_seconds"],
                    "rows": r["rows"],
                }
                for name, r in results.items()
            },
        }
        args.json.write_text(json.dumps(summary, indent=2))


def thread_counts() -> dict[str, int]:
    """Threads each engine uses here: csmetrics' threads engine (one bucket per core), DuckDB, Polars."""
    import engines
    import polars as pl

    return {"csmetrics[pandas]": 1, "csmetrics[threads]": os.cpu_count() or 1, "duckdb": engines.DUCK_THREADS,
            "polars": pl.thread_pool_size()}  # fmt: skip


def ratios(r: dict) -> dict[str, float]:
    """csmetrics' best engine over the faster peer, compute and end to end (at or below 1: csmetrics ahead)."""
    out = {}
    for kind in ("compute_seconds", "end_to_end_seconds"):
        times = r.get(kind, {})
        ours = [v for e, v in times.items() if e.startswith("csmetrics")]
        peers = [times[e] for e in ("duckdb", "polars") if e in times]
        if ours and peers:
            out[kind.replace("_seconds", "")] = min(ours) / min(peers)
    return out


def isolated(name: str, data: str, repeat: int, naive: bool, context) -> dict:
    """Each engine in its own process; outputs compared here. Peak RSS is the largest of the three."""
    parts = {}
    for engine in ("csmetrics", "duckdb", "polars"):
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            parts[engine] = pool.submit(run_pipeline, name, data, repeat, naive, engine).result()
    base = parts["csmetrics"]
    keys, metrics = base["keys"], base["metrics"]
    diffs = {e: max_difference(base["output"], parts[e]["output"], keys, metrics) for e in ("duckdb", "polars")}
    merged = {k: v for p in parts.values() for k, v in p["compute_seconds"].items()}
    return {
        "rows": base["rows"],
        "read_seconds": {e: parts[e]["read_seconds"].get(e, parts[e]["read_seconds"].get("csmetrics")) for e in parts},
        "validate_seconds": base.get("validate_seconds"),
        "compute_seconds": merged,
        "end_to_end_seconds": {k: v for p in parts.values() for k, v in p["end_to_end_seconds"].items()},
        "max_abs_diff": max(diffs.values()),
        "max_abs_diff_by_engine": diffs,
        "naive_extrapolated": base.get("naive_extrapolated"),
        "peak_rss_mb": max(p["peak_rss_mb"] for p in parts.values()),
        "peak_rss_mb_by_engine": {e: p["peak_rss_mb"] for e, p in parts.items()},
    }


HEADER_PRINTED = []


def print_row(name: str, r: dict) -> None:
    if not HEADER_PRINTED:
        threads = thread_counts()
        print("threads: " + ", ".join(f"{e} {n}" for e, n in threads.items()))
        print(f"{'pipeline':<11} {'rows':>12} {'csm pandas':>10} {'csm thr':>8} {'duckdb':>8} {'polars':>8} {'ratio':>6} "
              f"{'e2e csm':>8} {'e2e duck':>8} {'e2e pol':>8} {'e2e ratio':>9} {'valid.':>7} {'naive*':>9} {'max diff':>10} {'peak MB':>8}")
        HEADER_PRINTED.append(True)
    c, e2e, q = r["compute_seconds"], r.get("end_to_end_seconds", {}), ratios(r)
    fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else "-"  # noqa: E731
    best = min((v for k, v in e2e.items() if k.startswith("csmetrics")), default=None)
    rows = sum(r["rows"].values())
    diff = r.get("max_abs_diff")
    print(f"{name:<11} {rows:>12,} {fmt(c.get('csmetrics[pandas]')):>10} {fmt(c.get('csmetrics[threads]')):>8} {fmt(c.get('duckdb')):>8} "
          f"{fmt(c.get('polars')):>8} {fmt(q.get('compute')):>6} {fmt(best):>8} {fmt(e2e.get('duckdb')):>8} {fmt(e2e.get('polars')):>8} "
          f"{fmt(q.get('end_to_end')):>9} {fmt(r.get('validate_seconds')):>7} {fmt(r.get('naive_extrapolated')):>9} "
          f"{('%.2e' % diff) if diff is not None else '-':>10} {r['peak_rss_mb']:>8,.0f}", flush=True)


if __name__ == "__main__":
    main()
