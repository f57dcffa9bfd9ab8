"""Business hours (METRICS.md §11): a weekly schedule in a time zone, holidays, and business minutes.

Business time between two instants is the real time between them whose local wall-clock time lies
in an open interval of its local date (not a holiday). :func:`business_minutes` computes it for
arrays of instants without a loop per row:

1. every open interval of every local date in the range becomes the set of *real* instants whose
   wall-clock time is inside it: for each stretch of constant UTC offset (a loop per offset change,
   a few a year), the interval shifted by that offset and clipped to the stretch. So a spring-forward
   interval is an hour shorter, a boundary in the skipped hour takes effect after the gap, and a
   fall-back interval counts its repeated hour twice;
2. those segments are disjoint and sorted; a cumulative sum gives the open time before each;
3. each instant's open time since the origin is one ``searchsorted``; the business time of a pair is
   the difference.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from csmetrics.options import ConfigError, UnknownNameError, check_tz
from csmetrics.periods import NAT

__all__ = ["DAYS", "SCHEDULE_COLUMNS", "Schedule", "business_minutes", "schedules_from_tables"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NS_MINUTE = 60 * 10**9
_NS_DAY = 86_400 * 10**9
#: The schedules table (schedules.parquet in DATA_DIR, written by the Zendesk adapter): one row per open
#: interval of a weekday; ``default`` flags the schedule of tickets without one of their own.
SCHEDULE_COLUMNS = ("schedule_id", "name", "tz", "day", "open", "close", "default")
_INTERVAL = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def _parse_interval(text: object, day: str) -> tuple[int, int]:
    """'09:00-17:00' as (start, end) minutes of the day; 24:00 is the end of the day."""
    match = _INTERVAL.match(text) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(f"business_hours.{day}: {text!r} is not an interval 'HH:MM-HH:MM' (e.g. '09:00-17:00')")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if h1 > 23 or m1 > 59 or m2 > 59 or end > 24 * 60:
        raise ConfigError(f"business_hours.{day}: {text!r} is not a time of day (00:00 to 24:00)")
    if end <= start:
        raise ConfigError(
            f"business_hours.{day}: {text!r} ends before it starts or crosses midnight; "
            "write it as two intervals (e.g. '22:00-24:00' and the next day '00:00-06:00')"
        )
    return start, end


@dataclass(frozen=True)
class Schedule:
    """Weekly open intervals in local wall-clock time of ``tz``, plus holidays (closed all day, local).

    Parameters
    ----------
    tz : str
        An IANA time zone, e.g. "Europe/Berlin".
    hours : mapping
        Day key (mon ... sun) -> list of "HH:MM-HH:MM" intervals; a missing day is closed. An interval
        may not cross midnight, and a day's intervals may not overlap.
    holidays : iterable of dates, or mapping, optional
        Local dates closed all day ("2024-12-25"), or a country's public holidays from the ``holidays``
        package (extra ``csmetrics[holidays]``): ``{"country": "DE", "years": [2024], "subdiv": "BY"}``.

    Examples
    --------
    >>> from csmetrics import Schedule, business_minutes
    >>> import pandas as pd
    >>> week = Schedule(tz="Europe/Berlin", hours={d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")})
    >>> friday, monday = pd.Timestamp("2024-03-08 16:30", tz="Europe/Berlin"), pd.Timestamp("2024-03-11 09:15", tz="Europe/Berlin")
    >>> float(business_minutes([friday], [monday], week)[0])
    45.0
    """

    tz: str
    hours: Mapping[str, Sequence[str]]
    holidays: tuple[dt.date, ...] = ()

    def __init__(self, tz: str, hours: Mapping[str, Sequence[str]], holidays: Iterable[object] = ()):
        object.__setattr__(self, "tz", check_tz(tz, "business_hours.tz"))
        if not isinstance(hours, Mapping):
            raise ConfigError(
                f"business_hours: hours must map day keys ({', '.join(DAYS)}) to intervals, not {hours!r}"
            )
        unknown = sorted(set(map(str, hours)) - set(DAYS))
        if unknown:
            raise UnknownNameError(f"business_hours: unknown day key(s) {unknown}; day keys are {', '.join(DAYS)}")
        parsed: dict[str, tuple[tuple[int, int], ...]] = {}
        for day in DAYS:
            intervals = hours.get(day, ())
            if isinstance(intervals, str):
                intervals = [intervals]
            spans = [_parse_interval(text, day) for text in intervals]
            for (_, end), (start, _) in zip(spans, spans[1:]):
                if start < end:
                    raise ConfigError(f"business_hours.{day}: intervals {list(intervals)} overlap or are out of order")
            parsed[day] = tuple(spans)
        object.__setattr__(self, "hours", {day: tuple(hours.get(day, ())) for day in DAYS if hours.get(day)})
        object.__setattr__(self, "_minutes", parsed)
        days = []
        for value in _country_holidays(holidays) if isinstance(holidays, Mapping) else holidays:
            try:
                days.append(pd.Timestamp(value).date())
            except (ValueError, TypeError):
                raise ConfigError(f"business_hours.holidays: {value!r} is not a date") from None
        object.__setattr__(self, "holidays", tuple(sorted(set(days))))

    @classmethod
    def from_dict(cls, table: Mapping[str, Any]) -> Schedule:
        """The ``[business_hours]`` table of csmetrics.toml: tz, mon ... sun, holidays."""
        if not isinstance(table, Mapping):
            raise ConfigError(f"business_hours must be a table (tz, mon ... sun, holidays), not {table!r}")
        unknown = sorted(set(table) - {"tz", "holidays", *DAYS})
        if unknown:
            raise UnknownNameError(f"business_hours: unknown key(s) {unknown} (known: tz, holidays, {', '.join(DAYS)})")
        if "tz" not in table:
            raise ConfigError('business_hours: tz is required (e.g. tz = "Europe/Berlin")')
        return cls(table["tz"], {d: table[d] for d in DAYS if d in table}, table.get("holidays", ()))

    def open_minutes(self, day: str) -> tuple[tuple[int, int], ...]:
        """A weekday's open intervals as (start, end) minutes of the day."""
        return self._minutes[day]  # type: ignore[attr-defined]

    def segments(self, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
        """The open stretches of real time (UTC ns, disjoint, sorted) covering ``[first, last]``."""
        zone = self.tz
        pad = 2 * _NS_DAY
        local = pd.DatetimeIndex(np.array([first - pad, last + pad]).view("M8[ns]"), tz="UTC").tz_convert(zone)
        dates = pd.date_range(local[0].date(), local[1].date(), freq="D")
        weekday = dates.day_of_week.to_numpy()
        day_ns = dates.as_unit("ns").asi8  # local midnight as naive wall-clock ns
        closed = pd.Index(dates.date).isin(self.holidays) if self.holidays else np.zeros(len(dates), dtype=bool)
        starts, ends = [], []
        for index, day in enumerate(DAYS):
            mine = (weekday == index) & ~closed
            for start, end in self.open_minutes(day):
                starts.append(day_ns[mine] + start * _NS_MINUTE)
                ends.append(day_ns[mine] + end * _NS_MINUTE)
        if not starts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        wall_start, wall_end = np.concatenate(starts), np.concatenate(ends)
        regimes = _offset_regimes(zone, first - pad, last + pad)
        real_starts, real_ends = [], []
        for r0, r1, offset in regimes:  # a few offset changes a year
            s = np.maximum(wall_start - offset, r0)
            e = np.minimum(wall_end - offset, r1)
            keep = e > s
            real_starts.append(s[keep])
            real_ends.append(e[keep])
        seg_start, seg_end = np.concatenate(real_starts), np.concatenate(real_ends)
        order = np.argsort(seg_start, kind="stable")
        return seg_start[order], seg_end[order]


def schedules_from_tables(
    table: pd.DataFrame, holidays: pd.DataFrame | None = None
) -> tuple[dict[str, Schedule], str | None]:
    """The schedules of a schedules table (:data:`SCHEDULE_COLUMNS`) and a holidays table (schedule_id,
    date): ({schedule_id: Schedule}, the default schedule's id or None)."""
    missing = [c for c in SCHEDULE_COLUMNS if c not in table.columns and c != "default"]
    if missing:
        raise ConfigError(f"schedules: missing column(s) {missing} (columns: {', '.join(SCHEDULE_COLUMNS)})")
    if holidays is not None and not {"schedule_id", "date"} <= set(holidays.columns):
        raise ConfigError("holidays: columns schedule_id and date are required")
    ids = table["schedule_id"].astype(str)
    out = {}
    for key, group in table.groupby(ids, sort=True):
        zones = group["tz"].astype(str).unique()
        if len(zones) != 1:
            raise ConfigError(f"schedules: schedule {key!r} has several time zones {sorted(zones)}")
        hours: dict[str, list[str]] = {}
        for day, open_, close in zip(group["day"].astype(str), group["open"].astype(str), group["close"].astype(str)):
            hours.setdefault(day, []).append(f"{open_}-{close}")
        closed = [] if holidays is None else holidays.loc[holidays["schedule_id"].astype(str) == key, "date"]
        out[str(key)] = Schedule(tz=str(zones[0]), hours={d: sorted(v) for d, v in hours.items()}, holidays=closed)
    flagged = ids[table["default"].astype(bool)].unique() if "default" in table.columns else []
    if len(flagged) > 1:
        raise ConfigError(f"schedules: several default schedules {sorted(flagged)}; flag one")
    return out, (str(flagged[0]) if len(flagged) else None)


def _country_holidays(spec: Mapping[str, Any]) -> list[dt.date]:
    """``{"country": "DE", "years": [2024, 2025], "subdiv": "BY"}``: the public holidays of the
    ``holidays`` package (the optional extra ``csmetrics[holidays]``)."""
    unknown = sorted(set(spec) - {"country", "years", "subdiv"})
    if unknown or "country" not in spec or "years" not in spec:
        raise ConfigError("business_hours.holidays as a table takes country and years (and subdiv), "
                          f"e.g. {{country = \"DE\", years = [2024, 2025]}}; got {dict(spec)!r}")  # fmt: skip
    try:
        import holidays as holidays_package  # optional: the holidays extra
    except ImportError:  # pragma: no cover - the extra is installed in the test environment
        raise ConfigError("country holidays need the holidays extra: pip install 'csmetrics[holidays]'") from None
    years = spec["years"]
    years = [years] if isinstance(years, int) else list(years)
    try:
        found = holidays_package.country_holidays(spec["country"], subdiv=spec.get("subdiv"), years=years)
    except (NotImplementedError, KeyError) as err:
        raise ConfigError(f"business_hours.holidays: {err}") from None
    return sorted(found)


def _offset_regimes(zone: str, first: int, last: int) -> list[tuple[int, int, int]]:
    """Stretches [r0, r1) of UTC ns with one UTC offset (ns) each, covering [first, last]."""
    hours = np.arange(first - first % 3_600_000_000_000, last + 3_600_000_000_000, 3_600_000_000_000, dtype=np.int64)
    offsets = _offsets(zone, hours)
    change = np.flatnonzero(offsets[1:] != offsets[:-1])
    bounds = [int(hours[0])]
    for k in change:  # the exact instant of each change, to the minute, inside its hour
        minutes = hours[k] + np.arange(61, dtype=np.int64) * _NS_MINUTE
        found = _offsets(zone, minutes)
        bounds.append(int(minutes[int(np.flatnonzero(found != found[0])[0])]))
    bounds.append(int(hours[-1]) + 1)
    return [(bounds[i], bounds[i + 1], int(_offsets(zone, np.array([bounds[i]]))[0])) for i in range(len(bounds) - 1)]


def _offsets(zone: str, utc_ns: np.ndarray) -> np.ndarray:
    index = pd.DatetimeIndex(utc_ns.view("M8[ns]"), tz="UTC").tz_convert(zone)
    return np.asarray(index.tz_localize(None).asi8) - utc_ns


def _as_ns(values: Any, name: str) -> np.ndarray:
    """UTC nanoseconds of timestamp-likes (naive taken as UTC; NaT -> NAT)."""
    series = (
        values if isinstance(values, pd.Series) else pd.Series(list(values) if not hasattr(values, "dtype") else values)
    )
    try:
        if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(series.dtype):
            parsed = pd.to_datetime(series, utc=True)
        else:
            parsed = pd.to_datetime(series.astype(object), utc=True, format="ISO8601")
        return np.asarray(pd.DatetimeIndex(parsed).as_unit("ns").asi8)
    except (ValueError, TypeError, OverflowError) as err:
        raise ConfigError(
            f"business_minutes: {name} must hold timestamps ({' '.join(str(err).split())[:120]})"
        ) from None


def business_minutes(start: Any, end: Any, schedule: Schedule) -> np.ndarray:
    """Business minutes from each ``start`` to the matching ``end`` under ``schedule`` (float; NaN where
    either is missing or end < start).

    Parameters
    ----------
    start, end : array-like of timestamps
        Equal lengths; tz-aware instants, or naive ones taken as UTC.
    schedule : Schedule
        The open hours and holidays.

    Returns
    -------
    ndarray
        float64 minutes, elementwise.

    Examples
    --------
    >>> import pandas as pd
    >>> from csmetrics import Schedule, business_minutes
    >>> day = Schedule(tz="UTC", hours={"mon": ["09:00-12:00", "13:00-17:00"]})
    >>> business_minutes(["2024-03-04 11:00"], ["2024-03-04 14:00"], day).tolist()
    [120.0]
    """
    if not isinstance(schedule, Schedule):
        raise ConfigError(f"business_minutes needs a csmetrics.Schedule, not {type(schedule).__name__}")
    a, b = _as_ns(start, "start"), _as_ns(end, "end")
    if len(a) != len(b):
        raise ConfigError(f"business_minutes: start and end have different lengths ({len(a)} and {len(b)})")
    ok = (a != NAT) & (b != NAT) & (b >= a)
    out = np.full(len(a), np.nan)
    if not ok.any():
        return out
    seg_start, seg_end = schedule.segments(int(a[ok].min()), int(b[ok].max()))
    if not len(seg_start):
        out[ok] = 0.0
        return out
    before = np.concatenate([[0], np.cumsum(seg_end - seg_start)])
    out[ok] = (
        _open_before(b[ok], seg_start, seg_end, before) - _open_before(a[ok], seg_start, seg_end, before)
    ) / _NS_MINUTE
    return out


def _open_before(t: np.ndarray, seg_start: np.ndarray, seg_end: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Open time (ns) in the segments before each instant: whole segments, plus the part of the current one."""
    k = np.searchsorted(seg_start, t, side="right")  # segments starting at or before t
    last = np.maximum(k - 1, 0)
    inside = np.where(k > 0, np.minimum(t, seg_end[last]) - seg_start[last], 0)
    return before[np.maximum(k - 1, 0)] * (k > 0) + np.maximum(inside, 0)
