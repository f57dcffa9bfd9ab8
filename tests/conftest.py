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
