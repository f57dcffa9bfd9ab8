"""Periods: integer period codes in a time zone, spines, as_of, period-end instants.

Every family buckets rows into periods through :func:`period_codes`, which turns
UTC instants into integer codes (days, Monday weeks, months, quarters or years
since 1970 of the local wall clock in ``tz``). Codes are cheap to bincount and
to shift; :class:`Spine` maps them back to period-start labels and to the
period-end instant that stock metrics (MRR, backlog, active customers) snapshot:
the last instant before the next period starts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from csmetrics.options import ConfigError, check_as_of, check_freq

__all__ = [
    "NAT",
    "Spine",
    "check_freq",
    "instants",
    "code_ends_ns",
    "code_starts",
    "local_ns",
    "make_spine",
    "month_first_days",
    "month_index",
    "period_codes",
    "resolve_as_of",
    "to_utc",
]

_NS_PER_DAY = 86_400 * 10**9
#: The int64 value of NaT: a missing instant in the int64 nanosecond arrays every family works on.
NAT = np.iinfo(np.int64).min


def instants(column: pd.Series) -> np.ndarray:
    """UTC nanoseconds of a validated timestamp column (NaT -> NAT), without copying."""
    return np.asarray(column.array.asi8 if hasattr(column.array, "asi8") else pd.DatetimeIndex(column).asi8)


def to_utc(value: object, name: str = "timestamp") -> pd.Timestamp | None:
    """A timestamp-like as a UTC Timestamp (naive taken as UTC); None stays None; a value
    that is no timestamp, or lies outside 1677-2262, is a ConfigError naming ``name``."""
    return check_as_of(value, name)


def local_ns(instants: pd.Series | pd.DatetimeIndex | np.ndarray, tz: str = "UTC") -> np.ndarray:
    """Local wall-clock nanoseconds since 1970 of UTC instants (NaT -> int64 min)."""
    if isinstance(instants, np.ndarray) and instants.dtype == np.int64:
        if tz == "UTC":
            return instants
        instants = pd.DatetimeIndex(instants.view("M8[ns]"), tz="UTC")
    index = pd.DatetimeIndex(instants)
    if index.tz is None:
        index = index.tz_localize("UTC")
    if tz != "UTC":
        index = index.tz_convert(tz).tz_localize(None)
    return index.as_unit("ns").asi8


def period_codes(instants: pd.Series | pd.DatetimeIndex | np.ndarray, freq: str, tz: str = "UTC") -> np.ndarray:
    """Integer period code of each instant; NaT gives int64 min.

    Examples
    --------
    >>> import pandas as pd
    >>> ts = pd.Series(pd.to_datetime(["2024-01-31 23:30", "2024-02-01 00:00"], utc=True))
    >>> period_codes(ts, "M").tolist()
    [648, 649]
    >>> period_codes(ts, "M", tz="Europe/Berlin").tolist()
    [649, 649]
    """
    freq = check_freq(freq)
    ns = local_ns(instants, tz)
    nat = ns == NAT
    days = np.floor_divide(ns, _NS_PER_DAY)
    if freq == "D":
        codes = days
    elif freq == "W":
        codes = np.floor_divide(days + 3, 7)  # 1970-01-01 was a Thursday
    else:
        codes = _day_lookup(days, nat, freq)
    codes = codes.astype(np.int64)
    codes[nat] = NAT
    return codes


def _day_lookup(days: np.ndarray, nat: np.ndarray, freq: str) -> np.ndarray:
    """Month/quarter/year code of each day, through a table over the days' range.

    Calendar conversion (datetime64[D] -> [M]) costs per element; a table over
    the few thousand distinct days of a data set makes it one integer gather.
    """
    valid = days[~nat]
    if len(valid) == 0:
        return np.zeros(len(days), dtype=np.int64)
    first, last = int(valid.min()), int(valid.max())
    table_days = np.arange(first, last + 1)
    months = table_days.astype("M8[D]").astype("M8[M]").astype(np.int64)
    table = {"M": months, "Q": np.floor_divide(months, 3), "Y": np.floor_divide(months, 12)}[freq]
    return table[np.clip(days - first, 0, last - first)]


def month_index(instants: np.ndarray) -> np.ndarray:
    """Calendar month (months since 1970-01, UTC) of UTC ns instants through a day table (NAT rows:
    an arbitrary month of the range; the caller masks them)."""
    instants = np.asarray(instants, dtype=np.int64)
    nat = instants == NAT
    return _day_lookup(np.floor_divide(instants, _NS_PER_DAY), nat, "M")


def day_calendar(days: list[np.ndarray], valid: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """For arrays of day numbers (days since 1970-01-01) of the same rows: each array's month (months
    since 1970-01), 0-based day of the month and the month's length, through one table over the days'
    range on the ``valid`` rows (other rows, e.g. NAT's, get arbitrary values: the caller masks them)."""
    picked = [d[valid] for d in days]
    if not any(len(d) for d in picked):
        zero = np.zeros(len(valid), dtype=np.int64)
        return [(zero, zero, zero + 1) for _ in days]
    first, last = min(int(d.min()) for d in picked), max(int(d.max()) for d in picked)
    table_days = np.arange(first, last + 1)
    months = table_days.astype("M8[D]").astype("M8[M]")
    starts = months.astype("M8[D]").astype(np.int64)
    length = (months + 1).astype("M8[D]").astype(np.int64) - starts
    month, day_of_month = months.astype(np.int64), table_days - starts
    out = []
    for d in days:
        at = np.clip(d - first, 0, last - first)
        out.append((month[at], day_of_month[at], length[at]))
    return out


def month_first_days(months: np.ndarray) -> np.ndarray:
    """Day number (days since 1970-01-01) of the first day of each month (months since 1970-01),
    through a table over their range: the calendar conversion once per distinct month."""
    months = np.asarray(months, dtype=np.int64)
    if len(months) == 0:
        return np.zeros(0, dtype=np.int64)
    low, high = int(months.min()), int(months.max())
    table = np.arange(low, high + 1).astype("M8[M]").astype("M8[D]").astype(np.int64)
    return table[months - low]


def code_starts_local(codes: np.ndarray, freq: str) -> np.ndarray:
    """Local wall-clock start (datetime64[ns], naive) of each period code."""
    codes = np.asarray(codes, dtype=np.int64)
    if freq == "D":
        return codes.astype("M8[D]").astype("M8[ns]")
    if freq == "W":
        return (codes * 7 - 3).astype("M8[D]").astype("M8[ns]")
    months = {"M": codes, "Q": codes * 3, "Y": codes * 12}[freq]
    return months.astype("M8[M]").astype("M8[ns]")


def code_starts(codes: np.ndarray, freq: str, tz: str = "UTC") -> pd.DatetimeIndex:
    """Tz-aware start instant (label) of each period code."""
    local = pd.DatetimeIndex(code_starts_local(codes, freq))
    return local.tz_localize(tz, ambiguous=True, nonexistent="shift_forward")


def code_ends_ns(codes: np.ndarray, freq: str, tz: str = "UTC") -> np.ndarray:
    """UTC ns of the next period's start: the stock snapshot covers instants before it."""
    return code_starts(np.asarray(codes, dtype=np.int64) + 1, freq, tz).tz_convert("UTC").asi8


@dataclass(frozen=True)
class Spine:
    """The reported periods: codes ``first..last`` of ``freq`` in ``tz``.

    ``as_of`` is the extraction instant (UTC); the period that holds it is
    partial when as_of is before that period's end.
    """

    freq: str
    tz: str
    first: int
    last: int
    as_of: pd.Timestamp

    @property
    def codes(self) -> np.ndarray:
        return np.arange(self.first, self.last + 1, dtype=np.int64)

    @property
    def n(self) -> int:
        return self.last - self.first + 1

    @property
    def starts(self) -> pd.DatetimeIndex:
        return code_starts(self.codes, self.freq, self.tz)

    @property
    def ends_ns(self) -> np.ndarray:
        """Snapshot instant per period: the next start, capped just after as_of."""
        return np.minimum(code_ends_ns(self.codes, self.freq, self.tz), self.as_of.value + 1)

    @property
    def partial_period(self) -> pd.Timestamp | None:
        """Start of the last period if as_of falls before its end, else None."""
        end = code_ends_ns(np.array([self.last]), self.freq, self.tz)[0]
        return self.starts[-1] if self.as_of.value + 1 < end else None

    @property
    def as_of_index(self) -> int:
        """Position of the period that holds as_of (n - 1 when the spine runs through it)."""
        return int(self.index(period_codes(np.array([self.as_of.value]), self.freq, self.tz))[0])

    def index(self, codes: np.ndarray) -> np.ndarray:
        """Position of each code in the spine (may fall outside 0..n-1)."""
        return np.asarray(codes, dtype=np.int64) - self.first

    def positions(self, instants: np.ndarray) -> np.ndarray:
        """Spine position of each UTC instant's period, -1 for NaT and instants before the first period,
        ``n`` for those after the last: ``clip(index(period_codes(...)), -1, n)`` in one division and
        one gather from a table over the spine's local days (no calendar arithmetic per row)."""
        day = local_ns(instants, self.tz) // _NS_PER_DAY
        day -= _first_day(self) - 1
        return _day_positions(self).take(day, mode="clip")  # clip: earlier days to -1, later ones to n


@functools.lru_cache(maxsize=64)
def _first_day(spine: Spine) -> int:
    return int(code_starts_local(np.array([spine.first]), spine.freq).astype(np.int64)[0] // _NS_PER_DAY)


@functools.lru_cache(maxsize=64)
def _day_positions(spine: Spine) -> np.ndarray:
    """-1, the position of each local day from the first period's first day to the last period's last
    day, then ``n`` for any later day (the gather's index is clipped to the table's end)."""
    first = _first_day(spine)
    after = int(code_starts_local(np.array([spine.last + 1]), spine.freq).astype(np.int64)[0] // _NS_PER_DAY)
    days = np.arange(first, after, dtype=np.int64) * _NS_PER_DAY
    inside = period_codes(days, spine.freq, "UTC") - spine.first  # local days: no zone arithmetic
    table = np.concatenate([[-1], inside, [spine.n]]).astype(np.int64)
    table.setflags(write=False)
    return table


def make_spine(
    data_codes: np.ndarray,
    freq: str,
    tz: str,
    as_of: pd.Timestamp,
    start: object = None,
    end: object = None,
) -> Spine:
    """Periods between the first and last period with data, or the explicit start/end.

    No period after as_of's is reported. With no data and no start, the spine is
    the single period of as_of.
    """
    freq = check_freq(freq)
    as_of_code = int(period_codes(pd.DatetimeIndex([as_of]), freq, tz)[0])
    valid = data_codes[data_codes != NAT] if len(data_codes) else data_codes
    first = int(valid.min()) if len(valid) else as_of_code
    last = int(valid.max()) if len(valid) else as_of_code
    if start is not None:
        first = int(period_codes(pd.DatetimeIndex([to_utc(start, "start")]), freq, tz)[0])
    if end is not None:
        last = int(period_codes(pd.DatetimeIndex([to_utc(end, "end")]), freq, tz)[0])
    last = min(last, as_of_code)
    first = min(first, last)
    return Spine(freq=freq, tz=tz, first=first, last=last, as_of=as_of)


def resolve_as_of(as_of: object, *candidates: pd.Series | None) -> pd.Timestamp:
    """as_of as given, else the latest timestamp among the candidate columns."""
    if as_of is not None:
        return to_utc(as_of, "as_of")
    latest = [c.max() for c in candidates if c is not None and len(c) and c.notna().any()]
    if not latest:
        raise ConfigError("as_of cannot be inferred from an empty table; pass as_of=")
    return to_utc(max(latest))
