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

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from csmetrics import plans
from csmetrics._compat import in_background
from csmetrics._version import __version__
from csmetrics.api import HealthScorecard
from csmetrics.checks import billing_facts, check_mapping, mrr_jumps
from csmetrics.config import check_config
from csmetrics.dashboard import render
from csmetrics.engines import AS_OF_COLUMNS, Engine, Pending, open_engine, resolve
from csmetrics.frame import empty_frame
from csmetrics.models import ModelFitError, customer_value_table
from csmetrics.options import (
    ConfigError,
    UnknownNameError,
    check_as_of,
    check_bool,
    check_by,
    check_freq,
    check_int,
    check_tz,
)
from csmetrics.output import content_hash, start_encoding, write_report
from csmetrics.periods import NAT, code_ends_ns, code_starts, period_codes, to_utc
from csmetrics.validate import TABLES

__all__ = ["Report", "renewals_by_period", "report", "report_as_of"]


@dataclass
class Report:
    """Everything one run produces; ``write`` puts it on disk."""

    metrics: pd.DataFrame
    customers: Any  # a frame, or an engine's streamed output (written a part at a time)
    cohorts: pd.DataFrame
    followups: pd.DataFrame
    at_risk: pd.DataFrame
    rejected: dict[str, pd.DataFrame]
    manifest: dict
    #: renewals ahead (§12): per future period, and the customer calendar with health and last answer
    renewals: pd.DataFrame = field(default_factory=pd.DataFrame)
    renewal_calendar: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: usage retention by cohort and the active-days distribution (§15)
    health_movers: pd.DataFrame = field(default_factory=pd.DataFrame)
    usage_retention: pd.DataFrame = field(default_factory=pd.DataFrame)
    active_days: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: predictive value per customer (§13), when the data supports the fits (else None)
    clv: pd.DataFrame | None = None
    html: str | None = field(default=None, repr=False)
    #: outputs whose Parquet bytes are being encoded ahead: name -> (the frame, the bytes' future)
    _ahead: dict[str, tuple[Any, Future]] = field(default_factory=dict, repr=False, compare=False)

    def outputs(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics,
            "customers": self.customers,
            "cohorts": self.cohorts,
            "followups": self.followups,
            "at_risk": self.at_risk,
            "renewals": self.renewals,
            "renewal_calendar": self.renewal_calendar,
            "health_movers": self.health_movers,
            "usage_retention": self.usage_retention,
            "active_days": self.active_days,
            **({"clv": self.clv} if self.clv is not None else {}),
        }

    def write(self, out_dir: Path | str, *, partitioned: bool = False, _fail_after: int | None = None) -> Path:
        """Write the outputs atomically into ``out_dir`` (METRICS.md §16, :func:`csmetrics.output.write_report`).

        ``out_dir`` must be absent, empty or a previous csmetrics report, and may not hold an
        input; otherwise :class:`~csmetrics.output.OutputError` is raised and nothing is touched.
        ``_fail_after`` (tests only) raises after that many files, to prove atomicity.
        """
        return write_report(
            out_dir,
            self.outputs(),
            rejected=self.rejected,
            html=self.html,
            manifest=self.manifest,
            partitioned=partitioned,
            fail_after=_fail_after,
            ahead=self._ahead,
        )


def report_as_of(engine: Engine, as_of: object = None) -> pd.Timestamp:
    """The given as_of, else the latest timestamp of any (validated) table."""
    if as_of is not None:
        return to_utc(as_of, "as_of")
    latest = max(engine.latest(name) for name in AS_OF_COLUMNS)
    if latest == NAT:
        raise ConfigError(
            "no timestamps in the input tables (after validation): cannot infer as_of; pass --as-of / as_of="
        )
    return pd.Timestamp(latest, tz="UTC")


def report(
    tables: Mapping[str, Any],
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
    engine: str | None = None,
    buckets: int | None = None,
    dask_progress: bool = False,
    _encode_ahead: bool = False,
) -> Report:
    """Run every family whose tables are present.

    Parameters
    ----------
    tables : mapping
        Table name -> DataFrame (pandas or Dask), any of events, tickets, surveys, billing,
        customers, costs, fx.
    freq, by, tz, as_of
        As in :mod:`csmetrics.api`; one as_of serves every family (default: the latest
        timestamp of any table); a ``by`` column applies to the families that have it.
    quarantine : bool
        Set bad rows aside (``Report.rejected``) instead of failing.
    html : bool
        Render the dashboard (``Report.html``).
    config : mapping, optional
        The csmetrics.toml settings (csat_thresholds, sla_targets, cost_roles, gross_margin,
        session_gap_minutes, health, policies); explicit arguments win over it.
    paths : mapping, optional
        Table name -> the file it was read from (for the manifest).
    progress : callable, optional
        Called with each stage's name.
    engine : str, optional
        "pandas" or "dask" (default: Dask when any table is a Dask DataFrame).
    buckets : int, optional
        Dask: the number of customer buckets (default: the largest table's partition count).
    dask_progress : bool
        Dask: show Dask's progress bar for each computation.
    _encode_ahead : bool
        (The CLI, which writes the report next) encode customers.parquet in the background as soon
        as its rows are merged, while the report's last steps run.

    Returns
    -------
    Report
        metrics, customers, cohorts, followups, at_risk, rejected rows and the manifest.

    Examples
    --------
    >>> import pandas as pd, csmetrics
    >>> tickets = pd.DataFrame({"ticket_id": [1, 2], "customer_id": [7, 8], "created_at": ["2024-01-02", "2024-01-03"]})
    >>> result = csmetrics.report({"tickets": tickets}, html=False)
    >>> result.manifest["families"], int(result.metrics.query("metric == 'tickets'")["value"].sum())
    (['support', 'health'], 2)
    """
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
    runner, rejected = open_engine(
        tables, engine=engine, quarantine=quarantine, buckets=buckets, progress=dask_progress
    )
    as_of_ts = report_as_of(runner, as_of)
    return _run_families(
        runner,
        rejected,
        tables,
        paths,
        step,
        freq=freq,
        by=by,
        tz=tz,
        as_of_ts=as_of_ts,
        quarantine=quarantine,
        html=html,
        config=config,
        encode_ahead=_encode_ahead,
    )


def _check_segments_exist(by: list[str], tables: Mapping[str, Any]) -> None:
    """Each ``by`` column is a column of some table (or plan); else an error listing the columns there are."""
    columns = {str(c) for name, table in tables.items() if name not in ("fx", "costs") for c in table.columns}
    missing = [c for c in by if c not in columns]
    if missing:
        raise UnknownNameError(
            f"segment column(s) {missing} are in no table; the columns there are: "
            f"{', '.join(sorted(columns - {'customer_id'}))}"
        )


def _run_families(
    engine: Engine,
    rejected: dict,
    tables: Mapping[str, Any],
    paths: Mapping | None,
    step: Callable[[str], None],
    *,
    freq: str,
    by: list[str],
    tz: str,
    as_of_ts: pd.Timestamp,
    quarantine: bool,
    html: bool,
    config: dict,
    encode_ahead: bool = False,
) -> Report:
    """Every family whose tables are present, planned first and computed in one resolve."""
    customers = engine.small("customers")
    policies = dict(config.get("policies", {}))
    common: dict[str, Any] = {"freq": freq, "tz": tz, "as_of": as_of_ts}
    pending: dict[str, Pending] = {}
    ran: list[str] = []
    columns = {
        name: list(engine.summary(name, as_of_ts).columns)
        for name in ("billing", "tickets", "surveys", "events")
        if engine.has(name)
    }
    # tickets and surveys first: their buckets are made at once, so the pool starts while billing's are
    if engine.has("tickets"):
        pending["support"] = plans.support(
            engine,
            by=plans.usable_by(by, columns["tickets"], customers),
            sla_targets=config.get("sla_targets"),
            resolution_targets=config.get("resolution_targets"),
            business_hours=config.get("business_hours"),
            schedule_column=config.get("schedule_column"),
            **common,
        )
    if engine.has("surveys"):
        pending["surveys"] = plans.surveys(
            engine,
            by=plans.usable_by(by, columns["surveys"], customers),
            csat_thresholds=config.get("csat_thresholds"),
            **common,
        )
    plain_billing = None
    if engine.has("billing"):
        seg = plans.usable_by(by, columns["billing"], customers, extra=["plan"])
        context = plans.billing_context(engine, by=seg, policies=policies, **common)
        plain_billing = plans.billing_context(engine, policies=policies, **common)
        pending["revenue"] = plans.revenue(engine, context)
        pending["value"] = plans.value(
            engine, context, gross_margin=float(config.get("gross_margin", 1.0)), cost_roles=config.get("cost_roles")
        )
        rfm = plans.rfm(engine, plain_billing, "W")
        margin = float(config.get("gross_margin", 1.0))

        # the CLV fit is the rfm rows' finish, the longest of all (at large 26-49 s on one core)
        def fitted(*parts: Any) -> tuple[pd.DataFrame | None, dict[str, Any]]:
            return _fitted_clv(rfm.finish(*parts), margin)

        if hasattr(engine, "start"):
            # Dask: the rfm rows are computed first, before the health rows, and the fit is the first
            # finish resolve does (below), on the client while the workers compute the other families
            pending["clv"] = Pending(tuple(engine.start(*rfm.handles)), fitted)
        else:
            # in this process: fitted from now in a thread of its own, beside the other families (their
            # calls, the health fit's pass) instead of after them
            fit = in_background(lambda: fitted(*engine.gather(*rfm.handles)), "csmetrics-clv")
            pending["clv"] = Pending((), fit.result)
        pending["cohorts"] = plans.cohorts(engine, context)  # split by the report's customer attributes or plan (§12)
        ran += ["revenue", "customers", "value"]
    ran += [name for name in ("support", "surveys") if name in pending]
    if engine.has("surveys"):
        pending["followups"] = plans.followups(
            engine, csat_thresholds=config.get("csat_thresholds"), billing_context=plain_billing, **common
        )
    if engine.has("events"):
        users = plans.event_users(engine)  # found once for the three families (freed after the last)
        pending["engagement"] = plans.engagement(
            engine,
            by=plans.usable_by(by, columns["events"], customers),
            session_gap_minutes=float(config.get("session_gap_minutes", 30.0)),
            users=users,
            **common,
        )
        pending["usage_retention"] = plans.usage_retention(
            engine,
            freq=freq,
            periods=12,
            by=plans.usable_by(by, columns["events"], customers),
            tz=tz,
            as_of=as_of_ts,
            users=users,
        )
        pending["active_days"] = plans.active_days(engine, freq=freq, tz=tz, as_of=as_of_ts, users=users)
        del users
        ran.append("engagement")
    scores = None
    if any(engine.has(name) for name in plans.HEALTH_TABLES):
        step("health")
        health: dict[str, Any] = {k: (tuple(v) if k == "bands" else v) for k, v in config.get("health", {}).items()}
        # the scores are made with the families that read them, not held until the last one has run
        # only the handle is kept (below it is dropped after the families, which frees the scores)
        scores, _, periods = plans.health_scores(
            engine, HealthScorecard(**health), billing_context=plain_billing, persist=False, **common
        )
        segments = [c for c in by if customers is not None and c in customers.columns]
        pending["health"] = plans.health(engine, scores, by=segments, freq=freq, tz=tz, periods=periods)
        pending["health_movers"] = plans.health_movers(engine, scores, periods=periods)
        ran.append("health")
    if engine.has("billing"):
        pending["renewals"] = plans.renewals(
            engine, context, horizon_days=float(config.get("renewal_horizon_days", 90.0)), scores=scores
        )
    rows = None  # customers.parquet's rows start with the families (their serial tail below overlaps them)
    if scores is not None or plain_billing is not None:
        rows = plans.customer_rows(engine, scores, plain_billing)
    step("metrics")
    customer_frame: Any = pd.DataFrame(columns=["customer_id", "period"])

    def customers_output() -> None:
        nonlocal customer_frame
        assert rows is not None
        customer_frame = plans.customer_output(engine, rows, plain_billing, engine.n)

    # an engine that submits its work (Dask): customers.parquet's regroup is submitted with the families
    submits = rows is not None and hasattr(engine, "start")
    first = {"clv": pending["clv"]} if "clv" in pending else {}
    done = resolve(engine, {**first, **pending}, started=customers_output if submits else None)
    # the scored rows (20M at large) are freed once the customer rows have read them: nothing below needs them
    pending.clear()
    scores = None
    ahead: dict[str, tuple[Any, Future]] = {}
    if rows is not None:
        if not submits:
            customers_output()
        rows = None
        if encode_ahead and isinstance(customer_frame, pd.DataFrame):  # the steps below overlap its encoding
            ahead["customers"] = (customer_frame, start_encoding(customer_frame))

    step("assemble")
    frames = []
    if "revenue" in done:
        frames += [*done["revenue"], done["value"]]
    frames += [done[name] for name in ("support", "surveys", "engagement") if name in done]
    risky = pd.DataFrame()
    if "health" in done:
        frames.append(done["health"][0])
        risky = done["health"][1]
    metrics = _assemble(frames)
    result = Report(
        metrics=metrics,
        customers=customer_frame,
        cohorts=done.get("cohorts", pd.DataFrame()),
        followups=done.get("followups", pd.DataFrame()).reset_index(drop=True),
        at_risk=risky.reset_index(drop=True),
        rejected={k: v for k, v in rejected.items() if len(v)},
        manifest={},
        _ahead=ahead,
    )
    for name in ("usage_retention", "active_days", "health_movers"):
        if name in done:
            setattr(result, name, done[name])
    if "renewals" in done:
        result.at_risk = plans.with_next_renewal(result.at_risk, done["renewals"])
        horizon = float(config.get("renewal_horizon_days", 90.0))
        result.renewal_calendar = done["renewals"]
        result.renewals = renewals_by_period(done["renewals"], as_of_ts, horizon, freq, tz)
    # mapping mistakes (issue 17): warnings, recorded in the manifest and shown on the dashboard
    # billing is scanned bucket by bucket (partition by partition on Dask); fx is small everywhere
    parts = engine.gather(engine.map(billing_facts, engine.table("billing")))[0] if engine.has("billing") else None
    scanned = {"fx": engine.small("fx")} if engine.small("fx") is not None else {}
    base = plain_billing.base_currency if plain_billing is not None else None
    mapping = check_mapping(scanned, base, warn=True, billing_parts=parts) + mrr_jumps(metrics)
    clv_fit: dict[str, Any] = {"fitted": False, "reason": "no billing"}
    if "clv" in done:
        result.clv, clv_fit = done["clv"]
    partial = _partial_period(as_of_ts, freq, tz)
    result.manifest = _manifest(
        result,
        tables,
        engine,
        rejected,
        paths,
        ran,
        freq=freq,
        by=by,
        tz=tz,
        as_of=as_of_ts,
        partial=partial,
        quarantine=quarantine,
        config=config,
        clv=clv_fit,
        warnings=mapping,
        currency={
            "base": plain_billing.base_currency if plain_billing is not None else None,
            "fx_mode": plain_billing.policies.fx_mode if plain_billing is not None else None,
        },
    )
    if html:
        step("html")
        result.html = render(result)
    return result


def _fitted_clv(rfm: pd.DataFrame, margin: float) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    """The predictive CLV table of the rfm rows (§13) and what the manifest records of the fit."""
    try:
        table, params = customer_value_table(rfm, horizon_months=12, discount_rate=0.01, margin=margin)
    except ModelFitError as err:
        return None, {"fitted": False, "reason": str(err)}
    return table, {"fitted": True, "unit": "W", "horizon_months": 12, "discount_rate": 0.01, "parameters": params}


def renewals_by_period(
    calendar: pd.DataFrame, as_of: pd.Timestamp, horizon_days: float, freq: str, tz: str
) -> pd.DataFrame:
    """renewals.parquet (§12): per period from as_of's to the horizon's, the MRR up for renewal
    and the number of renewals (customer and end instant) falling in it; zeros where none."""
    horizon = as_of + pd.Timedelta(days=horizon_days)
    first, last = period_codes(pd.DatetimeIndex([as_of, horizon]), freq, tz)
    codes = np.arange(first, last + 1)
    at = period_codes(pd.DatetimeIndex(calendar["end"]), freq, tz) - first if len(calendar) else np.zeros(0, np.int64)
    weights = calendar["mrr_up_for_renewal"].to_numpy(dtype=float) if len(calendar) else np.zeros(0)
    return pd.DataFrame(
        {
            "period": code_starts(codes, freq, tz),
            "freq": freq,
            "mrr_up_for_renewal": np.bincount(at, weights=weights, minlength=len(codes)),
            "renewals_upcoming": np.bincount(at, minlength=len(codes)).astype(np.int64),
        }
    )


def _assemble(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One long frame: fixed columns first, segment columns in order of appearance, stable order."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_frame()
    segment_columns: list[str] = []
    fixed = ["period", "freq", "metric", "value", "numerator", "denominator", "ci_low", "ci_high"]
    for frame in frames:
        segment_columns += [c for c in frame.columns if c not in fixed and c not in segment_columns]
    metrics = pd.concat(frames, ignore_index=True)
    for column in segment_columns:
        if metrics[column].dtype == object:
            metrics[column] = metrics[column].astype("str").where(metrics[column].notna(), None)
    return metrics[
        ["period", "freq", *segment_columns, "metric", "value", "numerator", "denominator", "ci_low", "ci_high"]
    ]


def _partial_period(as_of: pd.Timestamp, freq: str, tz: str) -> str | None:
    code = period_codes(pd.DatetimeIndex([as_of]), freq, tz)
    end = code_ends_ns(code, freq, tz)[0]
    return None if as_of.value + 1 >= end else str(code_starts(code, freq, tz)[0])


def _manifest(
    result: Report,
    tables: Mapping[str, Any],
    engine: Engine,
    rejected: dict,
    paths: Mapping | None,
    ran: list[str],
    **params: Any,
) -> dict:
    paths = paths or {}
    config = params.pop("config")
    return {
        "csmetrics_version": __version__,
        "parameters": {
            "freq": params["freq"],
            "by": params["by"],
            "tz": params["tz"],
            "quarantine": params["quarantine"],
            "config": {
                k: ({f"{a:g}-{b:g}": t for (a, b), t in v.items()} if k == "csat_thresholds" else v)
                for k, v in config.items()
            },
        },
        "as_of": str(params["as_of"]),
        "partial_period": params["partial"],
        "currency": params["currency"],
        "clv": params["clv"],
        "warnings": params["warnings"],
        "families": ran,
        "engine": engine.name,
        "buckets": engine.n,  # customer buckets: threads of the threads engine, partitions on Dask
        "inputs": {
            name: {
                "path": str(paths[name]) if name in paths else None,
                "rows": engine.input_rows(name, tables[name], rejected),
                "rows_rejected": int(len(rejected.get(name, ()))),
                "content_hash": content_hash(tables[name], paths.get(name))
                if name in paths or isinstance(tables[name], pd.DataFrame)
                else None,
            }
            for name in sorted(tables)
        },
        "outputs": {name: {"rows": int(len(frame))} for name, frame in result.outputs().items()},
    }
