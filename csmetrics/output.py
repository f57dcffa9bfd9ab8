"""The output folder (METRICS.md §16) and the files in it: checked before anything is written,
written as deterministic Parquet, swapped into place atomically.

A report is written into a hidden staging folder beside OUT, named
``.<OUT name>.csmetrics-<pid>-<random>``, and then put in place:

- OUT must be absent, empty, or a previous csmetrics report: its ``manifest.json``
  names csmetrics and lists its files, and OUT holds nothing else. Anything else
  (a folder with other files, an input folder or a folder that contains one, an
  existing file) is refused with :class:`OutputError` before anything is touched.
- On Linux the staging folder and OUT are exchanged with one ``renameat2`` call
  (``RENAME_EXCHANGE``): at every instant OUT holds either the previous report or
  the new complete one. Elsewhere (or on a file system without exchange) OUT is moved
  aside and the staging folder renamed into place; a run killed between those two
  renames leaves the previous report in ``.<OUT name>.csmetrics-<pid>-old``, and the
  next run puts it back before it does anything else.
- The manifest is the last file written into a staging folder, and the first file
  removed from a replaced report, so a leftover that lacks it never looks complete.
  The next run removes the leftovers of runs that are no longer alive.
- Folders are created with the user's umask (not the 0700 of ``tempfile``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from csmetrics._compat import in_background

__all__ = [
    "MANIFEST",
    "OutputError",
    "check_output_folder",
    "content_hash",
    "prepare_output_folder",
    "printable",
    "recover",
    "staging_folder",
    "swap_into_place",
    "write_parquet",
    "write_report",
    "write_streamed",
]

MANIFEST = "manifest.json"
_TAG = "csmetrics"
#: The files a csmetrics report of version 0.1 wrote, for manifests written before they listed their files.
_LEGACY_FILES = {
    "metrics.parquet",
    "customers.parquet",
    "cohorts.parquet",
    "followups.parquet",
    "at_risk.parquet",
    "index.html",
    MANIFEST,
}


class OutputError(ValueError):
    """An output folder that csmetrics refuses to write, because it would lose what is there."""


def _prefix(out_dir: Path) -> str:
    return f".{out_dir.name}.{_TAG}-"


def _files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


def _is_previous_report(out_dir: Path) -> str | None:
    """None when ``out_dir`` is a csmetrics report holding only its files, else why not."""
    manifest_path = out_dir / MANIFEST
    if not manifest_path.is_file():
        return "it is not empty and has no csmetrics manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "its manifest.json is not a csmetrics manifest"
    if not isinstance(manifest, dict) or "csmetrics_version" not in manifest:
        return "its manifest.json is not a csmetrics manifest"
    present = _files_under(out_dir)
    listed = manifest.get("files")
    if isinstance(listed, list):
        allowed = set(map(str, listed)) | {MANIFEST}
    else:  # a report written before manifests listed their files
        allowed = {f for f in present if f in _LEGACY_FILES or f.startswith(("rejected/", "metrics/"))}
    extra = sorted(present - allowed)
    if extra:
        shown = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        return f"it holds files the report did not write ({shown})"
    return None


def check_output_folder(out_dir: Path | str, inputs: Iterable[Path | str | None] = ()) -> Path:
    """The resolved output folder, or :class:`OutputError` naming why it cannot be written.

    ``inputs`` are the input files or folders of the run: OUT may be none of them and
    may contain none of them.
    """
    out_dir = Path(out_dir).expanduser().resolve()
    for source in inputs:
        if source is None:
            continue
        source = Path(source).expanduser().resolve()
        folder = source if source.is_dir() else source.parent
        if out_dir == folder or out_dir in folder.parents:
            raise OutputError(f"--out {out_dir} holds the input {source}: choose a folder outside the data folder")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise OutputError(f"--out {out_dir} exists and is not a folder: nothing was written")
        if any(out_dir.iterdir()):
            why = _is_previous_report(out_dir)
            if why is not None:
                raise OutputError(
                    f"--out {out_dir} is not a csmetrics report folder ({why}): nothing was written; "
                    "choose an empty or new folder"
                )
    elif not out_dir.parent.is_dir():
        if out_dir.parent.exists():
            raise OutputError(f"--out {out_dir}: {out_dir.parent} is not a folder")
    return out_dir


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(out_dir: Path) -> list[tuple[Path, int, str]]:
    """Staging folders beside OUT: (path, pid, role) with role 'old' or 'new'."""
    found: list[tuple[Path, int, str]] = []
    if not out_dir.parent.is_dir():
        return found
    prefix = _prefix(out_dir)
    for path in out_dir.parent.iterdir():
        if not path.name.startswith(prefix):
            continue
        parts = path.name[len(prefix) :].split("-")
        if len(parts) == 2 and parts[0].isdigit():
            found.append((path, int(parts[0]), "old" if parts[1] == "old" else "new"))
    return found


def recover(out_dir: Path) -> None:
    """Put back a previous report that a killed run left aside, and remove dead runs' staging folders."""
    leftovers = [item for item in _leftovers(out_dir) if not _alive(item[1])]
    for path, _pid, role in leftovers:
        if role == "old" and not out_dir.exists() and (path / MANIFEST).is_file():
            os.rename(path, out_dir)
    for path, _pid, _role in leftovers:
        if path.exists():
            _remove(path)


def prepare_output_folder(out_dir: Path | str, inputs: Iterable[Path | str | None] = ()) -> Path:
    """Check OUT (:func:`check_output_folder`), then recover what a killed run left beside it."""
    inputs = list(inputs)
    checked = check_output_folder(out_dir, inputs)
    recover(checked)
    return check_output_folder(checked, inputs)


def staging_folder(out_dir: Path) -> Path:
    """A new hidden folder beside OUT, created with the user's umask."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    while True:
        path = out_dir.parent / f"{_prefix(out_dir)}{os.getpid()}-{secrets.token_hex(6)}"
        try:
            os.mkdir(path)  # mode 0o777 & ~umask
        except FileExistsError:
            continue
        return path


def _remove(path: Path) -> None:
    """Remove a staging or replaced folder, its manifest first (so it never looks complete)."""
    try:
        (path / MANIFEST).unlink()
    except FileNotFoundError:
        pass
    shutil.rmtree(path, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux renameat2); False where the system cannot."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def swap_into_place(staging: Path, out_dir: Path) -> None:
    """Make the complete ``staging`` folder OUT; the previous report (if any) is removed last."""
    if not out_dir.exists():
        os.rename(staging, out_dir)
        return
    if _exchange(staging, out_dir):
        _remove(staging)  # now holds the previous report
        return
    aside = out_dir.parent / f"{_prefix(out_dir)}{os.getpid()}-old"
    os.rename(out_dir, aside)
    os.rename(staging, out_dir)
    _remove(aside)


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------
def _arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


#: Rows per row group (pyarrow's default): a larger frame is converted to Arrow one group at a time
ROW_GROUP = 1 << 20


#: The columns of a big (several row groups) output whose Parquet statistics are written.
KEY_COLUMNS = ("period", "customer_id")


def start_encoding(frame: pd.DataFrame) -> Future:
    """:func:`write_parquet`'s bytes of ``frame``, encoded from now in a background thread (a report
    run by the CLI starts its largest output while its last steps and the dashboard run). The thread
    is a daemon: a run that stops before writing does not wait for it."""

    def encode() -> pa.Buffer:
        sink = pa.BufferOutputStream()
        write_parquet(frame, sink)
        return sink.getvalue()

    return in_background(encode, "csmetrics-encode")


def write_parquet(frame: pd.DataFrame, path: Path | pa.NativeFile) -> None:
    """Deterministic Parquet: same frame, same bytes. A frame of several row groups is converted and
    written a group at a time (no second copy of a 20M-row output in Arrow)."""
    frame = frame.reset_index(drop=True)
    if len(frame) <= ROW_GROUP:
        pq.write_table(_arrow(frame), path, compression="zstd")
        return
    schema = pa.Schema.from_pandas(frame, preserve_index=False)
    with _big_writer(path, schema) as writer:
        for start in range(0, len(frame), ROW_GROUP):
            writer.write_table(_arrow(frame.iloc[start : start + ROW_GROUP]).cast(schema))


def _big_writer(path: Path | pa.NativeFile, schema: pa.Schema) -> pq.ParquetWriter:
    """The writer of an output of several row groups (written in place, or streamed by parts)."""
    # min/max statistics on the key columns a reader filters a big output by (period, customer_id):
    # computing them for every value column took a fifth of writing customers.parquet (20M rows)
    keys = [c for c in KEY_COLUMNS if c in schema.names] or False
    # integers (ids) as deltas, not a dictionary that overflows: customers.parquet's customer_id (sorted
    # within each period) took 3.4 s of 11 and 60 MB, as deltas 0.24 s and 5 MB
    ints = [f.name for f in schema if pa.types.is_integer(f.type)]
    return pq.ParquetWriter(
        path,
        schema,
        compression="zstd",
        write_statistics=keys,
        use_dictionary=[f.name for f in schema if f.name not in ints],
        column_encoding=dict.fromkeys(ints, "DELTA_BINARY_PACKED") or None,
    )


def write_streamed(streamed: Any, path: Path) -> None:
    """Parts one at a time into one Parquet file (one row group or more per part), in order."""
    writer = None
    try:
        for frame in streamed.frames():
            table = _arrow(frame.reset_index(drop=True))
            if writer is None:
                writer = _big_writer(path, table.schema)
            writer.write_table(table.cast(writer.schema) if table.schema != writer.schema else table)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        write_parquet(pd.DataFrame(columns=["customer_id", "period"]), path)


def printable(frame: pd.DataFrame) -> pd.DataFrame:
    """Rejected rows keep their original values and position in the input (``source_row``, or
    ``csv_line`` for a CSV file); mixed object columns are written as text."""
    out = frame.copy()
    position = frame.index.name or "source_row"  # csv_line for a CSV file, else the row of the Parquet table
    if position not in out.columns:
        out.insert(0, position, np.asarray(frame.index))
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = out[column].map(
                lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
            )
    return out


def content_hash(frame: pd.DataFrame, path: Path | None = None) -> str:
    """sha256 of the input file's bytes (or folder's files), else of the frame's row hashes."""
    digest = hashlib.sha256()
    if path is not None and Path(path).exists():
        files = sorted(Path(path).rglob("*")) if Path(path).is_dir() else [Path(path)]
        for file in files:
            if file.is_file():
                digest.update(file.read_bytes())
        return "sha256:" + digest.hexdigest()
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def write_report(
    out_dir: Path | str,
    outputs: dict[str, Any],
    *,
    rejected: dict[str, pd.DataFrame],
    html: str | None,
    manifest: dict,
    partitioned: bool = False,
    fail_after: int | None = None,
    ahead: Mapping[str, tuple[Any, Future]] | None = None,
) -> Path:
    """Write a report's files into a staging folder and swap it into ``out_dir`` (METRICS.md §16).

    ``out_dir`` must be absent, empty or a previous csmetrics report, and may not hold an input
    (the manifest's input paths); otherwise :class:`OutputError` is raised and nothing is touched.
    An output with ``frames()`` (an engine's streamed output) is written a part at a time.
    ``fail_after`` (tests only) raises after that many files, to prove atomicity. ``ahead``: outputs
    encoded in the background (:func:`start_encoding`), by name: (the frame, its bytes), used while
    the output is still that frame.
    """
    inputs = [info.get("path") for info in manifest.get("inputs", {}).values()]
    out_dir = prepare_output_folder(out_dir, inputs)
    staging = staging_folder(out_dir)
    try:
        written = 0

        def tick() -> None:
            nonlocal written
            written += 1
            if fail_after is not None and written >= fail_after:
                raise RuntimeError(f"simulated failure after {written} file(s)")

        for name, frame in outputs.items():
            early = (ahead or {}).get(name)
            if early is not None and early[0] is frame:  # encoded ahead: the bytes write_parquet gives
                (staging / f"{name}.parquet").write_bytes(memoryview(early[1].result()))
            elif hasattr(frame, "frames"):
                write_streamed(frame, staging / f"{name}.parquet")
            else:
                write_parquet(frame, staging / f"{name}.parquet")
            tick()
        metrics = outputs.get("metrics")
        if partitioned and metrics is not None and len(metrics):
            pq.write_to_dataset(_arrow(metrics), root_path=staging / "metrics", partition_cols=["metric"])
            tick()
        for table, frame in rejected.items():
            if len(frame):
                (staging / "rejected").mkdir(exist_ok=True)
                write_parquet(printable(frame), staging / "rejected" / f"{table}.parquet")
                tick()
        if html is not None:
            (staging / "index.html").write_text(html, encoding="utf-8")
            tick()
        files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
        listed = {**manifest, "files": [*files, MANIFEST]}
        (staging / MANIFEST).write_text(json.dumps(listed, indent=2, sort_keys=True, default=str))
        swap_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir
