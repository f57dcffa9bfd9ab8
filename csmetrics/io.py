"""Reading a data folder: ``<table>.parquet``, a folder of Parquet files, or ``<table>.csv``.

Only the CLI and the report read files; metric families take DataFrames.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from csmetrics._compat import tune_allocator
from csmetrics.options import ConfigError
from csmetrics.schedule import Schedule, schedules_from_tables
from csmetrics.schemas import BIG_TABLES, DIMENSIONS, TABLES

__all__ = [
    "CSV_LINE",
    "SIDE_TABLES",
    "InputError",
    "find_tables",
    "read_lazy",
    "read_schedules",
    "read_table",
    "read_tables",
]

#: Tables DATA_DIR may hold besides the data tables: business-hours schedules (§11, §17).
SIDE_TABLES = ("schedules", "holidays")

#: The index name of a table read from CSV: its labels are the file's line numbers (header = line 1).
CSV_LINE = "csv_line"


#: How a Parquet read turns Arrow into pandas: each Arrow column freed as soon as it is converted,
#: so a read never holds the whole table twice (events at large: peak 5.1 -> 4.5-4.7 GiB, 6.6-9.9 s
#: -> 3.1-3.4 s). Not ``split_blocks``: its zero-copy columns are read-only and pandas then fails
#: to assign into them. pandas before 3.0 has no ``to_pandas_kwargs``; there the read is as before.
ARROW_TO_PANDAS: dict = {"to_pandas_kwargs": {"self_destruct": True}} if int(pd.__version__.split(".")[0]) >= 3 else {}


class InputError(ConfigError):
    """An input file or folder that cannot be read as a table (empty, header only, drifting schemas)."""


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
    used = set(found.values()) | {data_dir / f"{name}.parquet" for name in SIDE_TABLES}
    strays = sorted(
        p.name
        for p in data_dir.iterdir()
        if not p.name.startswith(".") and p not in used and (p.suffix in (".parquet", ".csv") or p.is_dir())
    )
    if strays:
        expected = ", ".join(f"{t}.parquet|.csv|/" for t in TABLES)
        warnings.warn(
            f"{data_dir}: {', '.join(strays)} match no table and are not read (expected names: {expected})",
            UserWarning,
            stacklevel=2,
        )
    return found


def read_schedules(data_dir: Path) -> dict[str, Schedule] | None:
    """The business-hours schedules of DATA_DIR's ``schedules.parquet`` (and ``holidays.parquet``), as
    ``business_hours`` takes them: {schedule_id: Schedule, "default": the flagged one}; None without the file."""
    path = Path(data_dir) / "schedules.parquet"
    if not path.is_file():
        return None
    holidays = Path(data_dir) / "holidays.parquet"
    try:
        found, default = schedules_from_tables(read_table(path), read_table(holidays) if holidays.is_file() else None)
    except ConfigError as err:
        raise InputError(f"{path}: {err}") from None
    return {**found, "default": found[default]} if default is not None else found


def read_table(path: Path, dictionary: Sequence[str] = ()) -> pd.DataFrame:
    """Read one table from a Parquet file, a folder of Parquet files, or a CSV file.

    ``dictionary``: text columns read dictionary-encoded from Parquet (categoricals: the table's
    dimensions, :data:`csmetrics.schemas.DIMENSIONS`), so no row's text is hashed downstream."""
    tune_allocator()  # the read's buffers are the first large arrays of a run
    path = Path(path)
    if path.suffix == ".csv":
        try:
            frame = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            raise InputError(f"{path}: the file is empty (a CSV needs a header line and rows)") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as err:
            raise InputError(f"{path}: not a readable CSV ({' '.join(str(err).split())})") from None
        if frame.empty:
            raise InputError(f"{path}: the file has a header but no rows")
        frame.index = pd.RangeIndex(2, len(frame) + 2, name=CSV_LINE)
        return frame
    if path.is_dir():
        _check_same_schema(path)
    try:
        present = set(pq.read_schema(path).names) if path.is_file() else set(pq.ParquetDataset(path).schema.names)
        columns = [c for c in dictionary if c in present]
        frame = pd.read_parquet(path, **({"read_dictionary": columns} if columns else {}), **ARROW_TO_PANDAS)
    except (pa.ArrowException, OSError) as err:
        raise InputError(f"{path}: not a readable Parquet table ({' '.join(str(err).split())})") from None
    return frame


def _check_same_schema(folder: Path) -> None:
    """Every Parquet file of a table folder has the same columns and types (else name two that differ)."""
    files = sorted(p for p in folder.rglob("*.parquet") if p.is_file())
    if not files:
        raise InputError(f"{folder}: the folder holds no .parquet files")
    first = pq.read_schema(files[0]).remove_metadata()
    for other in files[1:]:
        schema = pq.read_schema(other).remove_metadata()
        if not schema.equals(first):
            theirs = {f.name: str(f.type) for f in schema}
            ours = {f.name: str(f.type) for f in first}
            diff = sorted(set(ours.items()) ^ set(theirs.items()))
            raise InputError(
                f"{folder}: the files disagree on their columns: {files[0].name} and {other.name} "
                f"differ in {', '.join(f'{n} ({t})' for n, t in diff[:4])}"
            )


def read_lazy(path: Path):
    """A Dask DataFrame over a Parquet file, a folder of Parquet files, or a CSV file (nothing read yet)."""
    import dask.dataframe as dd

    tune_allocator()  # the read's buffers are the first large arrays of a run
    path = Path(path)
    if path.suffix == ".csv":
        return dd.read_csv(path, blocksize="64MB")
    return dd.read_parquet(path, blocksize="32MiB")  # about a million rows a partition: fits a small worker


def read_tables(data_dir: Path, lazy: bool = False) -> tuple[dict, dict[str, Path]]:
    """Read every table present in ``data_dir``; returns the tables and their paths.

    With ``lazy``, events, tickets, surveys and billing are Dask DataFrames (read by
    the workers, partition by partition); the small tables are read into pandas.
    """
    paths = find_tables(data_dir)
    return {
        name: read_lazy(path) if lazy and name in BIG_TABLES else read_table(path, DIMENSIONS.get(name, ()))
        for name, path in paths.items()
    }, paths
