"""A toy-scale run of the benchmark harness: every pipeline, three engines agreeing."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import ROOT


def test_run_py_at_toy_scale(tmp_path):
    data = tmp_path / "tiny"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "generate.py"), "--scale", "tiny", "--out", str(data)], check=True)
    out = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--scale", "tiny", "--data", str(data), "--repeat", "1", "--json", str(out)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert "pipeline" in done.stdout
    result = json.loads(out.read_text())
    assert result["scale"] == "tiny"
    assert set(result["pipelines"]) == {"support", "surveys", "revenue", "engagement", "validate", "report"}
    for name in ("support", "surveys", "revenue", "engagement"):
        row = result["pipelines"][name]
        assert row["max_abs_diff"] < 1e-6, (name, row["max_abs_diff"])
        assert all(row[engine] > 0 for engine in ("csmetrics", "duckdb", "polars", "naive_extrapolated"))
        assert row["peak_rss_mb"] > 0
