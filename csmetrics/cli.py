"""The ``csmetrics`` command (Typer + Rich)."""

from __future__ import annotations

import json
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from csmetrics._compat import lazy_module
from csmetrics.adapters import ADAPTERS, AdapterError
from csmetrics.catalog import CATALOG
from csmetrics.config import load_config
from csmetrics.io import InputError, read_schedules, read_tables
from csmetrics.options import FX_MODES, ConfigError, check_as_of, check_by, check_choice, check_freq, check_tz
from csmetrics.output import OutputError, prepare_output_folder
from csmetrics.report import report
from csmetrics.schemas_export import export_schemas
from csmetrics.validate import TABLES, ValidationError, validate_tables

#: the Dask workers' heap plugin, imported (with distributed) only when a local cluster starts
worker_heap = lazy_module("csmetrics.engines.worker_heap")

__all__ = ["LOOPBACK", "app", "export_command", "main", "metrics_command", "report_command", "validate_command"]

app = typer.Typer(help="Customer-success metrics from raw tables.", no_args_is_help=True, add_completion=False)
schemas_app = typer.Typer(help="The published table contracts.", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")
console = Console()
#: The only interface a local Dask cluster listens on.
LOOPBACK = "127.0.0.1"
err_console = Console(stderr=True)


def _fail(message: str) -> NoReturn:
    """A usage or input mistake: one line on stderr, exit code 2."""
    err_console.print("[red]error:[/red] " + escape(" ".join(str(message).split())), highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _read(data_dir: Path, lazy: bool = False) -> tuple[dict, dict]:
    """The tables of DATA_DIR (the large ones as Dask DataFrames when ``lazy``), or exit 2 with the reason."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tables, paths = read_tables(data_dir, lazy=lazy)
    except (FileNotFoundError, InputError) as err:
        _fail(str(err))
    for warning in caught:
        err_console.print("[yellow]warning:[/yellow] " + escape(str(warning.message)), highlight=False, soft_wrap=True)
    if not tables:
        _fail(f"no tables found in {data_dir} (expected {', '.join(f'{t}.parquet, {t}/ or {t}.csv' for t in TABLES)})")
    return tables, paths


@app.command("validate")
def validate_command(
    data_dir: Path = typer.Argument(..., help="Folder with <table>.parquet / <table>.csv files."),
    quarantine: Path | None = typer.Option(
        None, "--quarantine", help="Set bad rows aside into this folder (rejected/<table>.parquet) instead of failing."
    ),
) -> None:
    """Validate every table found in DATA_DIR and print a per-table summary."""
    tables, paths = _read(data_dir)
    try:
        valid, rejected = validate_tables(tables, quarantine=quarantine is not None)
    except ValidationError as err:
        err_console.print(f"[red]validation failed[/red]\n{err}")
        raise typer.Exit(1) from None
    summary = Table(title=f"csmetrics validate {data_dir}")
    for column in ("table", "file", "rows", "valid", "rejected"):
        summary.add_column(column, justify="right" if column in ("rows", "valid", "rejected") else "left")
    for name in TABLES:
        if name not in tables:
            continue
        n_rejected = len(rejected.get(name, ()))
        summary.add_row(name, str(paths[name]), str(len(tables[name])), str(len(valid[name])), str(n_rejected))
        if quarantine is not None and n_rejected:
            out = Path(quarantine) / "rejected"
            out.mkdir(parents=True, exist_ok=True)
            rejected[name].astype(
                {c: "str" for c in rejected[name].columns if rejected[name][c].dtype == object}
            ).to_parquet(out / f"{name}.parquet")
    console.print(summary)


@app.command("report")
def report_command(
    data_dir: Path = typer.Argument(..., help="Folder with <table>.parquet, <table>/ or <table>.csv files."),
    out: Path = typer.Option(..., "--out", help="Output folder (replaced atomically)."),
    freq: str | None = typer.Option(None, "--freq", help="D, W, M, Q or Y (default M)."),
    by: list[str] | None = typer.Option(None, "--by", help="Segment column; repeat for several."),
    tz: str | None = typer.Option(None, "--tz", help="Report time zone (default UTC)."),
    as_of: str | None = typer.Option(None, "--as-of", help="Extraction instant (default: latest timestamp)."),
    config: Path | None = typer.Option(
        None, "--config", help="csmetrics.toml with thresholds, targets, weights, policies."
    ),
    quarantine: bool = typer.Option(
        False, "--quarantine", help="Set bad rows aside (OUT/rejected/) instead of failing."
    ),
    fx_mode: str | None = typer.Option(
        None, "--fx-mode", help="line (a line keeps its start's rate) or spot (rate drift as fx_effect)."
    ),
    html: bool = typer.Option(True, "--html/--no-html", help="Write the index.html dashboard."),
    partitioned: bool = typer.Option(False, "--partitioned", help="Also write metrics/ hive-partitioned by metric."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars or summary."),
    engine: str = typer.Option(
        "auto",
        "--engine",
        help="auto (threads for large tables on several cores with the memory, else pandas), pandas (in memory, one core), "
        "threads (in memory, customer buckets on all cores) or dask (larger than memory).",
    ),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Dask: address of a running scheduler (tcp://host:8786)."
    ),
    workers: int | None = typer.Option(
        None, "--workers", help="Dask: workers of the local cluster (default: one per core)."
    ),
    memory_limit: str | None = typer.Option(
        None, "--memory-limit", help="Dask: memory limit per local worker (e.g. 4GB)."
    ),
    buckets: int | None = typer.Option(
        None,
        "--buckets",
        help="threads/Dask: customer buckets (threads: the cores; Dask: the largest table's partitions).",
    ),
) -> None:
    """Run every metric family on DATA_DIR and write Parquet, a manifest and an HTML dashboard.

    With --engine dask the large tables are read partition by partition on a local
    cluster (or the cluster at --scheduler); the outputs are the pandas engine's.
    """
    try:
        settings = load_config(config) if config is not None else {}
        params = {
            "freq": check_freq(freq, "--freq") if freq is not None else settings.get("freq", "M"),
            "by": list(check_by(by)) if by else settings.get("by", []),
            "tz": check_tz(tz, "--tz") if tz is not None else settings.get("tz", "UTC"),
            "as_of": check_as_of(as_of, "--as-of") if as_of is not None else settings.get("as_of"),
        }
        if params["as_of"] is None and (data_dir / "as_of.txt").is_file():
            # written by `csmetrics convert`: the export's sync instant (§17)
            params["as_of"] = check_as_of((data_dir / "as_of.txt").read_text().strip(), f"{data_dir}/as_of.txt")
        if fx_mode is not None:
            check_choice("--fx-mode", fx_mode, FX_MODES)
            settings = {**settings, "policies": {**settings.get("policies", {}), "fx_mode": fx_mode}}
    except ConfigError as err:
        _fail(str(err))
    if engine not in ("auto", "pandas", "threads", "dask"):
        _fail(f"--engine must be auto, pandas, threads or dask, not {engine!r}")
    if engine != "dask" and any(v is not None for v in (scheduler, workers, memory_limit)):
        _fail("--scheduler, --workers and --memory-limit need --engine dask")
    if engine in ("auto", "pandas") and buckets is not None:
        _fail("--buckets needs --engine threads or dask")
    for name, number in (("--workers", workers), ("--buckets", buckets)):
        if number is not None and number < 1:
            _fail(f"{name} must be 1 or more, not {number}")
    if not data_dir.is_dir():
        _fail(f"data folder {data_dir} does not exist")
    try:
        out = prepare_output_folder(out, [data_dir])
    except OutputError as err:
        _fail(str(err))
    stages = ["read", "validate", "health", "metrics", "assemble", "html", "write"]
    with ExitStack() as stack:
        if engine == "dask":
            client = _dask_client(stack, scheduler, workers, memory_limit, quiet)
            if not quiet:
                err_console.print(
                    f"Dask: {len(client.scheduler_info()['workers'])} workers; dashboard {client.dashboard_link}"
                )
        _report(data_dir, out, stages, settings, params, engine, buckets, quarantine, html, partitioned, quiet)


def _with_schedules(data_dir: Path, settings: dict, tables: dict, quiet: bool) -> dict:
    """Business hours from DATA_DIR's schedules.parquet (written by `csmetrics convert fivetran-zendesk`)
    unless csmetrics.toml gives them: each ticket on its ``schedule_id``'s schedule, else the default."""
    if "business_hours" in settings:
        return settings
    try:
        schedules = read_schedules(data_dir)
    except InputError as err:
        _fail(str(err))
    if not schedules:
        return settings
    added: dict[str, Any]
    if "tickets" in tables and "schedule_id" in tables["tickets"].columns:
        added = {"business_hours": schedules, "schedule_column": "schedule_id"}
    elif "default" in schedules:
        added = {"business_hours": schedules["default"]}
    else:
        return settings
    if not quiet:
        err_console.print(
            f"business hours: {len(schedules) - ('default' in schedules)} schedule(s) from schedules.parquet"
        )
    return {**settings, **added}


def _dask_client(stack, scheduler: str | None, workers: int | None, memory_limit: str | None, quiet: bool):
    """A client of the given scheduler, else of a local cluster (processes, one thread each)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        err_console.print("[red]--engine dask needs the dask extra: pip install 'csmetrics[dask]'[/red]")
        raise typer.Exit(2) from None
    if scheduler is not None:
        return stack.enter_context(Client(scheduler))
    # the local cluster (scheduler, workers and dashboard) listens on the loopback interface only
    cluster = stack.enter_context(
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            memory_limit=memory_limit or "auto",
            host=LOOPBACK,
            dashboard_address=f"{LOOPBACK}:0",
        )
    )
    client = stack.enter_context(Client(cluster))
    client.register_plugin(worker_heap.HeapPlugin())
    return client


def _report(data_dir, out, stages, settings, params, engine, buckets, quarantine, html, partitioned, quiet) -> None:
    # on Dask, its own progress bars show each computation: stages are printed as lines
    with Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=quiet or engine == "dask",
        transient=False,
    ) as progress:
        task = progress.add_task("read", total=len(stages))

        def step(stage: str) -> None:
            progress.update(task, description=stage, completed=stages.index(stage) if stage in stages else 0)
            if engine == "dask" and not quiet:
                err_console.print(f"[bold]{stage}[/bold]")

        tables, paths = _read(data_dir, lazy=engine == "dask")
        settings = _with_schedules(data_dir, settings, tables, quiet)
        try:
            result = report(
                tables,
                paths=paths,
                quarantine=quarantine,
                html=html,
                config=settings,
                progress=step,
                engine=None if engine == "auto" else engine,
                buckets=buckets,
                dask_progress=engine == "dask" and not quiet,
                _encode_ahead=True,  # written next
                **params,
            )
        except ValidationError as err:
            progress.stop()
            err_console.print("[red]validation failed[/red]\n" + escape(str(err)), highlight=False)
            raise typer.Exit(1) from None
        except ConfigError as err:
            progress.stop()
            _fail(str(err))
        except ImportError as err:
            progress.stop()
            err_console.print(f"[red]{err}[/red] (or pass --no-html)")
            raise typer.Exit(2) from None
        if (data_dir / "source.json").is_file():  # written by `csmetrics convert`: the adapter used
            try:
                result.manifest["source"] = json.loads((data_dir / "source.json").read_text())
            except ValueError:
                result.manifest["source"] = {"error": "source.json is not valid JSON"}
        step("write")
        try:
            result.write(out, partitioned=partitioned)
        except OutputError as err:
            progress.stop()
            _fail(str(err))
        progress.update(task, description="done", completed=len(stages))
    if not quiet:
        summary = Table(title=f"csmetrics report -> {out}")
        for column in ("input", "rows", "rejected"):
            summary.add_column(column, justify="left" if column == "input" else "right")
        for name, info in result.manifest["inputs"].items():
            summary.add_row(name, f"{info['rows']:,}", f"{info['rows_rejected']:,}")
        console.print(summary)
        outputs = ", ".join(f"{k} {v['rows']:,}" for k, v in result.manifest["outputs"].items())
        console.print(f"as of {result.manifest['as_of']}; outputs: {outputs}" + ("; index.html" if html else ""))


@app.command("convert")
def convert_command(
    source: str = typer.Argument(..., help="fivetran-stripe or fivetran-zendesk"),
    in_dir: Path = typer.Argument(..., help="Folder of the source tables (<table>.csv, <table>_data.csv or .parquet)."),
    out: Path = typer.Option(..., "--out", help="Folder to write csmetrics tables into (absent or empty)."),
) -> None:
    """Convert a warehouse export (Fivetran's Stripe or Zendesk tables) into csmetrics tables (METRICS.md §17)."""
    if source not in ADAPTERS:
        _fail(f"unknown source {source!r}; known: {', '.join(ADAPTERS)}")
    if not in_dir.is_dir():
        _fail(f"source folder {in_dir} does not exist")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        _fail(f"--out {out} exists and is not an empty folder: nothing was written")
    try:
        converted = ADAPTERS[source](in_dir)
    except (AdapterError, ValidationError, ConfigError) as err:
        _fail(str(err).replace("\n", " "))
    converted.write(out)
    summary = Table(title=f"csmetrics convert {source} -> {out}")
    for column in ("table", "rows", "from"):
        summary.add_column(column)
    for name, table in converted.tables.items():
        summary.add_row(name, f"{len(table):,}", ", ".join(k for k in converted.used))
    console.print(summary)
    for name, columns in converted.used.items():
        console.print(f"  {name}: {', '.join(columns)}")
    for note in converted.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")
    if converted.as_of is not None:
        console.print(f"as_of {converted.as_of} (newest _fivetran_synced; `csmetrics report` reads it from as_of.txt)")


@app.command("metrics")
def metrics_command() -> None:
    """List every metric of the catalog with its definition."""
    listing = Table(title="csmetrics metrics")
    for column in ("metric", "family", "unit", "definition"):
        listing.add_column(column)
    for metric in CATALOG:
        listing.add_row(metric.name, metric.family, metric.unit, metric.definition)
    console.print(listing)


@schemas_app.command("export")
def export_command(
    out: Path = typer.Option(Path("schemas"), "--out", help="Folder to write <table>.yaml into."),
) -> None:
    """Write the YAML contract of every table (and of the metric frame)."""
    for path in export_schemas(out):
        console.print(f"wrote {path}")


def main() -> None:  # pragma: no cover
    app()
