"""csmetrics.toml: parse and check (METRICS.md; docs/METRICS_NOTES.md lists the rules).

The key lists are derived from the code, not repeated: ``[policies]`` takes the fields of
:class:`~csmetrics.metrics._billing.Policies` and ``[health]`` the parameters of the
scorecard; every value is checked by the same functions the API uses
(:mod:`csmetrics.options`), so a wrong value is a :class:`~csmetrics.options.ConfigError`
naming the file, the key and what it takes.
"""

from __future__ import annotations

import inspect
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from csmetrics.metrics._billing import Policies
from csmetrics.metrics.health import Scorecard
from csmetrics.options import (
    ConfigError,
    UnknownNameError,
    check_as_of,
    check_by,
    check_cost_roles,
    check_csat_thresholds,
    check_freq,
    check_number,
    check_sla_targets,
    check_tz,
)
from csmetrics.schedule import Schedule

__all__ = ["CONFIG_KEYS", "POLICY_KEYS", "check_config", "load_config", "scorecard_keys"]


def scorecard_keys() -> tuple[str, ...]:
    """The parameters of the health scorecard (the keys of ``[health]``)."""
    return tuple(name for name in inspect.signature(Scorecard.__init__).parameters if name != "self")


#: csmetrics.toml keys: the report's options; [health] takes the scorecard's parameters, [policies] the Policies fields.
CONFIG_KEYS = (
    "freq",
    "by",
    "tz",
    "as_of",
    "csat_thresholds",
    "sla_targets",
    "cost_roles",
    "gross_margin",
    "session_gap_minutes",
    "health",
    "policies",
    "resolution_targets",
    "business_hours",
    "schedule_column",
    "renewal_horizon_days",
)
POLICY_KEYS = tuple(Policies.__dataclass_fields__)


def load_config(path: Path | str) -> dict:
    """Read ``csmetrics.toml``; an unknown key or a wrongly typed value is a ConfigError naming it.

    ``csat_thresholds`` are written as ``"1-5" = 4``; ``sla_targets`` as
    ``urgent = 60`` (minutes); ``cost_roles`` as ``acquisition = ["sales"]``;
    ``[health]`` takes weights, bands, baseline_periods, support_scale, trend_periods;
    ``[policies]`` takes count_new_churn, renewal_grace_days, repeat_window_days, fx_mode.
    """
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror})") from None
    return check_config(raw, source=str(path))


def _check_business_hours(table: Any) -> Any:
    """``[business_hours]`` (one schedule) or ``[business_hours.<value>]`` tables (one per value);
    already parsed schedules pass as they are (the report checks a parsed config again)."""
    if isinstance(table, Schedule):
        return table
    if isinstance(table, Mapping) and table and all(isinstance(v, (Mapping, Schedule)) for v in table.values()):
        return {str(k): v if isinstance(v, Schedule) else Schedule.from_dict(v) for k, v in table.items()}
    return Schedule.from_dict(table)


def _check_column_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"schedule_column must be a ticket column name, not {value!r}")
    return value


def _check_health(table: Mapping[str, Any]) -> dict[str, Any]:
    """The [health] table, checked by building the scorecard it describes (bands as a tuple)."""
    health: dict[str, Any] = {k: (tuple(v) if k == "bands" and isinstance(v, list) else v) for k, v in table.items()}
    Scorecard(**health)
    return dict(table)


def check_config(raw: Mapping, source: str = "config") -> dict:
    """Every key known and every value of the right type and range; returns the parsed settings."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: settings must be a table of keys, not {raw!r}")
    for key in raw:
        if key not in CONFIG_KEYS:
            raise UnknownNameError(f"{source}: unknown key {key!r} (known: {', '.join(sorted(CONFIG_KEYS))})")
    sections = {"health": scorecard_keys(), "policies": POLICY_KEYS}
    for section, known in sections.items():
        if section in raw and not isinstance(raw[section], Mapping):
            raise ConfigError(
                f"{source}: [{section}] must be a table of keys ({', '.join(known)}), not {raw[section]!r}"
            )
        for key in raw.get(section, {}):
            if key not in known:
                raise UnknownNameError(f"{source}: unknown key {section}.{key} (known: {', '.join(sorted(known))})")
    checks: dict[str, Callable[[Any], Any]] = {
        "freq": check_freq,
        "by": lambda v: list(check_by(v)),
        "tz": check_tz,
        "as_of": check_as_of,
        "csat_thresholds": check_csat_thresholds,
        "sla_targets": check_sla_targets,
        "cost_roles": check_cost_roles,
        "gross_margin": lambda v: check_number("gross_margin", v, low=0, high=1, low_open=True),
        "session_gap_minutes": lambda v: check_number("session_gap_minutes", v, low=0, low_open=True),
        "resolution_targets": lambda v: check_sla_targets(v, "resolution_targets"),
        "business_hours": _check_business_hours,
        "schedule_column": _check_column_name,
        "renewal_horizon_days": lambda v: check_number("renewal_horizon_days", v, low=0, low_open=True),
        "health": _check_health,
        "policies": lambda v: (Policies(**v), dict(v))[1],
    }
    config: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            config[key] = checks[key](value)
        except ConfigError as err:
            where = f"[{key}] " if key in sections else ""
            raise ConfigError(f"{source}: {where}{err}") from None
    return config
