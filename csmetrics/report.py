"""The main job: every metric family over a set of tables, written atomically.

:func:`report` validates the tables, runs each family whose tables are present
and returns a :class:`Report` (metrics, customers, cohorts, followups, at_risk,
rejected rows, manifest). :meth:`Report.write` writes everything into a
temporary folder beside the output folder and swaps it into place at the end,
so a crash or Ctrl-C leaves the previous report whole. The CLI calls exactly
this.

One as_of serves every family: the one given, else the latest timestamp of any
table. A ``by`` column is applied to each family that has it (in its own table
or in ``customers``) and ignored by the others; metrics.parquet holds the union
of the segment columns, null where a family was not split by that column.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from csmetrics._version import __version__
from csmetrics.engine import AS_OF_COLUMNS
from csmetrics.metrics._common import NAT
from csmetrics.output import MANIFEST, prepare_output_folder, staging_folder, swap_into_place
from csmetrics.metrics._billing import Policies
from csmetrics.metrics.health import HealthScorecard
from csmetrics.options import (
    ConfigError,
    UnknownNameError,
    check_as_of,
    check_bool,
    check_by,
    check_cost_roles,
    check_csat_thresholds,
    check_freq,
    check_int,
    check_number,
    check_sla_targets,
    check_tz,
)
from csmetrics.periods import period_codes, to_utc
from csmetrics.validate import TABLES, validate_tables

def _scorecard_keys() -> tuple[str, ...]:
    return tuple(name for name in inspect.signature(HealthScorecard.__init__).parameters if name != "self")


#: csmetrics.toml keys: the report's options; [health] takes the scorecard's parameters, [policies] the Policies fields.
CONFIG_KEYS = ("freq", "by", "tz", "as_of", "csat_thresholds", "sla_targets", "cost_roles", "gross_margin",
               "session_gap_minutes", "health", "policies")  # fmt: skip
POLICY_KEYS = tuple(Policies.__dataclass_fields__)


def load_config(path: Path | str) -> dict:
    """Read ``csmetrics.toml``; an unknown key or a wrongly typed value is a ConfigError naming it.

    ``csat_thresholds`` are written as ``"1-5" = 4``; ``sla_targets`` as
    ``urgent = 60`` (minutes); ``cost_roles`` as ``acquisition = ["sales"]``;
    ``[health]`` takes weights, bands, baseline_periods, support_scale;
    ``[policies]`` takes count_new_churn, renewal_grace_days, repeat_window_days.
    """
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror})") from None
    return check_config(raw, source=str(path))


def check_config(raw: Mapping, source: str = "config") -> dict:
    """Every key known and every value of the right type and range; returns the parsed settings."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: settings must be a table of keys, not {raw!r}")
    for key in raw:
        if key not in CONFIG_KEYS:
            raise UnknownNameError(f"{source}: unknown key {key!r} (known: {', '.join(sorted(CONFIG_KEYS))})")
    sections = {"health": _scorecard_keys(), "policies": POLICY_KEYS}
    for section, known in sections.items():
        if section in raw and not isinstance(raw[section], Mapping):
            raise ConfigError(f"{source}: [{section}] must be a table of keys ({', '.join(known)}), not {raw[section]!r}")
        for key in raw.get(section, {}):
            if key not in known:
                raise UnknownNameError(f"{source}: unknown key {section}.{key} (known: {', '.join(sorted(known))})")
    checks = {
        "freq": check_freq,
        "by": lambda v: list(check_by(v)),
        "tz": check_tz,
        "as_of": check_as_of,
        "csat_thresholds": check_csat_thresholds,
        "sla_targets": check_sla_targets,
        "cost_roles": check_cost_roles,
        "gross_margin": lambda v: check_number("gross_margin", v, low=0, high=1, low_open=True),
        "session_gap_minutes": lambda v: check_number("session_gap_minutes", v, low=0, low_open=True),
        "health": lambda v: (HealthScorecard(**{k: (tuple(x) if k == "bands" and isinstance(x, list) else x) for k, x in v.items()}), dict(v))[1],
        "policies": lambda v: (Policies(**v), dict(v))[1],
    }
    config = {}
    for key, value in raw.items():
        try:
            config[key] = checks[key](value)
        except ConfigError as err:
            where = f"[{key}] " if key in sections else ""
            raise ConfigError(f"{source}: {where}{err}") from None
    return config


@dataclass
class Report:
    """Everything one run produces; ``write`` puts it on disk."""

    metrics: pd.DataFrame
    customers: pd.DataFrame
    cohorts: pd.DataFrame
    followups: pd.DataFrame
    at_risk: pd.DataFrame
    rejected: dict[str, pd.DataFrame]
    manifest: dict
    html: str | None = field(default=None, repr=False)

    def outputs(self) -> dict[str, pd.DataFrame]:
        return {
            "metrics": self.metrics,
            "customers": self.customers,
            "cohorts": self.cohorts,
            "followups": self.followups,
            "at_risk": self.at_risk,
        }

    def write(self, out_dir: Path | str, *, partitioned: bool = False, _fail_after: int | None = None) -> Path:
        """Write the outputs atomically into ``out_dir`` (METRICS.md §16, :mod:`csmetrics.output`).

        ``out_dir`` must be absent, empty or a previous csmetrics report, and may not hold an
        input; otherwise :class:`~csmetrics.output.OutputError` is raised and nothing is touched.
        ``_fail_after`` (tests only) raises after that many files, to prove atomicity.
        """
        inputs = [info.get("path") for info in self.manifest.get("inputs", {}).values()]
        out_dir = prepare_output_folder(out_dir, inputs)
        staging = staging_folder(out_dir)
        try:
            written = 0

            def tick() -> None:
                nonlocal written
                written += 1
                if _fail_after is not None and written >= _fail_after:
                    raise RuntimeError(f"simulated failure after {written} file(s)")

            for name, frame in self.outputs().items():
                if isinstance(frame, Streamed):
                    write_streamed(frame, staging / f"{name}.parquet")
                else:
                    write_parquet(frame, staging / f"{name}.parquet")
                tick()
            if partitioned and len(self.metrics):
                pq.write_to_dataset(_arrow(self.metrics), root_path=staging / "metrics", partition_cols=["metric"])
                tick()
            for table, frame in self.rejected.items():
                if len(frame):
                    (staging / "rejected").mkdir(exist_ok=True)
                    write_parquet(_printable(frame), staging / "rejected" / f"{table}.parquet")
                    tick()
            if self.html is not None:
                (staging / "index.html").write_text(self.html, encoding="utf-8")
                tick()
            files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
            manifest = {**self.manifest, "files": [*files, MANIFEST]}
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
            swap_into_place(staging, out_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return out_dir


def _arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Deterministic Parquet: same frame, same bytes."""
    pq.write_table(_arrow(frame.reset_index(drop=True)), path, compression="zstd")


def write_streamed(streamed: Streamed, path: Path) -> None:
    """Parts one at a time into one Parquet file (one row group or more per part), in order."""
    writer = None
    try:
        for frame in streamed.frames():
            table = _arrow(frame.reset_index(drop=True))
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="zstd")
            writer.write_table(table.cast(writer.schema) if table.schema != writer.schema else table)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        write_parquet(pd.DataFrame(columns=["customer_id", "period"]), path)


def _printable(frame: pd.DataFrame) -> pd.DataFrame:
    """Rejected rows keep their original values and position in the input (``source_row``, or
    ``csv_line`` for a CSV file); mixed object columns are written as text."""
    out = frame.copy()
    position = frame.index.name or "source_row"  # csv_line for a CSV file, else the row of the Parquet table
    if position not in out.columns:
        out.insert(0, position, np.asarray(frame.index))
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = out[column].map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
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


def report_as_of(engine, as_of: object = None) -> pd.Timestamp:
    """The given as_of, else the latest timestamp of any (validated) table."""
    if as_of is not None:
        return to_utc(as_of, "as_of")
    latest = max(engine.latest(name) for name in AS_OF_COLUMNS)
    if latest == NAT:
        raise ConfigError("no timestamps in the input tables (after validation): cannot infer as_of; pass --as-of / as_of=")
    return pd.Timestamp(latest, tz="UTC")


def report(
    tables: Mapping[str, pd.DataFrame],
    *,
    freq: str = "M",
    by: Sequence[str] = (),
    tz: str = "UTC",
    as_of: object = None,
    quarantine: bool = False,
    html: bool = True,
    config: Mapping | None = None,
    paths: Mapping[str, Path] | None = None,
    progress: Callable[[str], None] | None = None,
    engine: str = "pandas",
    buckets: int | None = None,
) -> Report:
    """Run every family whose tables are present; see the module docstring.

    ``config`` holds the csmetrics.toml settings (csat_thresholds, sla_targets,
    cost_roles, gross_margin, session_gap_minutes, health, policies); explicit
    arguments win over it. ``engine="dask"`` (or any Dask DataFrame among the
    tables) runs on the current Dask scheduler, with ``buckets`` customer
    buckets (default: the largest table's partition count).
    """
    from csmetrics.dask_engine import any_dask
    from csmetrics.engine import PandasEngine
    from csmetrics.metrics._billing import shared_ledgers

    config = check_config(config or {})
    step = progress or (lambda stage: None)
    freq, tz, by = check_freq(freq), check_tz(tz), list(check_by(by))
    as_of = check_as_of(as_of)
    quarantine, html = check_bool("quarantine", quarantine), check_bool("html", html)
    if buckets is not None:
        check_int("buckets", buckets, low=1)
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise UnknownNameError(f"unknown table(s) {unknown}; expected some of {', '.join(TABLES)}")
    _check_segments_exist(by, tables)
    step("validate")
    if engine == "dask" or any_dask(*tables.values()):
        from csmetrics.dask_engine import load

        runner, valid, rejected = load(tables, quarantine=quarantine, buckets=buckets)
    elif engine == "pandas":
        valid, rejected = validate_tables(tables, quarantine=quarantine)
        runner = PandasEngine(valid)
    else:
        raise ConfigError(f"unknown engine {engine!r}: pandas or dask")
    as_of_ts = report_as_of(runner, as_of)
    with shared_ledgers():
        return _run_families(runner, valid, rejected, tables, paths, step, freq=freq, by=by, tz=tz, as_of_ts=as_of_ts,
                             quarantine=quarantine, html=html, config=config)  # fmt: skip


def _check_segments_exist(by: list[str], tables: Mapping[str, object]) -> None:
    """Each ``by`` column is a column of some table (or plan); else an error listing the columns there are."""
    columns = {str(c) for name, table in tables.items() if name not in ("fx", "costs") for c in table.columns}
    missing = [c for c in by if c not in columns]
    if missing:
        raise UnknownNameError(f"segment column(s) {missing} are in no table; the columns there are: "
                               f"{', '.join(sorted(columns - {'customer_id'}))}")  # fmt: skip


def _run_families(engine, valid, rejected, tables, paths, step, *, freq, by, tz, as_of_ts, quarantine, html, config) -> Report:
    """Every family whose tables are present, on the engine's buckets (see csmetrics.pipeline)."""
    from csmetrics import pipeline
    from csmetrics.engine import resolve
    from csmetrics.metrics.health import HealthScorecard

    customers = valid.get("customers")
    fx = valid.get("fx")
    policies = dict(config.get("policies", {}))
    common = {"freq": freq, "tz": tz, "as_of": as_of_ts}
    pending = {}
    ran: list[str] = []
    columns = {name: list(engine.summary(name, as_of_ts).columns) for name in ("billing", "tickets", "surveys", "events") if engine.has(name)}
    plain_billing = None
    if engine.has("billing"):
        seg = pipeline.usable_by(by, columns["billing"], customers, extra=["plan"])
        context = pipeline.billing_context(engine, by=seg, customers=customers, fx=fx, policies=policies, **common)
        plain_billing = pipeline.billing_context(engine, fx=fx, policies=policies, **common)
        pending["revenue"] = pipeline.revenue(engine, context)
        pending["value"] = pipeline.value(engine, context, costs=valid.get("costs"), gross_margin=float(config.get("gross_margin", 1.0)),
                                          cost_roles=config.get("cost_roles"))  # fmt: skip
        pending["cohorts"] = pipeline.cohorts(engine, plain_billing)
        ran += ["revenue", "customers", "value"]
    if engine.has("tickets"):
        pending["support"] = pipeline.support(engine, by=pipeline.usable_by(by, columns["tickets"], customers), customers=customers,
                                              sla_targets=config.get("sla_targets"), **common)  # fmt: skip
        ran.append("support")
    if engine.has("surveys"):
        pending["surveys"] = pipeline.surveys(engine, by=pipeline.usable_by(by, columns["surveys"], customers), customers=customers,
                                              csat_thresholds=config.get("csat_thresholds"), **common)  # fmt: skip
        pending["followups"] = pipeline.followups(engine, fx=fx, csat_thresholds=config.get("csat_thresholds"), **common)
        ran.append("surveys")
    if engine.has("events"):
        pending["engagement"] = pipeline.engagement(engine, by=pipeline.usable_by(by, columns["events"], customers), customers=customers,
                                                    fx=fx, session_gap_minutes=float(config.get("session_gap_minutes", 30.0)), **common)  # fmt: skip
        ran.append("engagement")
    scores = None
    if any(engine.has(name) for name in pipeline.HEALTH_TABLES):
        step("health")
        card = HealthScorecard(**{k: (tuple(v) if k == "bands" else v) for k, v in config.get("health", {}).items()})
        scores = pipeline.health_scores(engine, card, fx=fx, **common)
        pending["health"] = pipeline.health(engine, scores, card, by=[c for c in by if customers is not None and c in customers.columns],
                                            customers=customers, freq=freq, tz=tz)  # fmt: skip
        ran.append("health")
    step("metrics")
    done = resolve(engine, pending)

    step("assemble")
    frames = []
    if "revenue" in done:
        frames += list(done["revenue"]) + [done["value"]]
    frames += [done[name] for name in ("support", "surveys", "engagement") if name in done]
    risky = pd.DataFrame()
    if "health" in done:
        frames.append(done["health"][0])
        risky = done["health"][1]
    metrics = _assemble(frames)
    customer_rows = _customer_output(engine, scores, plain_billing)
    result = Report(
        metrics=metrics,
        customers=customer_rows,
        cohorts=done.get("cohorts", pd.DataFrame()),
        followups=done.get("followups", pd.DataFrame()).reset_index(drop=True),
        at_risk=risky.reset_index(drop=True),
        rejected={k: v for k, v in rejected.items() if len(v)},
        manifest={},
    )
    partial = _partial_period(as_of_ts, freq, tz)
    result.manifest = _manifest(result, tables, engine, rejected, paths, ran, freq=freq, by=by, tz=tz,
                                as_of=as_of_ts, partial=partial, quarantine=quarantine, config=config)  # fmt: skip
    if html:
        step("html")
        from csmetrics.dashboard import render

        result.html = render(result)
    return result


def _customer_output(engine, scores, context):
    """customers.parquet: one frame on pandas; on Dask, groups of consecutive periods kept on the
    cluster and streamed into the file by :meth:`Report.write`."""
    from csmetrics import pipeline

    if scores is None and context is None:
        return pd.DataFrame(columns=["customer_id", "period"])
    groups = pipeline.customer_rows(engine, scores, context, engine.n)
    if engine.name == "pandas":
        return groups[0]
    groups = engine.persist(groups)
    (lengths,) = engine.gather(engine.map(len, groups))
    return Streamed(groups, int(sum(lengths)))


@dataclass
class Streamed:
    """An output too large for one machine: parts in order, computed one at a time when written."""

    parts: list
    rows: int

    def __len__(self) -> int:
        return self.rows

    def frames(self):
        import dask

        for part in self.parts:
            (frame,) = dask.compute(part)
            if len(frame):
                yield frame


def _assemble(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One long frame: fixed columns first, segment columns in order of appearance, stable order."""
    frames = [f for f in frames if len(f)]
    if not frames:
        from csmetrics.frame import empty_frame

        return empty_frame()
    segment_columns: list[str] = []
    fixed = ["period", "freq", "metric", "value", "numerator", "denominator", "ci_low", "ci_high"]
    for frame in frames:
        segment_columns += [c for c in frame.columns if c not in fixed and c not in segment_columns]
    metrics = pd.concat(frames, ignore_index=True)
    for column in segment_columns:
        if metrics[column].dtype == object:
            metrics[column] = metrics[column].astype("str").where(metrics[column].notna(), None)
    return metrics[["period", "freq", *segment_columns, "metric", "value", "numerator", "denominator", "ci_low", "ci_high"]]


def _partial_period(as_of: pd.Timestamp, freq: str, tz: str) -> str | None:
    from csmetrics.periods import code_ends_ns, code_starts

    code = period_codes(pd.DatetimeIndex([as_of]), freq, tz)
    end = code_ends_ns(code, freq, tz)[0]
    return None if as_of.value + 1 >= end else str(code_starts(code, freq, tz)[0])


def _input_rows(name: str, tables, engine, rejected) -> int:
    if engine.name == "pandas":
        return int(len(tables[name]))
    valid = engine.rows(name) if name in engine.stats else int(len(engine.small[name]))
    return valid + int(len(rejected.get(name, ())))


def _manifest(result, tables, engine, rejected, paths, ran, **params) -> dict:
    paths = paths or {}
    config = params.pop("config")
    return {
        "csmetrics_version": __version__,
        "parameters": {
            "freq": params["freq"], "by": params["by"], "tz": params["tz"], "quarantine": params["quarantine"],
            "config": {k: ({f"{a:g}-{b:g}": t for (a, b), t in v.items()} if k == "csat_thresholds" else v) for k, v in config.items()},
        },  # fmt: skip
        "as_of": str(params["as_of"]),
        "partial_period": params["partial"],
        "families": ran,
        "engine": engine.name,
        "inputs": {
            name: {
                "path": str(paths[name]) if name in paths else None,
                "rows": _input_rows(name, tables, engine, rejected),
                "rows_rejected": int(len(rejected.get(name, ()))),
                "content_hash": content_hash(tables[name], paths.get(name)) if name in paths or engine.name == "pandas" else None,
            }
            for name in sorted(tables)
        },
        "outputs": {name: {"rows": int(len(frame))} for name, frame in result.outputs().items()},
    }
