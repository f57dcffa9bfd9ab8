"""Validate input tables: coerce types, check every rule, raise or quarantine.

:func:`validate` coerces a table to the types of its model (ids stay integers or
become strings, timestamps become UTC), runs the pandera model lazily so that all
failures are found at once, and then either raises :class:`ValidationError` (a
message naming table, column, rule, number of rows and example values, plus the
full failure table) or, in quarantine mode, splits the input into the valid rows
(coerced) and the rejected rows (unchanged, with a ``reason``). A row is never
dropped silently: ``len(valid) + len(rejected) == len(df)``, index for index.

A missing required column or a table-level defect (mixed currencies with no fx
table) is an error in both modes: no row could be processed correctly.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.api.pandas import model as _builder
from pandera.engines import pandas_engine
from pandera.typing import Index, Series

from csmetrics import schemas
from csmetrics._compat import tune_allocator
from csmetrics.options import UnknownNameError
from csmetrics.periods import NAT

__all__ = [
    "FAILURE_COLUMNS",
    "MODELS",
    "OUT_OF_RANGE",
    "TABLES",
    "ValidationError",
    "coerce",
    "format_failures",
    "harmonize_ids",
    "required_columns",
    "resolve_base_currency",
    "schema_of",
    "table_error",
    "unique_columns",
    "validate",
    "validate_tables",
]

MODELS: dict[str, type[pa.DataFrameModel]] = {
    "events": schemas.Events,
    "tickets": schemas.Tickets,
    "surveys": schemas.Surveys,
    "billing": schemas.Billing,
    "customers": schemas.Customers,
    "costs": schemas.Costs,
    "fx": schemas.Fx,
}
TABLES = schemas.TABLES
assert tuple(MODELS) == TABLES

FAILURE_COLUMNS = ["table", "row", "column", "rule", "value"]
_ID_COLUMNS = {"customer_id", "ticket_id", "response_id", "line_id", "user_id", "session_id", "agent_id"}
_SCHEMAS: dict[str | tuple, pa.DataFrameSchema] = {}
_SCHEMA_LOCK = threading.Lock()


class ValidationError(ValueError):
    """Input that breaks the contract of METRICS.md §1.

    ``failures`` holds one row per (row, column, rule) with the offending value;
    ``table`` names the table.
    """

    errors: list[ValidationError]

    def __init__(self, table: str, failures: pd.DataFrame, *, message: str | None = None, rows: str = "rows"):
        self.table = table
        self.errors = [self]
        self.failures = failures.reset_index(drop=True)
        super().__init__(message or format_failures(table, self.failures, rows=rows))

    @classmethod
    def several(cls, errors: list[ValidationError]) -> ValidationError:
        """One error for every broken table of a run, with a summary line first."""
        tables = [e.table for e in errors]
        summary = f"{len(errors)} tables failed validation: " + ", ".join(
            f"{e.table} ({_scope(e.failures)})" for e in errors
        )
        failures = pd.concat([e.failures for e in errors], ignore_index=True)
        error = cls(",".join(tables), failures, message="\n".join([summary, *(str(e) for e in errors)]))
        error.errors = errors
        return error


def table_error(table: str, column: str, rule: str, value: object = None) -> ValidationError:
    """A table-level failure (no row can be processed correctly), in both modes."""
    failures = pd.DataFrame({"table": [table], "row": [None], "column": [column], "rule": [rule], "value": [value]})
    return ValidationError(table, failures[FAILURE_COLUMNS])


def schema_of(table: str) -> pa.DataFrameSchema:
    """The pandera schema of an input table (cached)."""
    if table not in MODELS:
        raise UnknownNameError(f"unknown table {table!r}; expected one of {', '.join(TABLES)}")
    with _SCHEMA_LOCK:
        if table not in _SCHEMAS:
            schema = _build_schema(MODELS[table])
            # dimensions are text or categorical text (coerce guarantees it): pandera checks their values only
            for name in schemas.DIMENSIONS.get(table, ()):
                schema = schema.update_column(name, dtype=None)
            _SCHEMAS[table] = schema
    return _SCHEMAS[table]


def _build_schema(model: type[pa.DataFrameModel]) -> pa.DataFrameSchema:
    """``model.to_schema()`` without the import of Dask, Modin and PySpark type modules that pandera's
    model builder makes to recognise their Series/Index annotations (0.5 s of the cold start when Dask
    is installed). csmetrics' models annotate pandas Series only, so the schema is the same."""
    saved = _builder.get_index_types, _builder.get_series_types
    _builder.get_index_types, _builder.get_series_types = (lambda: {Index}), (lambda: {Series})  # type: ignore[assignment]
    try:
        return model.to_schema()
    finally:
        _builder.get_index_types, _builder.get_series_types = saved


def _without_proven_unique(schema: pa.DataFrameSchema, df: pd.DataFrame, table: str) -> pa.DataFrameSchema:
    """The schema without the unique checks of integer columns that are strictly increasing
    (hence unique; sequential ids usually are): one comparison pass instead of a hash table."""
    proven = []
    for column in unique_columns(table):
        if column in df and pd.api.types.is_integer_dtype(df[column].dtype) and not df[column].hasnans:
            values = df[column].to_numpy()
            if (values[1:] > values[:-1]).all():
                proven.append(column)
    if not proven:
        return schema
    key = (table, tuple(proven))
    if key not in _SCHEMAS:
        _SCHEMAS[key] = schema.update_columns({column: {"unique": False} for column in proven})
    return _SCHEMAS[key]


def unique_columns(table: str) -> list[str]:
    """Columns whose values must be unique in the whole table (a partitioned engine checks them globally)."""
    return [name for name, col in schema_of(table).columns.items() if col.unique]


def required_columns(table: str) -> list[str]:
    """Columns that must be present in ``table``."""
    return [name for name, col in schema_of(table).columns.items() if col.required]


def validate(
    df: pd.DataFrame,
    table: str,
    *,
    quarantine: bool = False,
    fx: pd.DataFrame | None = None,
    base_currency: str | None = None,
    duplicated: Mapping[str, np.ndarray] | None = None,
    currencies: set[str] | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Coerce and validate one input table.

    Parameters
    ----------
    df : DataFrame
        The table as read.
    table : str
        One of events, tickets, surveys, billing, customers, costs, fx.
    quarantine : bool
        False: raise :class:`ValidationError` on any failure. True: return
        ``(valid, rejected)``.
    fx, base_currency
        For billing with several currencies: the (validated) fx table, and the
        base currency (default: the one billing currency fx has no rate for, if
        exactly one). Rows in a currency with no rate fail.
    duplicated, currencies
        For one partition of a larger table (the Dask engine): the values of
        unique columns that occur more than once in the whole table (their rows
        fail "unique" like duplicates inside the partition), and the table's
        distinct currencies.

    Examples
    --------
    >>> import pandas as pd, csmetrics
    >>> tickets = pd.DataFrame({"ticket_id": [1, 2], "customer_id": [7, 7],
    ...     "created_at": ["2024-01-01 09:00", "2024-01-02 10:00"],
    ...     "resolved_at": ["2024-01-01 12:00", "2024-01-01 08:00"]})
    >>> valid, rejected = csmetrics.validate(tickets, "tickets", quarantine=True)
    >>> len(valid), rejected["reason"].tolist()
    (1, ['resolved_at: not before created_at'])
    """
    tune_allocator()
    schema = schema_of(table)
    _check_frame(df, table)
    near = _case_variants(df, table)
    missing = [c for c in required_columns(table) if c not in df.columns]
    if missing:
        failures = pd.DataFrame(
            {
                "table": table,
                "row": None,
                "column": missing,
                "value": [near.get(c) for c in missing],
                "rule": [
                    f"required column is missing (found {near[c]!r}: names are case-sensitive)"
                    if c in near
                    else "required column is missing"
                    for c in missing
                ],
            }
        )
        raise ValidationError(table, failures[FAILURE_COLUMNS])
    for column, found in near.items():
        warnings.warn(
            f"{table}: column {found!r} is not read; did you mean {column!r}? (column names are case-sensitive)",
            UserWarning,
            stacklevel=2,
        )

    original_index = df.index
    coerced, failures = coerce(df.reset_index(drop=True), table)
    checked = _without_proven_unique(schema, coerced, table)
    if failures or not _passes(coerced, checked):  # some rule fails: pandera names every failure
        failures.append(_not_already_failed(_schema_failures(coerced, checked), failures))
    for column, values in (duplicated or {}).items():
        if column in coerced and len(values):
            positions = np.flatnonzero(coerced[column].isin(values).to_numpy(dtype=bool))
            failures.append(
                pd.DataFrame(
                    {
                        "row": positions,
                        "column": column,
                        "rule": _rule_text("field_uniqueness"),
                        "value": coerced[column].to_numpy(dtype=object)[positions],
                    }
                )
            )
    if table == "billing":
        failures.append(_currency_failures(coerced, fx, base_currency, currencies))
    if not any(len(f) for f in failures):  # valid: nothing to name or set aside
        coerced.index = original_index
        if not quarantine:
            return coerced
        return _narrow_ids(coerced, table), df.iloc[:0].assign(reason=pd.Series([], dtype=object))
    failure_table = _failure_table(table, failures, df.reset_index(drop=True))

    bad_positions = np.unique(failure_table["row"].to_numpy(dtype=np.int64))
    reasons = _reasons(failure_table, len(bad_positions))
    failure_table["row"] = original_index.take(failure_table["row"].to_numpy(dtype=np.int64))
    if not quarantine:
        if len(failure_table):
            raise ValidationError(table, failure_table, rows="CSV lines" if df.index.name == "csv_line" else "rows")
        coerced.index = original_index
        return coerced

    good = np.ones(len(df), dtype=bool)
    good[bad_positions] = False
    valid = _narrow_ids(coerced.loc[good], table)
    valid.index = original_index[good]
    rejected = df.iloc[bad_positions].copy()
    rejected["reason"] = reasons
    return valid, rejected


def _narrow_ids(valid: pd.DataFrame, table: str) -> pd.DataFrame:
    """Required integer ids that were nullable only because of rejected rows become int64 again."""
    for name, column in schema_of(table).columns.items():
        if (
            name in valid
            and column.required
            and isinstance(valid[name].dtype, pd.Int64Dtype)
            and not valid[name].hasnans
        ):
            valid = valid.assign(**{name: valid[name].astype("int64")})
    return valid


def _check_frame(df: object, table: str) -> None:
    """A DataFrame with unique string-like column labels."""
    if not isinstance(df, pd.DataFrame):
        raise table_error(table, "", "a pandas DataFrame", type(df).__name__)
    duplicated = df.columns[df.columns.duplicated()]
    if len(duplicated):
        failures = pd.DataFrame(
            {
                "table": table,
                "row": None,
                "column": [str(c) for c in dict.fromkeys(duplicated)],
                "rule": "unique column label",
                "value": None,
            }
        )
        raise ValidationError(table, failures[FAILURE_COLUMNS])


def _case_variants(df: pd.DataFrame, table: str) -> dict[str, str]:
    """Model columns absent from ``df`` that ``df`` has in another case ('Channel' for 'channel')."""
    present = {str(c).strip().casefold(): str(c) for c in df.columns}
    return {
        name: present[name.casefold()]
        for name in schema_of(table).columns
        if name not in df.columns and name.casefold() in present
    }


def validate_tables(
    tables: Mapping[str, pd.DataFrame],
    *,
    quarantine: bool = False,
    base_currency: str | None = None,
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Validate a set of tables together.

    fx is validated first so that billing can check its currencies against it, and
    ``customer_id`` is given one type across all tables (strings when any table
    has string ids).

    Parameters
    ----------
    tables : mapping
        Table name -> DataFrame, any of events, tickets, surveys, billing, customers, costs, fx.
    quarantine : bool
        False: any failure raises (one :class:`ValidationError` listing every broken table).
        True: bad rows are set aside with a reason.
    base_currency : str, optional
        As in :func:`validate`.

    Returns
    -------
    (dict, dict)
        The valid (coerced) tables and the rejected rows per table (empty without quarantine).

    Examples
    --------
    >>> import pandas as pd, csmetrics
    >>> tickets = pd.DataFrame({"ticket_id": [1, 2], "customer_id": ["a", "b"], "created_at": "2024-01-02"})
    >>> costs = pd.DataFrame({"incurred_at": ["2024-01-01"], "category": ["sales"], "amount": [-5.0]})
    >>> valid, rejected = csmetrics.validate_tables({"tickets": tickets, "costs": costs}, quarantine=True)
    >>> len(valid["tickets"]), rejected["costs"]["reason"].tolist()
    (2, ['amount: >= 0'])
    """
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise UnknownNameError(f"unknown table(s) {unknown}; expected some of {', '.join(TABLES)}")
    order = sorted(tables, key=lambda name: (name != "fx", TABLES.index(name)))
    valid: dict[str, pd.DataFrame] = {}
    rejected: dict[str, pd.DataFrame] = {}
    errors: list[ValidationError] = []
    for name in order:
        extra: dict[str, Any] = {"fx": valid.get("fx"), "base_currency": base_currency} if name == "billing" else {}
        if name == "billing" and "fx" in tables and "fx" not in valid:
            continue  # fx failed: billing's currencies cannot be checked against it
        try:
            result = validate(tables[name], name, quarantine=quarantine, **extra)
        except ValidationError as err:
            errors.append(err)
            continue
        if quarantine:
            valid[name], rejected[name] = result
        else:
            valid[name] = result
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ValidationError.several(errors)
    return harmonize_ids(valid), rejected


def harmonize_ids(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Give ``customer_id`` (and ``ticket_id``) one type across tables: str if any is str."""
    for column in ("customer_id", "ticket_id"):
        holders = [n for n, t in tables.items() if column in t.columns]
        if any(not pd.api.types.is_integer_dtype(tables[n][column]) for n in holders):
            for name in holders:
                if pd.api.types.is_integer_dtype(tables[name][column]):
                    tables[name] = tables[name].assign(**{column: tables[name][column].astype("str")})
    return tables


# --------------------------------------------------------------------------
# Coercion
# --------------------------------------------------------------------------
def _kind_of(column: pa.Column, table: str = "") -> str:
    if column.name in schemas.DIMENSIONS.get(table, ()):
        return "dimension"
    dtype = str(column.dtype) if column.dtype is not None else ""
    if column.name in _ID_COLUMNS or not dtype:
        return "id"
    if dtype.startswith("datetime64"):
        return "timestamp"
    if dtype == "float64":
        return "float"
    if dtype == "bool":
        return "bool"
    return "str"


def coerce(df: pd.DataFrame, table: str) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Coerce the model's columns; returns the frame and the coercion failures.

    Failures are frames of (row position, column, rule, value) for values that
    were present but could not be converted (or, for numbers, are not finite;
    for timestamps, lie outside pandas' nanosecond range 1677-2262).
    """
    out = df.copy(deep=False)
    failures: list[pd.DataFrame] = []
    for name, column in schema_of(table).columns.items():
        if name not in out.columns:
            continue
        kind = _kind_of(column, table)
        try:
            converted, bad = _COERCERS[kind](out[name])
        except _AmbiguousDates as err:
            raise table_error(table, name, err.rule, err.examples) from None
        if converted is not out[name]:
            out[name] = converted
        for rule, mask in _failure_masks(kind, bad):
            if mask.any():
                positions = np.flatnonzero(mask)
                failures.append(
                    pd.DataFrame({"row": positions, "column": name, "rule": rule, "value": None}).assign(
                        value=df[name].iloc[positions].astype(object).to_numpy()
                    )
                )
    return out, failures


def _failure_masks(kind: str, bad) -> list[tuple[str, np.ndarray]]:
    """A coercer's failures as (rule, mask) pairs; the rule None means 'coercible to <kind>'."""
    if bad is None:
        return []
    if isinstance(bad, dict):
        return [
            (f"coercible to {kind}" if rule is None else rule, np.asarray(mask, dtype=bool))
            for rule, mask in bad.items()
        ]
    return [(f"coercible to {kind}", np.asarray(bad, dtype=bool))]


class _AmbiguousDates(ValueError):
    """A text timestamp column that no single format reads (a table-level failure)."""

    def __init__(self, rule: str, examples: list[str]):
        super().__init__(rule)
        self.rule, self.examples = rule, examples


_NS_PER_UNIT = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
OUT_OF_RANGE = "timestamp within 1677-09-22..2262-04-11"


def _to_ns(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """A UTC datetime series of any unit as nanoseconds; values outside the ns range become NaT
    and are returned as failures (never an OutOfBoundsDatetime)."""
    unit = values.dt.unit
    if unit == "ns":
        return values, np.zeros(len(values), dtype=bool)
    per = _NS_PER_UNIT[unit]
    raw = np.asarray(values.array.asi8)
    missing = values.isna().to_numpy()
    limit = (2**63 - 1) // per
    bad = ~missing & ((raw > limit) | (raw <= -limit))
    ns = np.where(missing | bad, NAT, np.where(bad, 0, raw) * per)
    return pd.Series(pd.DatetimeIndex(ns.view("M8[ns]")).tz_localize("UTC"), index=values.index), bad


def _coerce_timestamp(values: pd.Series) -> tuple[pd.Series, dict]:
    """UTC nanoseconds: tz-aware values converted, naive ones taken as UTC, text parsed
    with one format per column; values outside the nanosecond range fail their row."""
    values = _decategorize(values)
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        converted, out_of_range = _to_ns(values.dt.tz_convert("UTC"))
        return converted, {OUT_OF_RANGE: out_of_range}
    if pd.api.types.is_datetime64_dtype(values.dtype):
        converted, out_of_range = _to_ns(values.dt.tz_localize("UTC"))
        return converted, {OUT_OF_RANGE: out_of_range}
    present = values.notna().to_numpy()
    parsed = _parse_text_timestamps(values, present)
    parsed_ok = parsed.notna().to_numpy()
    converted, out_of_range = _to_ns(parsed)
    return converted, {None: present & ~parsed_ok, OUT_OF_RANGE: out_of_range}


def _parse_text_timestamps(values: pd.Series, present: np.ndarray) -> pd.Series:
    """ISO 8601 where it applies; every other value with one format for the whole column.

    The format is guessed from the values (month-first and day-first readings both
    tried). The format that reads every other value is used; formats that read them
    all but differently (``05/02/2023``), or values that need different formats
    (``13/02/2023`` and ``02/13/2023``), are a table-level failure naming examples.
    A value no format reads fails its row.
    """
    from pandas._libs.tslibs.parsing import guess_datetime_format

    if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype):
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    text = values.astype(object).where(present, None)
    parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    if parsed.dt.unit == "ns" or not len(parsed):
        parsed = parsed.dt.as_unit("us")  # room for out-of-range years, checked by _to_ns
    retry = present & parsed.isna().to_numpy()
    if not retry.any():
        return parsed
    others = text[retry].astype(str)
    candidates: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns when a guess contradicts dayfirst: both are tried on purpose
        for sample in others.drop_duplicates().head(50):
            for dayfirst in (False, True):
                guessed = guess_datetime_format(sample, dayfirst=dayfirst)
                if guessed and guessed not in candidates:
                    candidates.append(guessed)
    readings = {
        fmt: pd.to_datetime(others, utc=True, errors="coerce", format=fmt).dt.as_unit("us") for fmt in candidates
    }
    if not readings:
        return parsed
    complete = [fmt for fmt, got in readings.items() if got.notna().all()]
    if complete:
        chosen = complete[0]
        for fmt in complete[1:]:
            differs = np.flatnonzero((readings[fmt] != readings[chosen]).to_numpy())
            if len(differs):
                i = int(differs[0])
                raise _AmbiguousDates(
                    f"one date format: {others.iloc[i]!r} reads as {readings[chosen].iloc[i]:%Y-%m-%d} ({chosen}) "
                    f"and as {readings[fmt].iloc[i]:%Y-%m-%d} ({fmt}); write ISO 8601 dates (YYYY-MM-DD)",
                    [others.iloc[i]],
                )
    else:
        chosen = max(readings, key=lambda fmt: int(readings[fmt].notna().sum()))
        for fmt, got in readings.items():
            only_other = np.flatnonzero((got.notna() & readings[chosen].isna()).to_numpy())
            only_chosen = np.flatnonzero((readings[chosen].notna() & got.isna()).to_numpy())
            if len(only_other) and len(only_chosen):
                first, second = others.iloc[int(only_chosen[0])], others.iloc[int(only_other[0])]
                raise _AmbiguousDates(
                    f"one date format: {first!r} reads only as {chosen} and {second!r} only as {fmt}; "
                    "write one format (ISO 8601: YYYY-MM-DD)",
                    [first, second],
                )
    parsed = parsed.copy()
    parsed[retry] = readings[chosen].to_numpy()
    return parsed


def _decategorize(values: pd.Series) -> pd.Series:
    """A categorical column as a column of its categories' type (nullable integers where needed)."""
    if not isinstance(values.dtype, pd.CategoricalDtype):
        return values
    categories = values.cat.categories
    if pd.api.types.is_integer_dtype(categories.dtype):
        nullable = "UInt64" if categories.dtype.kind == "u" else "Int64"  # ids above 2**63 - 1 stay exact
        return values.astype(nullable if values.hasnans else categories.dtype)
    try:
        return values.astype(categories.dtype if len(categories) else object)
    except (TypeError, ValueError):
        return values.astype(object)


def _coerce_float(values: pd.Series) -> tuple[pd.Series, dict]:
    """float64; text that is no number fails, and so does a non-finite number (inf)."""
    values = _decategorize(values)
    if values.dtype == np.float64:
        converted, unparsable = values, np.zeros(len(values), dtype=bool)
    elif pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype):
        converted = values.astype("float64")
        unparsable = values.notna().to_numpy() & converted.isna().to_numpy()
    else:
        converted = pd.to_numeric(values, errors="coerce").astype("float64")
        unparsable = values.notna().to_numpy() & converted.isna().to_numpy()
    infinite = np.isinf(converted.to_numpy(dtype=float, na_value=np.nan))
    return converted, {None: unparsable, "finite": infinite}


_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0", ""}


def _coerce_bool(values: pd.Series) -> tuple[pd.Series, np.ndarray | None]:
    """Booleans; a missing value means False (not abandoned)."""
    if values.dtype == bool:
        return values, None
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        as_float = values.to_numpy(dtype=float, na_value=np.nan)
        bad = ~np.isnan(as_float) & (as_float != 0) & (as_float != 1)
        return pd.Series(as_float == 1, index=values.index), bad
    text = values.astype("str").str.strip().str.lower()
    present = values.notna().to_numpy()
    is_true = text.isin(_TRUE).to_numpy()
    is_false = text.isin(_FALSE).to_numpy()
    return pd.Series(present & is_true, index=values.index), present & ~is_true & ~is_false


def _coerce_str(values: pd.Series) -> tuple[pd.Series, np.ndarray | None]:
    if pd.api.types.is_string_dtype(values.dtype) and values.dtype != object:
        return values, None
    return values.astype("str"), None


def _coerce_dimension(values: pd.Series) -> tuple[pd.Series, np.ndarray | None]:
    """Text, kept categorical when it arrives so (categories as text): codes, not per-row strings."""
    if not isinstance(values.dtype, pd.CategoricalDtype):
        return _coerce_str(values)
    categories = values.cat.categories
    if pd.api.types.is_string_dtype(categories.dtype) and categories.dtype != object:
        return values, None
    as_text = categories.astype("str")
    if as_text.has_duplicates:  # 1 and "1" both present: plain text
        return values.astype("str"), None
    return values.cat.rename_categories(as_text), None


def _coerce_id(values: pd.Series) -> tuple[pd.Series, Any]:
    """Integer ids stay int64 (float ids that are whole numbers too); anything else is text.

    Ids are kept exactly or rejected, never wrapped: unsigned ids above 2**63 - 1 become
    text (their exact digits), and a float id that is not exact (beyond 2**53) fails its row.
    """
    values = _decategorize(values)
    if pd.api.types.is_integer_dtype(values.dtype):
        if (
            pd.api.types.is_unsigned_integer_dtype(values.dtype)
            and len(values)
            and values.max() > np.iinfo(np.int64).max
        ):
            return values.astype("str").where(values.notna(), None), None
        # nullable integers stay integers (Int64), as float ids with nulls do: a partition with and one
        # without nulls must give ids of one kind, or the same session would be two
        return values.astype("Int64" if values.hasnans else "int64"), None
    if pd.api.types.is_float_dtype(values.dtype):
        as_float = values.to_numpy(dtype=float, na_value=np.nan)
        missing = np.isnan(as_float)
        inexact = ~missing & ~(np.abs(as_float) <= 2.0**53)
        whole = np.isfinite(as_float[~missing]) & (as_float[~missing] == np.floor(as_float[~missing]))
        if inexact.any():
            kept = values.where(~inexact)
            return _coerce_id(kept)[0], {"an exact id (a float beyond 2**53 or not finite is not)": inexact}
        if whole.all():
            return values.astype("Int64" if missing.any() else "int64"), None
    return _coerce_str(values)


_COERCERS = {
    "timestamp": _coerce_timestamp,
    "float": _coerce_float,
    "bool": _coerce_bool,
    "str": _coerce_str,
    "dimension": _coerce_dimension,
    "id": _coerce_id,
}


# --------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------
#: The column checks :func:`_passes` evaluates itself: name -> (values, statistics) -> rows that hold
_COLUMN_RULES: dict[str, Callable[[np.ndarray, dict], np.ndarray]] = {
    "greater_than_or_equal_to": lambda v, st: v >= st["min_value"],
    "less_than_or_equal_to": lambda v, st: v <= st["max_value"],
    "greater_than": lambda v, st: v > st["min_value"],
}


def _passes(df: pd.DataFrame, schema: pa.DataFrameSchema) -> bool:
    """True when every rule of ``schema`` holds on the coerced frame, evaluated directly (numpy, the
    registered check functions themselves), without pandera's per-check machinery. False as soon as
    one fails, and for any rule it does not know: pandera then runs and reports the failures, so
    this only ever skips a run that would have found nothing (tests/test_validate.py checks every
    failing case of the suite fails here too)."""
    for name, column in schema.columns.items():
        if name not in df:
            continue
        values = df[name]
        if column.dtype is not None and not column.dtype.check(pandas_engine.Engine.dtype(values.dtype)):
            return False
        if (not column.nullable and values.hasnans) or (column.unique and values.duplicated().any()):
            return False
        for check in column.checks:
            if not _column_check_holds(values, check):
                return False
    for check in schema.checks:
        function = getattr(schemas, check.name, None)
        if function is None or getattr(function, "__module__", "") != schemas.__name__:
            return False
        if not np.asarray(function(df, **check.statistics), dtype=bool).all():
            return False
    return True


def _column_check_holds(values: pd.Series, check: Any) -> bool:
    """One column check on the non-null values (pandera's ignore_na); unknown checks do not hold."""
    if not check.ignore_na or check.groupby is not None:
        return False
    if check.name == "isin":
        return bool(schemas.values_in(values, list(check.statistics["allowed_values"]), null=True).all())
    if check.name == "whole_number":
        return bool(np.asarray(schemas.whole_number(values), dtype=bool).all())
    rule = _COLUMN_RULES.get(check.name)
    if rule is None or not pd.api.types.is_float_dtype(values.dtype):
        return False
    numbers = values.to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        return bool((rule(numbers, check.statistics) | np.isnan(numbers)).all())


def _schema_failures(df: pd.DataFrame, schema: pa.DataFrameSchema) -> pd.DataFrame:
    """Run the pandera schema lazily; failures as (row, column, rule, value)."""
    try:
        schema.validate(df, lazy=True, inplace=True)  # no copy: coercion is ours, pandera only checks
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
    else:
        return pd.DataFrame(columns=["row", "column", "rule", "value"])
    cases = cases[cases["index"].notna()]
    by_column = cases[cases["schema_context"] != "DataFrameSchema"]
    column_failures = pd.DataFrame(
        {
            "row": by_column["index"].to_numpy(dtype=np.int64),
            "column": by_column["column"].to_numpy(dtype=object),
            "rule": by_column["check"].map(_rule_text).to_numpy(dtype=object),
            "value": by_column["failure_case"].to_numpy(dtype=object),
        }
    )
    frame_cases = cases[cases["schema_context"] == "DataFrameSchema"]
    frame_failures = [column_failures]
    for check in schema.checks:
        failed_rows = frame_cases.loc[frame_cases["check"] == (check.error or check.name), "index"]
        if len(failed_rows):
            rows = np.unique(failed_rows.to_numpy(dtype=np.int64))
            frame_failures.append(_blame(df, rows, check.name, check.statistics))
    return pd.concat(frame_failures, ignore_index=True)


def _blame(df: pd.DataFrame, rows: np.ndarray, name: str, stats: dict[str, Any]) -> pd.DataFrame:
    """Name the column and rule behind a failed cross-column check, row by row."""
    part = df.iloc[rows]
    pieces: list[tuple[np.ndarray, str, str]] = []
    if name == "not_before":
        reference = stats["reference"]
        for column in stats["columns"]:
            if column in part:
                mask = (part[column] < part[reference]).fillna(False).to_numpy(dtype=bool)
                pieces.append((mask, column, f"not before {reference}"))
    elif name == "strictly_after":
        pieces.append((np.ones(len(rows), bool), stats["column"], f"after {stats['reference']}"))
    elif name == "required_for_kinds":
        kind = part[stats["kind_column"]]
        for column, kinds in stats["required"].items():
            present = part[column].notna().to_numpy() if column in part else np.zeros(len(part), bool)
            other = stats.get("unless", {}).get(column)
            if other is not None and other in part:
                present = present | part[other].notna().to_numpy()
            mask = kind.isin(kinds).to_numpy(dtype=bool) & ~present
            rule = f"required when {stats['kind_column']} is {'/'.join(kinds)}"
            if other is not None:
                rule += f" (or give {other} for a subscription that runs until cancelled)"
            pieces.append((mask, column, rule))
    elif name == "integer_score_0_10":
        pieces.append((np.ones(len(rows), bool), "score", f"{stats['survey']} score is a whole number 0..10"))
    elif name == "score_within_scale":
        pieces.append((np.ones(len(rows), bool), "score", "within [scale_min, scale_max]"))
    elif name == "known_values_for_survey":
        allowed = "/".join(stats["allowed"])
        pieces.append((np.ones(len(rows), bool), stats["column"], f"one of {allowed} for {stats['survey']}"))
    elif name == "unique_together":
        pieces.append((np.ones(len(rows), bool), ",".join(stats["columns"]), "unique together"))
    else:
        pieces.append((np.ones(len(rows), bool), "", name))
    frames = []
    for mask, column, rule in pieces:
        values = part[column].astype(object).to_numpy()[mask] if column in part else None
        frames.append(pd.DataFrame({"row": rows[mask], "column": column, "rule": rule, "value": values}))
    return pd.concat(frames, ignore_index=True)


def _not_already_failed(found: pd.DataFrame, earlier: list[pd.DataFrame]) -> pd.DataFrame:
    """``found`` without the (row, column) pairs of ``earlier`` failures: a value that failed
    coercion is reported once, not again as "not null" or out of range."""
    earlier = [f for f in earlier if len(f)]
    if not earlier or not len(found):
        return found
    keys = pd.concat([f[["row", "column"]] for f in earlier], ignore_index=True).drop_duplicates()
    keys["row"] = keys["row"].astype(np.int64)
    merged = found.assign(row=found["row"].astype(np.int64)).merge(
        keys, on=["row", "column"], how="left", indicator=True
    )
    return merged.loc[merged["_merge"] == "left_only", list(found.columns)].reset_index(drop=True)


def _rule_text(check: str) -> str:
    replacements = {
        "field_uniqueness": "unique",
        "not_nullable": "not null",
        "greater_than_or_equal_to": ">=",
        "greater_than": ">",
        "less_than_or_equal_to": "<=",
        "isin": "one of",
        "whole_number": "whole number",
    }
    for old, new in replacements.items():
        if check.startswith(old):
            rest = check[len(old) :].strip("()")
            try:
                rest = f"{float(rest):g}"
            except ValueError:
                pass
            return f"{new} {rest}".strip() if new in (">=", ">", "<=", "one of") else new
    if check.startswith("dtype("):
        return f"type {check[6:-1]}"
    return check


def _currency_failures(
    billing: pd.DataFrame, fx: pd.DataFrame | None, base_currency: str | None, currencies: set[str] | None = None
) -> pd.DataFrame:
    """Mixed currencies need fx (table-level); rows in a currency with no rate fail."""
    empty = pd.DataFrame(columns=["row", "column", "rule", "value"])
    if "currency" not in billing:
        return empty
    currencies = set(billing["currency"].dropna().unique()) if currencies is None else set(currencies)
    if len(currencies) <= 1:
        return empty
    if fx is None:
        raise table_error("billing", "currency", "mixed currencies need an fx table", sorted(currencies))
    known = set(fx["currency"].unique())
    base = resolve_base_currency(currencies, known, base_currency, fx)
    missing = sorted(currencies - known)
    if base is None and len(missing) > 1:
        raise table_error(
            "billing",
            "currency",
            f"one base currency: {len(missing)} billing currencies have no fx rate, "
            "so the base currency is ambiguous; pass base_currency= or add fx rates for all but the base",
            missing,
        )
    # null or a currency with a rate (or the base) passes; a categorical looks its categories up
    allowed = sorted(known | ({base} if base is not None else set()), key=str)
    positions = np.flatnonzero(~schemas.values_in(billing["currency"], allowed, null=True))
    return pd.DataFrame(
        {
            "row": positions,
            "column": "currency",
            "rule": f"has an fx rate (base currency {base})",
            "value": billing["currency"].iloc[positions].to_numpy(dtype=object),  # the failing rows only
        }
    )


def resolve_base_currency(
    currencies: set[str], known: set[str], base_currency: str | None, fx: pd.DataFrame | None = None
) -> str | None:
    """The base currency: as given, else the single billing currency with no fx rate, else the
    single billing currency whose every fx rate is 1 (an fx table that lists the base too)."""
    if base_currency is not None:
        return base_currency
    missing = sorted(currencies - known)
    if len(missing) == 1:
        return missing[0]
    if not missing and fx is not None and len(fx):
        rates = pd.to_numeric(fx["rate"], errors="coerce")
        unit = rates.eq(1.0).groupby(fx["currency"].astype("str").to_numpy()).all()
        ones = sorted(set(unit[unit].index) & {str(c) for c in currencies})
        if len(ones) == 1:
            return ones[0]
    return None


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------
def _failure_table(table: str, failures: list[pd.DataFrame], original: pd.DataFrame) -> pd.DataFrame:
    frames = [f for f in failures if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in FAILURE_COLUMNS}).assign(row=pd.Series(dtype=np.int64))
    out = pd.concat(frames, ignore_index=True)
    out["row"] = out["row"].astype(np.int64)
    out = out.drop_duplicates(["row", "column", "rule"]).sort_values(["row", "column"], kind="stable")
    out.insert(0, "table", table)
    return out[FAILURE_COLUMNS].reset_index(drop=True)


def _reasons(failure_table: pd.DataFrame, n_rows: int) -> np.ndarray:
    """One reason string per rejected row, in the order of ``np.unique(rows)``."""
    text = failure_table["column"].astype(str) + ": " + failure_table["rule"].astype(str)
    grouped = text.groupby(failure_table["row"].to_numpy(), sort=False).agg("; ".join)
    # failure_table is sorted by row position, so group order equals np.unique order
    reasons = grouped.to_numpy(dtype=object)
    assert len(reasons) == n_rows
    return reasons


def _scope(failures: pd.DataFrame) -> str:
    n_rows = failures["row"].dropna().nunique()
    return f"{n_rows} rows" if n_rows else "table-level"


def format_failures(table: str, failures: pd.DataFrame, examples: int = 5, rows: str = "rows") -> str:
    """Human-readable summary: one line per (column, rule) with count and examples.

    ``rows`` names what the row labels are: "rows" (positions or index labels) or
    "CSV lines" for a table read from a CSV file.
    """
    if failures.empty:
        return f"table {table!r}: valid"
    lines = [f"table {table!r} failed validation ({_scope(failures)}):"]
    label = rows
    for (column, rule), group in failures.groupby(["column", "rule"], sort=True, dropna=False):
        rows = group["row"].tolist()
        values = group["value"].tolist()[:examples]
        where = "" if rows == [None] else f": {len(rows)} rows, e.g. {label} {rows[:examples]} values {values}"
        if rows == [None]:
            where = f" (values {values[0]})" if values and values[0] is not None else ""
        lines.append(f"  - {table}.{column}: rule '{rule}'{where}")
    return "\n".join(lines)
