"""The ``csmetrics`` command (Typer + Rich)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from csmetrics.validate import TABLES, ValidationError, validate_tables
from csmetrics.io import read_tables

app = typer.Typer(help="Customer-success metrics from raw tables.", no_args_is_help=True, add_completion=False)
schemas_app = typer.Typer(help="The published table contracts.", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")
console = Console()
err_console = Console(stderr=True)


@app.command("validate")
def validate_command(
    data_dir: Path = typer.Argument(..., help="Folder with <table>.parquet / <table>.csv files."),
    quarantine: Path | None = typer.Option(
        None, "--quarantine", help="Set bad rows aside into this folder (rejected/<table>.parquet) instead of failing."
    ),
) -> None:
    """Validate every table found in DATA_DIR and print a per-table summary."""
    try:
        tables, paths = read_tables(data_dir)
    except FileNotFoundError as err:
        err_console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None
    if not tables:
        err_console.print(f"[red]no tables found in {data_dir} (expected {', '.join(TABLES)})[/red]")
        raise typer.Exit(2)
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
            rejected[name].astype({c: "str" for c in rejected[name].columns if rejected[name][c].dtype == object}).to_parquet(out / f"{name}.parquet")
    console.print(summary)


@schemas_app.command("export")
def export_command(
    out: Path = typer.Option(Path("schemas"), "--out", help="Folder to write <table>.yaml into."),
) -> None:
    """Write the YAML contract of every table (and of the metric frame)."""
    from csmetrics.schemas_export import export_schemas

    for path in export_schemas(out):
        console.print(f"wrote {path}")


def main() -> None:  # pragma: no cover
    app()
