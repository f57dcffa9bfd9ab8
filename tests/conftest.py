"""Shared fixtures: the sample data set and the external data sets of ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def sample_tables() -> dict[str, pd.DataFrame]:
    return {p.stem: pd.read_parquet(p) for p in sorted(SAMPLE.glob("*.parquet"))}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"external test data not found at {SHARED} (the project's shared/ folder is absent)")
    return SHARED


@pytest.fixture
def ledgers_built(monkeypatch) -> list[int]:
    """The billing ledgers a test builds: one entry (the ledger's rows) per build_ledger call."""
    from csmetrics.metrics import _billing

    built: list[int] = []
    real = _billing.build_ledger

    def counted(arrays, context):
        built.append(len(arrays.customer))
        return real(arrays, context)

    monkeypatch.setattr(_billing, "build_ledger", counted)
    return built
