"""The whole report on the pandas and the Dask engine: seconds, peak memory, same outputs.

    python benchmarks/bench_dask.py --data bench_data/large --workers 2 --memory-limit 2.5GB [--engines dask,pandas]

Each engine runs ``csmetrics report DATA --out OUT/<engine> --no-html`` in its own
process; peak memory is the largest sum of resident memory over that process
and all its children (the Dask workers included), sampled every 0.2 s. The
in-memory size of the data is measured by loading one table at a time in a
separate process (pandas ``memory_usage(deep=True)``). When both engines ran,
their outputs are compared (metrics, cohorts, followups, at_risk to 1e-9
relative; customers row for row).

With ``--task-stream FILE`` the Dask run goes to a local cluster this script starts (same workers and
limits, ``--scheduler``), its task stream is recorded, and a table of worker-seconds per task function
and action (compute, transfer, disk-read, disk-write) is printed and saved to FILE as JSON: where the
workers' time goes. The peak memory is then the CLI process's alone (the workers are this script's).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil

SIZE_SCRIPT = """
import sys, pandas as pd
from csmetrics.io import find_tables, read_table
total = 0
for name, path in find_tables(sys.argv[1]).items():
    frame = read_table(path)
    total += int(frame.memory_usage(deep=True).sum())
    del frame
print(total)
"""


def data_size(data: Path) -> int:
    return int(subprocess.run([sys.executable, "-c", SIZE_SCRIPT, str(data)], check=True, capture_output=True, text=True).stdout)


def run(command: list[str]) -> tuple[float, int, int]:
    """(seconds, peak RSS of the process tree in bytes, exit code)."""
    start = time.perf_counter()
    # stderr to a file, not a pipe: nothing reads a pipe while the run lasts, and once the workers'
    # memory warnings fill its buffer (64 KiB) the run blocks on its next write, for ever
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, text=True)
        root = psutil.Process(process.pid)
        peak = 0
        while process.poll() is None:
            total = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            peak = max(peak, total)
            time.sleep(0.2)
        seconds = time.perf_counter() - start
        if process.returncode:
            errors.seek(0)
            sys.stderr.write(errors.read()[-4000:])
    return seconds, peak, process.returncode


def task_name(row: dict) -> str:
    """A task stream row's function name (its key without the token)."""
    key = row["key"][0] if isinstance(row["key"], tuple) else row["key"]
    return re.split(r"-[0-9a-f]{8}|-[0-9a-f]{32}", str(key))[0]


@contextlib.contextmanager
def task_stream(workers: int, memory_limit: str, out: Path):
    """A local cluster like the CLI's, yielding its scheduler address; its task stream summarised into ``out``."""
    from distributed import Client, LocalCluster, get_task_stream

    with LocalCluster(n_workers=workers, threads_per_worker=1, memory_limit=memory_limit, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:  # fmt: skip
        from csmetrics.engines.worker_heap import HeapPlugin

        client.register_plugin(HeapPlugin())  # as the CLI's local cluster
        with get_task_stream(client) as stream:
            yield cluster.scheduler_address
        seconds: dict[tuple[str, str], float] = collections.defaultdict(float)
        for row in stream.data:
            for part in row["startstops"]:
                seconds[(task_name(row), part["action"])] += part["stop"] - part["start"]
    table = sorted(({"task": n, "action": a, "seconds": round(v, 2)} for (n, a), v in seconds.items()), key=lambda r: -r["seconds"])
    totals = collections.Counter()
    for r in table:
        totals[r["action"]] += r["seconds"]
    print("worker-seconds: " + ", ".join(f"{a} {v:.1f}" for a, v in totals.most_common()))
    for r in table[:25]:
        print(f"  {r['seconds']:8.1f}  {r['action']:<11} {r['task']}")
    # the timeline: worker-seconds of each action in 10 s windows since the first task started
    spans = [(task_name(row), part) for row in stream.data for part in row["startstops"]]
    origin = min((p["start"] for _, p in spans), default=0.0)
    windows: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    names: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for name, part in spans:
        start, stop = part["start"] - origin, part["stop"] - origin
        w = int(start // 10)
        while start < stop:
            end = min(stop, (w + 1) * 10)
            windows[w][part["action"]] += end - start
            names[w][name] += end - start
            start, w = end, w + 1
    timeline = [
        {"from_s": 10 * w, **{a: round(v, 1) for a, v in windows[w].items()}, "top": [n for n, _ in names[w].most_common(3)]}
        for w in sorted(windows)
    ]
    out.write_text(json.dumps({"totals": dict(totals), "tasks": table, "timeline": timeline}, indent=2))


def compare(a: Path, b: Path) -> dict[str, str]:
    out = {}
    for name in ("metrics", "cohorts", "followups", "at_risk", "customers"):
        x, y = pd.read_parquet(a / f"{name}.parquet"), pd.read_parquet(b / f"{name}.parquet")
        try:
            pd.testing.assert_frame_equal(x, y, rtol=1e-9)
            out[name] = f"equal ({len(x):,} rows)"
        except AssertionError as err:
            out[name] = f"DIFFERENT: {str(err).splitlines()[0]}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--engines", default="dask,pandas")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="2.5GB", help="per Dask worker")
    parser.add_argument("--buckets", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--task-stream", type=Path, default=None, help="Dask: record the task stream, summary to this JSON file")
    args = parser.parse_args()

    size = data_size(args.data)
    print(f"data {args.data}: {size / 2**30:.2f} GiB in memory (pandas, all tables)")
    results = {}
    cli = [sys.executable, "-c", "from csmetrics.cli import app; app()", "report", str(args.data), "--no-html", "--quiet"]
    for engine in args.engines.split(","):
        command = [*cli, "--out", str(args.out / engine), "--engine", engine]
        if engine == "dask":
            if args.buckets:
                command += ["--buckets", str(args.buckets)]
            if args.task_stream:
                with task_stream(args.workers, args.memory_limit, args.task_stream) as address:
                    seconds, peak, code = run([*command, "--scheduler", address])
            else:
                command += ["--workers", str(args.workers), "--memory-limit", args.memory_limit]
                seconds, peak, code = run(command)
        else:
            seconds, peak, code = run(command)
        results[engine] = {"seconds": round(seconds, 1), "peak_rss_mb": round(peak / 2**20), "exit_code": code}
        print(f"{engine:<7} {seconds:8.1f} s  peak {peak / 2**30:6.2f} GiB  exit {code}", flush=True)
    # compare when both outputs exist (from this run, or the other engine's earlier run into --out)
    if all((args.out / e / "manifest.json").exists() for e in ("dask", "pandas")) and all(r["exit_code"] == 0 for r in results.values()):
        results["comparison"] = compare(args.out / "pandas", args.out / "dask")
        for name, verdict in results["comparison"].items():
            print(f"  {name:<10} {verdict}")
    summary = {"data": str(args.data), "data_bytes": size, "workers": args.workers, "memory_limit": args.memory_limit,
               "machine_bytes": psutil.virtual_memory().total, "results": results}  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
