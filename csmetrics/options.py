"""Checks of every option (API argument or csmetrics.toml key): type and range, with an error naming it.

Every public function and the config reader call these before any work, so that a
wrong option is a :class:`ConfigError` naming the option and what it takes, never
an ignored option, a deep traceback or a wrong number.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from csmetrics.schemas import FREQS

__all__ = [
    "FX_MODES",
    "RESERVED_COLUMNS",
    "ConfigError",
    "NotFittedError",
    "UnknownNameError",
    "check_as_of",
    "check_bands",
    "check_bool",
    "check_by",
    "check_choice",
    "check_cost_roles",
    "check_csat_thresholds",
    "check_freq",
    "check_int",
    "check_known",
    "check_number",
    "check_sla_targets",
    "check_tz",
    "check_weights",
]

#: Columns of every metric frame: a segment column may not take one of these names.
RESERVED_COLUMNS = ("period", "freq", "metric", "value", "numerator", "denominator", "ci_low", "ci_high")


class ConfigError(ValueError):
    """An option (a function argument or a csmetrics.toml key) with a wrong type or value."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NotFittedError(ValueError, AttributeError, RuntimeError):
    """A model (a health scorecard, a CLV model) used before it was fitted; as scikit-learn's, a
    ValueError and an AttributeError, and a RuntimeError as the scorecard raised before."""


class UnknownNameError(ConfigError, KeyError, TypeError):
    """An option, policy, component, role or column name that does not exist (also a KeyError
    and a TypeError, as Python raises for an unknown key or keyword)."""


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_bool(name: str, value: object) -> bool:
    """A real bool (TOML ``"no"`` or the number 0 is not one)."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise ConfigError(f"{name} must be true or false, not {value!r}")


#: How foreign billing is valued (§12): at each line's start rate, or at each instant's rate.
FX_MODES = ("line", "spot")


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """One of ``choices`` (a string)."""
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def check_number(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real number in [low, high] (``low_open``/``high_open``: the bound excluded)."""
    if not _is_number(value) or not math.isfinite(float(value)):  # type: ignore[arg-type]
        raise ConfigError(f"{name} must be a finite number, not {value!r}")
    number = float(value)  # type: ignore[arg-type]
    below = low is not None and (number <= low if low_open else number < low)
    above = high is not None and (number >= high if high_open else number > high)
    if below or above:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        span = f"{left}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}{right}"
        raise ConfigError(f"{name} must lie in {span}, not {value!r}")
    return number


def check_int(name: str, value: object, *, low: int = 1) -> int:
    """A whole number >= low (a float such as 3.0 is accepted, 3.5 or True is not)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value)):
        number = float(value)
        if number == math.floor(number) and number >= low:
            return int(number)
    raise ConfigError(f"{name} must be a whole number >= {low}, not {value!r}")


def check_freq(freq: object, name: str = "freq") -> str:
    """One of D, W, M, Q, Y (any case)."""
    if isinstance(freq, str) and freq.upper() in FREQS:
        return freq.upper()
    raise ConfigError(f"{name} must be one of {', '.join(FREQS)}, not {freq!r}")


def check_tz(tz: object, name: str = "tz") -> str:
    """An IANA time zone name (e.g. UTC, Europe/Berlin)."""
    if isinstance(tz, str) and tz:
        try:
            pd.Timestamp(0, tz=tz)
        except Exception:  # noqa: BLE001 - pytz, zoneinfo and dateutil raise different errors
            pass
        else:
            return tz
    raise ConfigError(f"{name} must be a time zone name such as 'UTC' or 'Europe/Berlin', not {tz!r}")


def check_as_of(value: object, name: str = "as_of") -> pd.Timestamp | None:
    """A timestamp within pandas' nanosecond range (1677-2262) as UTC; None stays None."""
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError) as err:
        raise ConfigError(f"{name} must be a timestamp (e.g. '2024-12-31 23:59'), not {value!r}: {err}") from None
    if ts is pd.NaT or pd.isna(ts):
        raise ConfigError(f"{name} must be a timestamp, not {value!r}")
    try:
        ts = ts.as_unit("ns")
    except (ValueError, OverflowError):
        raise ConfigError(f"{name} {value!r} lies outside the supported range 1677-09-22..2262-04-11") from None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def check_by(by: object, *, reserved: Sequence[str] = ()) -> tuple[str, ...]:
    """Segment columns: None, a column name or a list of names, none of them a metric-frame column."""
    if by is None:
        return ()
    names = (by,) if isinstance(by, str) else by
    if not isinstance(names, (list, tuple)) or not all(isinstance(c, str) and c for c in names):
        raise ConfigError(f"by must be a column name or a list of column names, not {by!r}")
    taken = [c for c in names if c in (*RESERVED_COLUMNS, *reserved)]
    if taken:
        raise ConfigError(
            f"by: {taken} cannot be a segment column: the metric frame uses "
            f"{', '.join((*RESERVED_COLUMNS, *reserved))} itself"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"by names a column twice: {list(names)}")
    return tuple(names)


def check_cost_roles(value: object) -> dict[str, tuple[str, ...]] | None:
    """``{role: [category, ...]}`` for the roles retention, acquisition and capex."""
    if value is None:
        return None
    roles = ("retention", "acquisition", "capex")
    if not isinstance(value, Mapping):
        raise ConfigError(f"cost_roles must map {', '.join(roles)} to lists of category names, not {value!r}")
    out = {}
    for role, categories in value.items():
        if role not in roles:
            raise UnknownNameError(f"unknown cost role {role!r}; roles are {sorted(roles)}")
        if (
            isinstance(categories, str)
            or not isinstance(categories, (list, tuple, set, frozenset))
            or not all(isinstance(c, str) for c in categories)
        ):
            raise ConfigError(f"cost_roles.{role} must be a list of category names, not {categories!r}")
        out[role] = tuple(categories)
    return out


def _scale_key(scale: object) -> tuple[float, float]:
    if isinstance(scale, tuple) and len(scale) == 2 and all(_is_number(x) for x in scale):
        low, high = float(scale[0]), float(scale[1])
    else:
        text = str(scale).strip()
        low_text, sep, high_text = text.partition("-")
        if text.startswith("-"):  # a negative minimum: "-2-2"
            rest_low, sep, high_text = text[1:].partition("-")
            low_text = "-" + rest_low
        try:
            low, high = float(low_text), float(high_text)
        except ValueError:
            raise ConfigError(f"csat_thresholds key {scale!r} is not 'min-max' (e.g. '1-5')") from None
        if not sep:
            raise ConfigError(f"csat_thresholds key {scale!r} is not 'min-max' (e.g. '1-5')")
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ConfigError(f"csat_thresholds key {scale!r}: the scale must run from a lower to a higher number")
    return low, high


def check_csat_thresholds(value: object) -> dict[tuple[float, float], float] | None:
    """``{"1-5": 4}`` or ``{(1, 5): 4}``: the positive threshold of each scale, inside the scale."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"csat_thresholds must map scales ('1-5') to thresholds, not {value!r}")
    out = {}
    for scale, threshold in value.items():
        low, high = _scale_key(scale)
        out[(low, high)] = check_number(f"csat_thresholds[{scale!r}]", threshold, low=low, high=high)
    return out


def check_sla_targets(value: object, name: str = "sla_targets") -> dict[str, float] | None:
    """``{priority: target}`` (minutes for first response, hours for resolution), each positive and finite."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must map priorities to targets, not {value!r}")
    return {
        str(priority): check_number(f"{name}[{priority!r}]", minutes, low=0, low_open=True)
        for priority, minutes in value.items()
    }


def check_bands(value: object) -> tuple[float, float]:
    """(red_below, green_from): two edges increasing strictly inside 0..100."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(x) for x in value):
        low, high = (float(x) for x in value)
        if 0 <= low < high <= 100:
            return low, high
    raise ConfigError(
        f"bands must be two edges (red below, green from) increasing strictly inside 0..100, "
        f"such as (40, 70), not {value!r}"
    )


def check_weights(value: object, components: Sequence[str]) -> dict[str, float] | None:
    """``{component: weight}``: known components, non-negative finite weights with a positive sum."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"weights must map components ({', '.join(components)}) to numbers, not {value!r}")
    unknown = sorted(set(map(str, value)) - set(components))
    if unknown:
        raise UnknownNameError(f"weights: unknown health component(s) {unknown}; components are {tuple(components)}")
    weights = {str(k): check_number(f"weights[{k!r}]", v, low=0) for k, v in value.items()}
    if sum(weights.values()) <= 0:
        raise ConfigError(f"weights must have a positive sum, not {dict(value)!r}")
    return weights


def check_known(name: str, given: Mapping[str, Any], known: Sequence[str]) -> None:
    """No keyword outside ``known``."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise UnknownNameError(f"{name}: unknown option(s) {unknown} (known: {', '.join(sorted(known))})")
