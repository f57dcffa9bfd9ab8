"""The csmetrics command: validate and schemas export."""

from __future__ import annotations

import shutil

import pandas as pd
from typer.testing import CliRunner

from csmetrics.cli import app

from .conftest import SAMPLE

runner = CliRunner()


def test_validate_sample_data_succeeds():
    result = runner.invoke(app, ["validate", str(SAMPLE)])
    assert result.exit_code == 0, result.output
    assert "tickets" in result.output and "billing" in result.output


def test_validate_bad_table_exits_1_and_quarantine_writes_rejected(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    tickets = pd.read_parquet(data / "tickets.parquet")
    tickets.loc[[3, 5], "handle_seconds"] = -10.0
    tickets.to_parquet(data / "tickets.parquet")
    result = runner.invoke(app, ["validate", str(data)])
    assert result.exit_code == 1
    assert "tickets.handle_seconds: rule '>= 0': 2 rows" in result.output
    out = tmp_path / "out"
    result = runner.invoke(app, ["validate", str(data), "--quarantine", str(out)])
    assert result.exit_code == 0, result.output
    rejected = pd.read_parquet(out / "rejected" / "tickets.parquet")
    assert len(rejected) == 2 and set(rejected["reason"]) == {"handle_seconds: >= 0"}


def test_validate_reads_csv_and_missing_folder(tmp_path):
    pd.read_parquet(SAMPLE / "costs.parquet").to_csv(tmp_path / "costs.csv", index=False)
    assert runner.invoke(app, ["validate", str(tmp_path)]).exit_code == 0
    assert runner.invoke(app, ["validate", str(tmp_path / "nope")]).exit_code == 2


def test_schemas_export(tmp_path):
    result = runner.invoke(app, ["schemas", "export", "--out", str(tmp_path)])
    assert result.exit_code == 0
    assert sorted(p.stem for p in tmp_path.glob("*.yaml")) == sorted(
        ["billing", "costs", "customers", "events", "fx", "metric_frame", "surveys", "tickets"]
    )


def test_fx_mode_from_the_cli_and_the_config_is_recorded(tmp_path):
    import json

    import pandas as pd

    result = runner.invoke(app, ["report", str(SAMPLE), "--out", str(tmp_path / "spot"), "--fx-mode", "spot", "--no-html", "--quiet"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "spot" / "manifest.json").read_text())
    assert manifest["currency"] == {"base": "USD", "fx_mode": "spot"}
    metrics = pd.read_parquet(tmp_path / "spot" / "metrics.parquet")
    assert (metrics.loc[metrics["metric"] == "fx_effect_mrr", "value"] != 0).any()
    (tmp_path / "csmetrics.toml").write_text('[policies]\nfx_mode = "spot"\n')
    result = runner.invoke(app, ["report", str(SAMPLE), "--out", str(tmp_path / "cfg"), "--config", str(tmp_path / "csmetrics.toml"), "--no-html", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "cfg" / "manifest.json").read_text())["currency"]["fx_mode"] == "spot"
    (tmp_path / "bad.toml").write_text('[policies]\nfx_mode = "daily"\n')
    for args in (["--fx-mode", "daily"], ["--config", str(tmp_path / "bad.toml")]):
        result = runner.invoke(app, ["report", str(SAMPLE), "--out", str(tmp_path / "x"), *args])
        assert result.exit_code == 2
        assert "must be one of line, spot, not 'daily'" in result.output
        assert len(result.output.strip().splitlines()) == 1
        assert not (tmp_path / "x").exists()
