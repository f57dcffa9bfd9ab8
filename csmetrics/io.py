"""Reading a data folder: ``<table>.parquet``, a folder of Parquet files, or ``<table>.csv``.

Only the CLI and the report read files; metric families take DataFrames.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from csmetrics.validate import TABLES


def find_tables(data_dir: Path) -> dict[str, Path]:
    """The input files present in ``data_dir``, by table name."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder {data_dir} does not exist")
    found: dict[str, Path] = {}
    for table in TABLES:
        for candidate in (data_dir / f"{table}.parquet", data_dir / table, data_dir / f"{table}.csv"):
            if candidate.exists():
                found[table] = candidate
                break
    return found


def read_table(path: Path) -> pd.DataFrame:
    """Read one table from a Parquet file, a folder of Parquet files, or a CSV file."""
    path = Path(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    return pd.read_parquet(path)


def read_lazy(path: Path):
    """A Dask DataFrame over a Parquet file, a folder of Parquet files, or a CSV file (nothing read yet)."""
    import dask.dataframe as dd

    path = Path(path)
    if path.suffix == ".csv":
        return dd.read_csv(path, blocksize="64MB")
    return dd.read_parquet(path, blocksize="32MiB")  # about a million rows a partition: fits a small worker


def read_tables(data_dir: Path, lazy: bool = False) -> tuple[dict, dict[str, Path]]:
    """Read every table present in ``data_dir``; returns the tables and their paths.

    With ``lazy``, events, tickets, surveys and billing are Dask DataFrames (read by
    the workers, partition by partition); the small tables are read into pandas.
    """
    from csmetrics.dask_engine import BIG

    paths = find_tables(data_dir)
    return {name: read_lazy(path) if lazy and name in BIG else read_table(path) for name, path in paths.items()}, paths
