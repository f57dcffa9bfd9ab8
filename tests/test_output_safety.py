"""METRICS.md §16: the output folder never loses anything (csmetrics.output)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from csmetrics.cli import app
from csmetrics.io import read_tables
from csmetrics.output import OutputError, check_output_folder
from csmetrics.report import report

from .conftest import ROOT, SAMPLE

runner = CliRunner()


@pytest.fixture(scope="module")
def small_report():
    tables, _ = read_tables(SAMPLE)
    return report({k: tables[k] for k in ("tickets", "costs")}, html=False)


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(*args):
    return runner.invoke(app, ["report", *map(str, args), "--quiet", "--no-html"])


def test_new_folder_gets_the_users_umask(small_report, tmp_path):
    old = os.umask(0o022)
    try:
        out = small_report.write(tmp_path / "deep" / "out")
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o755
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["files"]) == sorted(_snapshot(out))
    assert [p.name for p in (tmp_path / "deep").iterdir()] == ["out"]


@pytest.mark.parametrize("umask", [0o002, 0o027, 0o077])
def test_umask_variants(small_report, tmp_path, umask):
    old = os.umask(umask)
    try:
        out = small_report.write(tmp_path / "out")
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask


def test_empty_folder_and_previous_report_are_replaced(small_report, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    small_report.write(out, partitioned=True)
    assert (out / "metrics").is_dir()
    small_report.write(out)  # the previous report, partitioned files included, is replaced whole
    assert not (out / "metrics").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize(
    "make",
    [
        lambda d: (d / "notes.txt").write_text("mine"),
        lambda d: (d / "sub").mkdir() or (d / "sub" / "x.parquet").write_bytes(b"x"),
        lambda d: (d / "manifest.json").write_text(json.dumps({"name": "someone else's"})),
        lambda d: (d / "manifest.json").write_text("not json"),
        lambda d: (d / "metrics.parquet").write_bytes(b"PAR1"),
    ],
    ids=["text-file", "subfolder", "foreign-manifest", "broken-manifest", "output-name-without-manifest"],
)
def test_foreign_folders_are_refused_untouched(small_report, tmp_path, make):
    out = tmp_path / "out"
    out.mkdir()
    make(out)
    before = _snapshot(out)
    with pytest.raises(OutputError, match="not a csmetrics report"):
        small_report.write(out)
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_previous_report_with_added_files_is_refused(small_report, tmp_path):
    out = small_report.write(tmp_path / "out")
    (out / "rejected").mkdir()
    (out / "rejected" / "my_notes.parquet").write_bytes(b"mine")
    before = _snapshot(out)
    with pytest.raises(OutputError, match="did not write"):
        small_report.write(out)
    assert _snapshot(out) == before


def test_existing_file_is_refused(small_report, tmp_path):
    target = tmp_path / "out"
    target.write_text("precious")
    with pytest.raises(OutputError, match="not a folder"):
        small_report.write(target)
    assert target.read_text() == "precious"


def test_input_folders_are_refused(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    before = _snapshot(tmp_path)
    for out in (data, tmp_path, data / ".." / "data", tmp_path / ".."):
        with pytest.raises(OutputError, match="holds the input"):
            check_output_folder(out, [data / "tickets.parquet"])
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("out", [".", "..", "data", "./"])
def test_cli_refuses_the_data_folder_and_its_parents_in_one_line(tmp_path, monkeypatch, out):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("tickets", "costs"):
        shutil.copy(SAMPLE / f"{name}.parquet", data / f"{name}.parquet")
    monkeypatch.chdir(data if out in (".", "..", "./") else tmp_path)
    before = _snapshot(tmp_path)
    result = _cli(data, "--out", out)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "holds the input" in result.output
    assert _snapshot(tmp_path) == before


def test_cli_refuses_a_foreign_folder_before_reading(tmp_path):
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    result = _cli(SAMPLE, "--out", out)
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "not a csmetrics report" in result.output
    assert (out / "thesis.tex").read_text() == "years of work"


def test_old_manifest_without_file_list_is_a_previous_report(small_report, tmp_path):
    out = small_report.write(tmp_path / "out")
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["files"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    legacy = {"metrics.parquet", "customers.parquet", "cohorts.parquet", "followups.parquet", "at_risk.parquet",
              "index.html", "manifest.json"}  # fmt: skip
    for path in out.glob("*.parquet"):  # files 0.1 did not write
        if path.name not in legacy:
            path.unlink()
    small_report.write(out)
    assert "files" in json.loads((out / "manifest.json").read_text())


_KILLED_WRITER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {root!r})
    import csmetrics.output as output
    from csmetrics.io import read_tables
    from csmetrics.report import report

    mode, out = sys.argv[1], sys.argv[2]
    tables, _ = read_tables({sample!r})
    result = report({{"tickets": tables["tickets"]}}, html=False, freq="W")
    if mode == "fallback":  # a system without renameat2: kill between the two renames
        output._exchange = lambda a, b: False
        real_rename, calls = os.rename, []
        def rename(a, b):
            calls.append(a)
            if len(calls) == 2:
                os._exit(9)
            real_rename(a, b)
        output.os.rename = rename
    elif mode == "after-exchange":  # killed before the replaced report is removed
        output._remove = lambda path: os._exit(9)
    elif mode == "mid-write":  # killed while writing the staging folder
        real = output.write_parquet
        def write(frame, path):
            real(frame, path)
            os._exit(9)
        output.write_parquet = write
    result.write(out)
    """
)


@pytest.mark.parametrize("mode", ["fallback", "after-exchange", "mid-write"])
def test_a_killed_run_leaves_a_whole_report_and_the_next_run_cleans_up(small_report, tmp_path, mode):
    out = small_report.write(tmp_path / "out")
    previous = _snapshot(out)
    script = tmp_path / "writer.py"
    script.write_text(_KILLED_WRITER.format(root=str(ROOT), sample=str(SAMPLE)))
    done = subprocess.run([sys.executable, str(script), mode, str(out)], capture_output=True, timeout=300)
    assert done.returncode == 9, done.stderr.decode()
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".out.csmetrics-")]
    assert leftovers, "the kill left nothing beside OUT"
    for leftover in leftovers:  # hidden, named as staging, and only whole reports carry a manifest
        if (leftover / "manifest.json").exists():
            # after-exchange: the replaced report, removed by the next run; fallback: the previous
            # report set aside (-old, put back by the next run) and the complete new one
            assert mode in ("after-exchange", "fallback")
        else:
            assert mode == "mid-write"
    if mode == "fallback":
        assert not out.exists()  # between the renames; the previous report waits aside
    elif mode == "after-exchange":
        assert (out / "manifest.json").exists() and _snapshot(out) != previous
        assert pd.read_parquet(out / "metrics.parquet")["freq"].eq("W").all()
    else:
        assert _snapshot(out) == previous
    # the next run puts back / removes what the killed run left, then writes
    check_output_folder(out)
    small_report.write(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "writer.py"]
    assert _snapshot(out) == previous  # same report as the first write (same content)


def test_next_run_puts_back_a_report_left_aside(small_report, tmp_path):
    out = small_report.write(tmp_path / "out")
    previous = _snapshot(out)
    aside = tmp_path / ".out.csmetrics-999999999-old"
    out.rename(aside)
    from csmetrics.output import recover

    recover(out)
    assert _snapshot(out) == previous and not aside.exists()


def test_a_big_output_is_written_a_row_group_at_a_time_with_key_statistics(tmp_path, monkeypatch):
    """Several row groups: the frame comes back equal, the same bytes twice, min/max statistics on
    period and customer_id (what readers filter by), none on the value columns."""
    import pyarrow.parquet as pq

    from csmetrics import output

    monkeypatch.setattr(output, "ROW_GROUP", 4)
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(10),
            "period": pd.date_range("2024-01-01", periods=10, freq="MS", tz="UTC"),
            "mrr": np.linspace(0, 9, 10),
            "band": pd.Series(["red", None] * 5, dtype="str"),
        }
    )
    output.write_parquet(frame, tmp_path / "a.parquet")
    output.write_parquet(frame, tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), frame)
    meta = pq.ParquetFile(tmp_path / "a.parquet").metadata
    assert meta.num_row_groups == 3
    group = meta.row_group(1)
    stats = {group.column(i).path_in_schema: group.column(i).is_stats_set for i in range(group.num_columns)}
    assert stats == {"customer_id": True, "period": True, "mrr": False, "band": False}
    assert group.column(0).statistics.min == 4 and group.column(0).statistics.max == 7
    # integer ids as deltas (a dictionary of a million ids overflows and is slow to try); the rest as a dictionary
    encodings = {group.column(i).path_in_schema: group.column(i).encodings for i in range(group.num_columns)}
    assert "DELTA_BINARY_PACKED" in encodings["customer_id"] and "RLE_DICTIONARY" not in encodings["customer_id"]
    assert "RLE_DICTIONARY" in encodings["band"] and "RLE_DICTIONARY" in encodings["mrr"]
