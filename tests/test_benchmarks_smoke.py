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
    assert result["threads"]["duckdb"] == 2 and result["threads"]["csmetrics[pandas]"] == 1
    engines = ("csmetrics[pandas]", "csmetrics[threads]", "duckdb", "polars")
    for name in ("support", "surveys", "revenue", "engagement"):
        row = result["pipelines"][name]
        # both csmetrics engines and both peers agree (the threads engine with the pandas engine exactly)
        assert row["max_abs_diff"] < 1e-6, (name, row["max_abs_diff_by_engine"])
        assert row["max_abs_diff_by_engine"]["csmetrics[threads]"] < 1e-8, name  # float sums in another order
        assert all(row["compute_seconds"][e] > 0 for e in engines) and row["naive_extrapolated"] > 0
        # end to end = read + (validate) + compute
        assert row["end_to_end_seconds"]["csmetrics[threads]"] > row["compute_seconds"]["csmetrics[threads]"] + row["validate_seconds"]
        assert set(row["ratios"]) == {"compute", "end_to_end"}
        assert row["peak_rss_mb"] > 0
    assert set(result["pipelines"]["report"]["compute_seconds"]) == {"csmetrics[pandas]", "csmetrics[threads]"}
