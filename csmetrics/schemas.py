"""pandera models of the seven input tables and of the output metric frame.

The models are the contract of METRICS.md §1 and §3. Cross-column rules are
registered check methods (``pandera.extensions.register_check_method``) so that
they survive ``to_yaml``; the YAML contracts under ``schemas/`` are exported from
these classes by ``csmetrics schemas export`` and a test keeps them in sync.

Type coercion is not done here but in :mod:`csmetrics.validate`, which records
every value that cannot be coerced as a failure of its row; the models then see
well-typed columns and check the rules.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pandera.extensions as extensions
import pandera.pandas as pa
from pandera.typing import Series

__all__ = [
    "AS_OF_COLUMNS",
    "BIG_TABLES",
    "DIMENSIONS",
    "BILLING_KINDS",
    "Billing",
    "CXI_COMPONENTS",
    "Costs",
    "Customers",
    "DEFAULT_SCALES",
    "Events",
    "FREQS",
    "Fx",
    "MAX_AMOUNT",
    "MAX_SECONDS",
    "MetricFrame",
    "SURVEY_TYPES",
    "Surveys",
    "TABLES",
    "Tickets",
    "finite_or_nan",
    "integer_score_0_10",
    "known_values_for_survey",
    "not_before",
    "required_for_kinds",
    "score_within_scale",
    "strictly_after",
    "survey_scale",
    "value_codes",
    "values_in",
    "tz_aware_timestamp",
    "unique_together",
    "whole_number",
]

#: The input tables, in the order they are validated and reported.
TABLES = ("events", "tickets", "surveys", "billing", "customers", "costs", "fx")
#: The tables a partitioned engine keeps distributed; the others are small and held in pandas.
BIG_TABLES = ("events", "tickets", "surveys", "billing")

#: Low-cardinality text columns ("dimensions") that may arrive dictionary-encoded (pandas categoricals,
#: e.g. from Parquet) and stay so through validation: the families read their codes instead of hashing
#: each row's text (issue 14). Values and outputs are the same as for plain text.
DIMENSIONS = {
    "events": ("event",),
    "tickets": ("channel", "priority"),
    "surveys": ("survey", "component", "touchpoint"),
    "billing": ("kind", "currency", "plan"),
}
#: timestamp columns whose latest value sets a table's as_of
AS_OF_COLUMNS: dict[str, tuple[str, ...]] = {
    "events": ("timestamp",),
    "tickets": ("created_at", "first_response_at", "resolved_at"),
    "surveys": ("responded_at", "sent_at"),
    "billing": ("service_start", "invoiced_at"),
    "costs": ("incurred_at",),
}
SURVEY_TYPES = ("nps", "csat", "ces", "cxi")
BILLING_KINDS = ("recurring", "one_time", "refund")
CXI_COMPONENTS = ("effort", "empathy", "understanding", "efficiency")
FREQS = ("D", "W", "M", "Q", "Y")

#: Default answer scale of each survey type when the row gives none.
DEFAULT_SCALES: dict[str, tuple[float, float]] = {
    "nps": (0.0, 10.0),
    "csat": (1.0, 5.0),
    "ces": (1.0, 7.0),
    "cxi": (1.0, 5.0),
}

_UTC = {"unit": "ns", "tz": "UTC"}
#: The largest billing or cost amount in absolute value (METRICS.md §16): money is exact in 1e-4 units.
MAX_AMOUNT = 1e11
#: csmetrics.periods.NAT (periods imports options, which imports this module)
_NAT = np.iinfo(np.int64).min

#: The longest duration in seconds (about 31.7 years): sums over a billion rows stay finite and exact enough.
MAX_SECONDS = 1e9


# --------------------------------------------------------------------------
# Registered cross-column checks. Each tolerates absent optional columns.
# --------------------------------------------------------------------------
@extensions.register_check_method(statistics=["columns", "reference"], supported_types=pd.DataFrame)
def not_before(df: pd.DataFrame, *, columns: list[str], reference: str) -> pd.Series:
    """Each of ``columns`` is null or at/after ``reference`` (absent columns pass)."""
    ok = np.ones(len(df), dtype=bool)
    if reference in df:
        for column in columns:
            if column in df:
                ok &= ~_earlier(df[column], df[reference])
    return pd.Series(ok, index=df.index)


def _earlier(values: pd.Series, reference: pd.Series, or_equal: bool = False) -> np.ndarray:
    """``values < reference`` (``<=``: ``or_equal``) per row, False where either is null: on the int64
    nanoseconds of two timestamp columns of one dtype (NaT is the smallest int64: a value is never
    before a NaT reference), else pandas' comparison."""
    a, b = getattr(values.array, "asi8", None), getattr(reference.array, "asi8", None)
    if a is None or b is None or values.dtype != reference.dtype:
        compared = (values <= reference) if or_equal else (values < reference)
        return compared.fillna(False).to_numpy(dtype=bool)
    return ((a <= b) if or_equal else (a < b)) & (a != _NAT)


def _is_value(values: pd.Series, value: str) -> np.ndarray:
    """``values == value`` per row, False for nulls; a categorical compares its codes."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        categories = values.cat.categories
        if value not in categories:
            return np.zeros(len(values), dtype=bool)
        return np.asarray(values.cat.codes) == categories.get_loc(value)
    return (values == value).fillna(False).to_numpy(dtype=bool)


def values_in(values: pd.Series, allowed: list[str], null: bool = False) -> np.ndarray:
    """``values.isin(allowed)`` per row, ``null`` for null values; a categorical looks its few
    categories up, not its rows."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        known = np.asarray(values.cat.categories.isin(allowed), dtype=bool)
        codes = np.asarray(values.cat.codes)
        if known.all():  # every category allowed (the usual case): only the nulls can differ
            return np.ones(len(codes), dtype=bool) if null else codes >= 0
        return np.append(known, null)[codes]  # code -1: null
    found = values.isin(allowed).to_numpy(dtype=bool)
    return (found | values.isna().to_numpy(dtype=bool)) if null else found


@extensions.register_check_method(statistics=["columns"], supported_types=pd.DataFrame)
def unique_together(df: pd.DataFrame, *, columns: list[str]) -> pd.Series:
    """No two rows share the same values of ``columns``."""
    return ~df.duplicated(columns, keep=False)


@extensions.register_check_method(statistics=[], supported_types=pd.Series)
def tz_aware_timestamp(series: pd.Series) -> bool:
    """A timezone-aware datetime column (period starts in the report time zone)."""
    return isinstance(series.dtype, pd.DatetimeTZDtype)


@extensions.register_check_method(statistics=[], supported_types=pd.DataFrame)
def finite_or_nan(df: pd.DataFrame) -> pd.Series:
    """value, numerator, denominator and interval bounds are finite or NaN, never inf."""
    cols = [c for c in ("value", "numerator", "denominator", "ci_low", "ci_high") if c in df]
    values = df[cols].to_numpy(dtype=float)
    return pd.Series(~np.isinf(values).any(axis=1), index=df.index)


@extensions.register_check_method(statistics=["column", "reference"], supported_types=pd.DataFrame)
def strictly_after(df: pd.DataFrame, *, column: str, reference: str) -> pd.Series:
    """``column`` is null or strictly after ``reference`` (service_end > service_start)."""
    if column not in df or reference not in df:
        return pd.Series(True, index=df.index)
    return pd.Series(~_earlier(df[column], df[reference], or_equal=True), index=df.index)


@extensions.register_check_method(statistics=["kind_column", "required", "unless"], supported_types=pd.DataFrame)
def required_for_kinds(
    df: pd.DataFrame, *, kind_column: str, required: dict[str, list[str]], unless: dict[str, str]
) -> pd.Series:
    """Each column of ``required`` is non-null where ``kind_column`` is one of its kinds, unless
    the row has the column ``unless`` names for it (service_end may be null with interval_months, §17)."""
    ok = np.ones(len(df), dtype=bool)
    for column, kinds in required.items():
        needed = values_in(df[kind_column], kinds)
        present = df[column].notna().to_numpy() if column in df else np.zeros(len(df), dtype=bool)
        other = unless.get(column)
        if other is not None and other in df:
            present = present | df[other].notna().to_numpy()
        ok &= ~needed | present
    return pd.Series(ok, index=df.index)


@extensions.register_check_method(statistics=[], supported_types=pd.Series)
def whole_number(series: pd.Series) -> pd.Series:
    """Null or a whole number (counts stored as float so that they can be null)."""
    values = series.to_numpy(dtype=float, na_value=np.nan)
    return pd.Series(np.isnan(values) | (values == np.floor(values)), index=series.index)


@extensions.register_check_method(statistics=["survey"], supported_types=pd.DataFrame)
def integer_score_0_10(df: pd.DataFrame, *, survey: str) -> pd.Series:
    """Answers of ``survey`` are whole numbers 0..10 (NPS)."""
    rows = np.flatnonzero(_is_value(df["survey"], survey))
    score = df["score"].to_numpy(dtype=float, na_value=np.nan)[rows]
    with np.errstate(invalid="ignore"):
        bad = ((score < 0) | (score > 10) | (score != np.floor(score))) & ~np.isnan(score)  # NaN: no answer
    ok = np.ones(len(df), dtype=bool)
    ok[rows[bad]] = False
    return pd.Series(ok, index=df.index)


@extensions.register_check_method(statistics=[], supported_types=pd.DataFrame)
def score_within_scale(df: pd.DataFrame) -> pd.Series:
    """score lies in [scale_min, scale_max]; missing bounds take the survey's default scale."""
    low, high = survey_scale(df)
    score = df["score"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        ok = np.isnan(score) | ((score >= low) & (score <= high))
    return pd.Series(ok, index=df.index)


@extensions.register_check_method(statistics=["column", "survey", "allowed"], supported_types=pd.DataFrame)
def known_values_for_survey(df: pd.DataFrame, *, column: str, survey: str, allowed: list[str]) -> pd.Series:
    """Rows of ``survey`` carry one of ``allowed`` in ``column`` (CXI components)."""
    is_survey = _is_value(df["survey"], survey)
    if column not in df:
        return pd.Series(~is_survey, index=df.index)
    return pd.Series(~is_survey | values_in(df[column], allowed), index=df.index)


def survey_scale(surveys: pd.DataFrame, factorized: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-row (scale_min, scale_max) with each survey type's default filled in
    (``factorized``: ``value_codes(surveys["survey"])`` when the caller has it)."""
    codes, names = factorized or value_codes(surveys["survey"])  # a few survey types: look their scales up once
    lows = np.array([DEFAULT_SCALES.get(name, (np.nan, np.nan))[0] for name in names] + [np.nan])
    highs = np.array([DEFAULT_SCALES.get(name, (np.nan, np.nan))[1] for name in names] + [np.nan])
    return _filled(surveys, "scale_min", lows, codes), _filled(surveys, "scale_max", highs, codes)


def value_codes(values: pd.Series) -> tuple[np.ndarray, Any]:
    """(code per row, -1 for null; the distinct values): a categorical's own codes and categories (no
    hashing of the rows), else ``pd.factorize``."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return np.asarray(values.cat.codes), values.cat.categories
    return pd.factorize(values)


def _filled(df: pd.DataFrame, column: str, defaults: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The float column with each row's default (``defaults[codes]``) where it is missing."""
    if column not in df:
        return defaults[codes]
    values = df[column]
    if values.dtype == np.float64:
        given = values.to_numpy()
    else:
        given = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    missing = np.isnan(given)
    if not missing.any():
        return given
    return np.where(missing, defaults[codes], given)


# --------------------------------------------------------------------------
# Input tables
# --------------------------------------------------------------------------
class _Base(pa.DataFrameModel):
    class Config:
        strict = False
        coerce = False


class Events(_Base):
    """Product usage events."""

    customer_id: Series[Any] = pa.Field(nullable=False)
    timestamp: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs=_UTC)
    event: Series[str]
    user_id: Series[Any] | None = pa.Field(nullable=True)
    session_id: Series[Any] | None = pa.Field(nullable=True)
    duration_seconds: Series[float] | None = pa.Field(ge=0, le=MAX_SECONDS, nullable=True)


class Tickets(_Base):
    """Support cases of any channel."""

    ticket_id: Series[Any] = pa.Field(unique=True)
    customer_id: Series[Any] = pa.Field(nullable=False)
    created_at: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs=_UTC)
    channel: Series[str] | None = pa.Field(nullable=True)
    priority: Series[str] | None = pa.Field(nullable=True)
    agent_id: Series[Any] | None = pa.Field(nullable=True)
    first_response_at: Series[pd.DatetimeTZDtype] | None = pa.Field(dtype_kwargs=_UTC, nullable=True)
    resolved_at: Series[pd.DatetimeTZDtype] | None = pa.Field(dtype_kwargs=_UTC, nullable=True)
    contacts: Series[float] | None = pa.Field(ge=1, nullable=True, whole_number=())
    handle_seconds: Series[float] | None = pa.Field(ge=0, le=MAX_SECONDS, nullable=True)
    wait_seconds: Series[float] | None = pa.Field(ge=0, le=MAX_SECONDS, nullable=True)
    abandoned: Series[bool] | None
    reopens: Series[float] | None = pa.Field(ge=0, nullable=True, whole_number=())

    class Config:
        not_before = {"columns": ["first_response_at", "resolved_at"], "reference": "created_at"}


class Surveys(_Base):
    """One row per survey sent or answered; a null score is a send without an answer."""

    response_id: Series[Any] = pa.Field(unique=True)
    customer_id: Series[Any] = pa.Field(nullable=False)
    survey: Series[str] = pa.Field(isin=list(SURVEY_TYPES))
    score: Series[float] = pa.Field(nullable=True)
    sent_at: Series[pd.DatetimeTZDtype] | None = pa.Field(dtype_kwargs=_UTC, nullable=True)
    responded_at: Series[pd.DatetimeTZDtype] | None = pa.Field(dtype_kwargs=_UTC, nullable=True)
    scale_min: Series[float] | None = pa.Field(nullable=True)
    scale_max: Series[float] | None = pa.Field(nullable=True)
    component: Series[str] | None = pa.Field(nullable=True)
    touchpoint: Series[str] | None = pa.Field(nullable=True)
    ticket_id: Series[Any] | None = pa.Field(nullable=True)
    comment: Series[str] | None = pa.Field(nullable=True)

    class Config:
        integer_score_0_10 = {"survey": "nps"}
        score_within_scale: dict[str, Any] = {}
        not_before = {"columns": ["responded_at"], "reference": "sent_at"}
        known_values_for_survey = {"column": "component", "survey": "cxi", "allowed": list(CXI_COMPONENTS)}


class Billing(_Base):
    """Invoice line items."""

    customer_id: Series[Any] = pa.Field(nullable=False)
    kind: Series[str] = pa.Field(isin=list(BILLING_KINDS))
    amount: Series[float] = pa.Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT)
    service_start: Series[pd.DatetimeTZDtype] | None = pa.Field(dtype_kwargs=_UTC, nullable=True)
    service_end: Series[pd.DatetimeTZDtype] | None = pa.Field(dtype_kwargs=_UTC, nullable=True)
    invoiced_at: Series[pd.DatetimeTZDtype] | None = pa.Field(dtype_kwargs=_UTC, nullable=True)
    currency: Series[str] | None = pa.Field(nullable=True)
    plan: Series[str] | None = pa.Field(nullable=True)
    line_id: Series[Any] | None = pa.Field(nullable=True, unique=True)
    #: §17: months per billing interval of an open-ended subscription (amount = one interval's price)
    interval_months: Series[float] | None = pa.Field(ge=1, le=1200, nullable=True, whole_number=())

    class Config:
        strictly_after = {"column": "service_end", "reference": "service_start"}
        required_for_kinds = {
            "kind_column": "kind",
            "required": {
                "service_start": ["recurring"],
                "service_end": ["recurring"],
                "invoiced_at": ["one_time", "refund"],
            },
            "unless": {"service_end": "interval_months"},
        }


class Customers(_Base):
    """The customer dimension: one row per customer, any segment columns."""

    customer_id: Series[Any] = pa.Field(unique=True)
    signup_at: Series[pd.DatetimeTZDtype] | None = pa.Field(dtype_kwargs=_UTC, nullable=True)


class Costs(_Base):
    """Costs by category (retention, acquisition, capex ... as configured)."""

    incurred_at: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs=_UTC)
    category: Series[str]
    amount: Series[float] = pa.Field(ge=0, le=MAX_AMOUNT)


class Fx(_Base):
    """Exchange rates: units of the base currency per unit of ``currency``."""

    currency: Series[str]
    date: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs=_UTC)
    rate: Series[float] = pa.Field(gt=0)

    class Config:
        unique_together = {"columns": ["currency", "date"]}


class MetricFrame(pa.DataFrameModel):
    """The long output frame of METRICS.md §3 (segment columns are free)."""

    period: Series[Any] = pa.Field(tz_aware_timestamp=())
    freq: Series[str] = pa.Field(isin=list(FREQS))
    metric: Series[str]
    value: Series[float] = pa.Field(nullable=True)
    numerator: Series[float] = pa.Field(nullable=True)
    denominator: Series[float] = pa.Field(nullable=True)
    ci_low: Series[float] = pa.Field(nullable=True)
    ci_high: Series[float] = pa.Field(nullable=True)

    class Config:
        strict = False
        coerce = False
        finite_or_nan: dict[str, Any] = {}
