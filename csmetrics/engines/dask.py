"""The Dask engine: the same families on tables larger than one machine's memory.

:func:`load` turns Dask DataFrames (events, tickets, surveys, billing; the small
tables customers, costs and fx are brought into pandas) into a
:class:`DaskEngine`:

1. one pass over the id columns finds values of unique columns (ticket_id,
   response_id, line_id) that occur in more than one row anywhere, by hashing
   them into groups; and the distinct billing currencies;
2. every partition is validated by the pandas validator with those global facts
   (so a duplicate across partitions fails "unique" exactly as in one frame, and
   the currency check sees every currency); rejected rows are gathered (quarantine)
   or the failures raise one :class:`~csmetrics.validate.ValidationError`;
3. ``customer_id`` gets one type across tables (text when any table has text
   ids, as :func:`~csmetrics.validate.harmonize_ids`), and every valid partition
   is split by a hash of ``customer_id`` into buckets: a customer's rows of every
   table land in the same bucket, which is what the per-customer families need.

Plans (:mod:`csmetrics.plans`) then run on it exactly as on pandas.
Results (metric frames) are pandas; nothing is approximate.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.arrays import ArrowStringArray

from csmetrics._compat import import_dask, is_dask
from csmetrics.engines.base import AS_OF_COLUMNS, joined_rows
from csmetrics.engines.pandas import PandasEngine
from csmetrics.memo import process_memo
from csmetrics.options import UnknownNameError
from csmetrics.periods import NAT, instants
from csmetrics.schemas import BIG_TABLES as BIG
from csmetrics.schemas import DIMENSIONS
from csmetrics.sorting import order_by
from csmetrics.validate import (
    TABLES,
    ValidationError,
    resolve_base_currency,
    table_error,
    unique_columns,
    validate,
    validate_tables,
)

__all__ = ["DaskEngine", "Streamed", "load"]


def _shown(futures):
    from distributed import progress

    progress(futures)
    print(flush=True)
    return futures


def _client(progress: bool):
    """The distributed client to show progress on, if asked for and there is one."""
    return _distributed_client() if progress else None


def compute(*collections, progress: bool = False):
    """dask.compute, with Dask's progress bar when asked for (distributed clients)."""
    client = _client(progress)
    if client is None:
        return import_dask().compute(*collections)
    wrapped = [import_dask().delayed(_identity, pure=False)(c) for c in collections]  # nested lists/dicts too
    return tuple(client.gather(_shown(client.compute(wrapped))))


def persist(*collections, progress: bool = False):
    """dask.persist, with Dask's progress bar when asked for (distributed clients)."""
    client = _client(progress)
    if client is None:
        return import_dask().persist(*collections)
    return tuple(_shown(client.persist(list(collections))))


def _identity(value):
    return value


# --------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------
class DaskEngine:
    """Buckets of customers on a Dask scheduler (:class:`csmetrics.engines.base.Engine`)."""

    name = "dask"

    #: each process its tasks run in shares work through its own memo: the families' tasks of one
    #: bucket on one worker build its billing ledger once, as on the pandas engine
    memo = process_memo()

    def __init__(
        self,
        buckets: dict[str, list],
        stats: dict[str, dict],
        heads: dict[str, pd.DataFrame],
        n: int,
        small: dict[str, pd.DataFrame] | None = None,
        progress: bool = False,
    ):
        self.buckets, self.stats, self.heads, self.n = buckets, stats, heads, n
        self.small_tables = small or {}
        self.progress = progress
        self._shared: dict[int, tuple[Any, Any]] = {}
        self._below: dict[tuple[str, int], dict[str, int]] = {}
        client = _distributed_client()
        self.workers = None if client is None else _worker_addresses(client)

    def has(self, name: str) -> bool:
        return name in self.buckets and self.stats[name]["rows"] > 0

    def holds(self, name: str) -> bool:
        return name in self.buckets or name in self.small_tables

    def rows(self, name: str) -> int:
        return self.stats[name]["rows"] if name in self.stats else 0

    def table(self, name: str, columns: Sequence[str] | None = None) -> list:
        return self.buckets[name] if self.has(name) else [None] * self.n

    def whole(self, name: str) -> list | None:
        """Never on one worker: work that needs every row regroups instead."""
        return None

    def slices(self, name: str) -> list:
        """Any split of the rows: the partitions (by customer) as they are."""
        return self.table(name)

    def small(self, name: str) -> pd.DataFrame | None:
        return self.small_tables.get(name)

    def latest(self, name: str) -> int:
        if name in self.small_tables:
            return PandasEngine(self.small_tables).latest(name)
        return (
            max((self.stats[name]["max"].get(c, NAT) for c in AS_OF_COLUMNS.get(name, ())), default=NAT)
            if name in self.stats
            else NAT
        )

    def _share(self, value: Any) -> Any:
        """One task holding a value every bucket's call uses (sent to each worker once)."""
        if value is None or isinstance(value, (str, int, float, bool)):
            return value
        if id(value) not in self._shared:
            self._shared[id(value)] = (
                value,
                import_dask().delayed(value, name=f"shared-{uuid.uuid4().hex}", traverse=False),
            )
        return self._shared[id(value)][1]

    def map(self, fn: Callable, *handles: list, **shared) -> list:
        call = import_dask().delayed(fn, pure=False, traverse=False)
        shared = {k: self._share(v) for k, v in shared.items()}
        out = []
        for j, items in enumerate(zip(*handles, strict=True)):
            with self._on(j):
                out.append(call(*items, **shared))
        return out

    def _on(self, j: int):
        """With a distributed client, the task of bucket j is meant for where bucket j lives (worker
        j mod workers, as :func:`load` put it), so the bucket need not move: a preference, which the
        scheduler overrides when that worker is paused under its memory limit. Its priority is the
        bucket's (-j): a worker runs every family's tasks of one bucket before those of its next
        bucket, so a bucket spilled under the memory limit is read back once for all the families
        that read it, not once per family."""
        if not self.workers:
            return contextlib.nullcontext()
        return import_dask().annotate(
            workers=[self.workers[j % len(self.workers)]], allow_other_workers=True, priority=-j
        )

    def regroup(self, handle: list, key: Callable, n: int) -> list:
        dask = import_dask()
        split = dask.delayed(_split, pure=False, nout=n)
        splits = []
        for j, item in enumerate(handle):
            with self._on(j):
                splits.append(split(item, key, n))
        pieces = _taken_apart(splits, n)
        join = dask.delayed(_concat, pure=False)
        joined = []
        for j in range(n):
            with self._on(j):  # group j is made where the next map's task of bucket j will run
                joined.append(join([p[j] for p in pieces]))
        return joined

    def persist(self, handle: list) -> list:
        return list(persist(*handle, progress=self.progress))

    def start(self, *handles: list) -> list[list]:
        """Every handle's tasks submitted in one graph (kept on the cluster until gathered): the
        caller finishes the first families while the workers compute the later ones."""
        from dask.delayed import Delayed

        flat = [item for handle in handles for item in handle]
        lazy = [k for k, item in enumerate(flat) if isinstance(item, Delayed)]
        for k, done in zip(lazy, persist(*[flat[k] for k in lazy]), strict=True):
            flat[k] = done
        out, k = [], 0
        for handle in handles:
            out.append(flat[k : k + len(handle)])
            k += len(handle)
        return out

    def gather(self, *handles: list) -> tuple[list, ...]:
        return compute(*[list(h) for h in handles], progress=self.progress)

    def input_rows(self, name: str, given: object, rejected: Mapping[str, pd.DataFrame]) -> int:
        """Rows of the table as given: the valid rows counted on the cluster plus the rejected ones."""
        valid = self.rows(name) if name in self.stats else int(len(self.small_tables[name]))
        return valid + int(len(rejected.get(name, ())))

    def customer_output(self, rows: list, key: Callable, order: Callable, n: int) -> Streamed:
        """customers.parquet: the rows regrouped by ``key`` (consecutive periods), each group in
        ``order``, kept on the cluster and streamed when written."""
        groups = self.persist(self.map(order, self.regroup(self.map(joined_rows, rows), key, n)))
        return Streamed(groups, self.persist(self.map(len, groups)), self.progress)  # both under way

    def summary(self, name: str, as_of: object = None) -> pd.DataFrame:
        """The table's columns, with rows holding each timestamp column's min, max and latest
        value up to as_of (default: the table's own as_of), and the distinct currencies."""
        stats = self.stats[name]
        limit = pd.Timestamp(as_of).value if as_of is not None else self.latest(name)
        later = [c for c, v in stats["max"].items() if v > limit]
        if later and (name, limit) not in self._below:
            (found,) = self.gather(self.map(_max_below, self.table(name), columns=tuple(later), limit=limit))
            self._below[(name, limit)] = {c: max((f[c] for f in found), default=NAT) for c in later}
        below = self._below.get((name, limit), {})
        currencies = sorted(stats.get("currencies", ()))
        n_rows = max(3, len(currencies))
        head = self.heads[name]
        out = pd.DataFrame({c: pd.Series([None] * n_rows, dtype=object) for c in head.columns})
        for column in stats["min"]:
            values = [stats["min"][column], stats["max"][column], below.get(column, NAT)]
            values += [NAT] * (n_rows - len(values))
            out[column] = pd.to_datetime(np.array(values, dtype=np.int64), utc=True)  # NAT -> NaT
        if "currency" in head.columns:
            out["currency"] = pd.Series(currencies + [None] * (n_rows - len(currencies)), dtype="str")
        return out


@dataclass
class Streamed:
    """An output too large for one machine: parts in order, kept on the cluster, fetched one at a time
    when written (the next one while the caller writes the last); ``lengths``: each part's rows."""

    parts: list
    lengths: list
    progress: bool = False
    _rows: int | None = None

    def __len__(self) -> int:
        if self._rows is None:
            self._rows = int(sum(compute(*self.lengths)))
        return self._rows

    def frames(self) -> Iterator[pd.DataFrame]:
        if not self.parts:
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="csmetrics-fetch") as fetcher:
            coming = fetcher.submit(_fetched, self.parts[0])
            for k in range(len(self.parts)):
                frame = coming.result()
                if k + 1 < len(self.parts):
                    coming = fetcher.submit(_fetched, self.parts[k + 1])
                if len(frame):
                    yield frame
                del frame


def _fetched(part: Any) -> pd.DataFrame:
    (frame,) = compute(part)
    return frame


def _split(frame: pd.DataFrame, key: Callable, n: int) -> tuple[pd.DataFrame, ...]:
    """The rows of ``frame`` in ``n`` groups by ``key``: each group its own copy (not a view of one
    sorted frame), so a worker that spills a group frees its memory."""
    group = key(frame)
    order = order_by(np.asarray(group, dtype=np.int64))
    bounds = np.searchsorted(group[order], np.arange(n + 1))
    return tuple(frame.take(order[bounds[j] : bounds[j + 1]]) for j in range(n))


#: the priority of taking a split's tuple apart: before any other ready task, while it is in memory
_TAKE_APART = 100


def _taken_apart(splits: list, n: int) -> list[list]:
    """Each split's ``n`` groups as tasks of their own, run as soon as the split is done: a tuple a
    worker spilled first would be read back from disk once per group."""
    with import_dask().annotate(priority=_TAKE_APART):
        return [[split[j] for j in range(n)] for split in splits]


def _buckets(outcomes: dict[str, list], pieces: dict[str, list[list]], n: int, progress: bool) -> tuple[dict, dict]:
    """(each table's partition outcomes, its ``n`` customer buckets kept on the cluster), in one
    computation. With a distributed client, bucket j of every table is made and kept on one worker
    (worker j mod workers): a family reading several tables of a bucket, or the events bucket and its
    user order, finds them in one place instead of moving them between workers."""
    dask = import_dask()
    names = list(pieces)
    client = _distributed_client()
    if client is None:
        join = dask.delayed(_concat, pure=False)
        joined = {name: [join([p[j] for p in pieces[name]]) for j in range(n)] for name in names}
        flat = persist(*[h for name in names for h in (*outcomes[name], *joined[name])], progress=progress)
        k, persisted, buckets = 0, {}, {}
        for name in names:
            persisted[name] = flat[k : k + len(outcomes[name])]
            buckets[name] = list(flat[k + len(outcomes[name]) : k + len(outcomes[name]) + n])
            k += len(outcomes[name]) + n
        return compute(persisted, progress=progress)[0], buckets
    workers = _worker_addresses(client)
    flat = [*(h for name in names for h in outcomes[name]), *(p for name in names for row in pieces[name] for p in row)]
    futures = iter(client.compute(flat))
    outcome_futures = {name: [next(futures) for _ in outcomes[name]] for name in names}
    piece_futures = {name: [[next(futures) for _ in row] for row in pieces[name]] for name in names}
    place = dict(allow_other_workers=True, pure=False)  # a preference: a strict one measured slower
    buckets = {
        name: [
            client.submit(
                _concat, [row[j] for row in piece_futures[name]], workers=[workers[j % len(workers)]], **place
            )
            for j in range(n)
        ]
        for name in names
    }
    del futures, piece_futures  # each bucket's pieces are released once it is made
    if progress:
        _shown([f for name in names for f in buckets[name]])
    outcome = client.gather(outcome_futures)
    return outcome, {name: [dask.delayed(f) for f in buckets[name]] for name in names}


def _worker_addresses(client) -> list[str]:
    """The distributed client's workers, sorted: bucket j lives on the (j mod their number)-th."""
    return sorted(client.scheduler_info()["workers"])


def _distributed_client():
    """The distributed client the computations run on, or None (Dask's local schedulers)."""
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def _concat(pieces: list[pd.DataFrame | None]) -> pd.DataFrame | None:
    present = [p for p in pieces if p is not None]
    if not present:
        return None
    nonempty = [p for p in present if len(p)]
    return pd.concat(_same_categories(nonempty), ignore_index=True) if nonempty else present[0].reset_index(drop=True)


def _same_categories(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """The frames with each categorical column on one set of categories (the union, in order of first
    appearance): partitions read from different row groups have their own dictionaries, and
    concatenating categoricals whose categories differ would fall back to plain objects."""
    if len(frames) < 2:
        return frames
    columns = [c for c, t in frames[0].dtypes.items() if isinstance(t, pd.CategoricalDtype)]
    recoded = {}
    for column in columns:
        kinds = [f[column].dtype for f in frames]
        if all(k == kinds[0] for k in kinds[1:]) or not all(isinstance(k, pd.CategoricalDtype) for k in kinds):
            continue
        union = pd.Index(pd.unique(np.concatenate([np.asarray(k.categories, dtype=object) for k in kinds])))
        recoded[column] = pd.CategoricalDtype(union.astype(kinds[0].categories.dtype))
    if not recoded:
        return frames
    return [f.astype(recoded) for f in frames]


def _max_below(frame: pd.DataFrame, columns: tuple[str, ...], limit: int) -> dict[str, int]:
    out = {}
    for column in columns:
        t = instants(frame[column])
        t = t[(t != NAT) & (t <= limit)]
        out[column] = int(t.max()) if len(t) else NAT
    return out


def _stats(frame: pd.DataFrame | None) -> dict:
    """Rows, per timestamp column min and max (int ns), distinct currencies."""
    if frame is None:
        return {"rows": 0, "min": {}, "max": {}}
    out: dict[str, Any] = {"rows": len(frame), "min": {}, "max": {}}
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            t = instants(frame[column])
            t = t[t != NAT]
            out["min"][column] = int(t.min()) if len(t) else NAT
            out["max"][column] = int(t.max()) if len(t) else NAT
    if "currency" in frame.columns:
        out["currencies"] = _currencies(frame)
    return out


def _merge_stats(parts: list[dict]) -> dict:
    out: dict[str, Any] = {"rows": sum(p["rows"] for p in parts), "min": {}, "max": {}}
    for p in parts:
        for column, value in p["min"].items():
            if value != NAT:
                out["min"][column] = min(out["min"].get(column, value), value)
            out["min"].setdefault(column, NAT)
        for column, value in p["max"].items():
            out["max"][column] = max(out["max"].get(column, NAT), value)
        if "currencies" in p:
            out.setdefault("currencies", set()).update(p["currencies"])
    return out


# --------------------------------------------------------------------------
# Loading: global checks, per-partition validation, buckets by customer
# --------------------------------------------------------------------------
def _hash_group(values: pd.Series, n: int) -> np.ndarray:
    return (pd.util.hash_pandas_object(values, index=False).to_numpy() % np.uint64(n)).astype(np.int64)


def _as_kind(values: pd.Series, kind: str) -> pd.Series:
    """Ids as one type: int64 or text."""
    if kind == "str":
        return values if pd.api.types.is_string_dtype(values.dtype) and values.dtype != object else values.astype("str")
    return values.astype("int64") if values.dtype != np.int64 else values


def _id_kind(dtype) -> str:
    return "int" if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype) else "str"


def _id_values(part: pd.DataFrame, column: str, kind: str) -> pd.Series:
    """A unique column's present values as compared for duplicates (whole numbers as int64, else text)."""
    values = part[column].dropna()
    if kind == "int":
        as_float = values.to_numpy(dtype=float)
        if (as_float == np.floor(as_float)).all():
            return pd.Series(as_float.astype(np.int64))
    return values.astype("str").reset_index(drop=True)


def _id_groups(part: pd.DataFrame, column: str, kind: str, n: int) -> tuple[pd.Series, ...]:
    values = _id_values(part, column, kind)
    return _split(values.to_frame("id"), lambda f: _hash_group(f["id"], n), n)


def _duplicates(pieces: list[pd.DataFrame]) -> np.ndarray:
    values = pd.concat(pieces, ignore_index=True)["id"]
    return values[values.duplicated(keep=False)].unique()


def plain_strings(part: pd.DataFrame) -> pd.DataFrame:
    """Dask reads text as ``string[pyarrow]`` (missing = NA); pandas' default ``str`` keeps the
    frames identical to the pandas engine's."""
    text = [c for c, t in part.dtypes.items() if isinstance(t, pd.StringDtype) and t != "str"]
    return part.astype(dict.fromkeys(text, "str")) if text else part


def coded(valid: pd.DataFrame | None, name: str) -> pd.DataFrame | None:
    """Valid rows with the table's dimensions (:data:`DIMENSIONS`: channel, plan, event, ...) as
    categoricals, as the pandas engine reads them: a bucket then holds codes (billing's 1.3 GiB at
    large is 0.8 GiB so), which the families take as they are. Rejected rows keep their text."""
    if valid is None:
        return None
    columns = {c: _categorical(valid[c]) for c in DIMENSIONS.get(name, ()) if c in valid and _is_text(valid[c])}
    columns |= {c: v for c in CODED_IDS.get(name, ()) if c in valid and (v := _narrowed(valid[c])) is not None}
    return valid.assign(**columns) if columns else valid


#: integer id columns the families only turn into codes (offsets from the smallest), never output: a
#: bucket holds them in 32 bits where every value fits (at large 49M events, 0.4 GB less to move and spill)
CODED_IDS = {"events": ("user_id", "session_id")}


def _narrowed(values: pd.Series) -> pd.Series | None:
    """Integer ids as 32-bit integers (nullable ones as Int32) when every value lies in [0, 2**31), so
    that their offsets from the smallest fit 32 bits too, else None."""
    if not pd.api.types.is_integer_dtype(values.dtype) or values.dtype.itemsize <= 4:
        return None
    low, high = values.min(), values.max()  # missing values skipped; NA when there are none
    if not pd.isna(low) and not (0 <= low and high <= np.iinfo(np.int32).max):
        return None
    return values.astype("Int32" if isinstance(values.dtype, pd.api.extensions.ExtensionDtype) else np.int32)


def _is_text(values: pd.Series) -> bool:
    return isinstance(values.dtype, pd.StringDtype) or values.dtype == object


def _categorical(values: pd.Series) -> pd.Series:
    """Text as a categorical, its categories in order of first appearance (as Parquet's dictionary)."""
    if isinstance(values.array, ArrowStringArray):  # Arrow's hash encoding, without a pass through Python strings
        return pd.Series(pa.array(values.array).dictionary_encode().to_pandas().array, index=values.index)
    return values.astype("category")


def _validate_part(part, name, quarantine, fx, base_currency, duplicated, currencies):
    """(valid, rejected, failures) of one partition."""
    part = plain_strings(part)
    kwargs = {"fx": fx, "base_currency": base_currency, "currencies": currencies} if name == "billing" else {}
    try:
        result = validate(part, name, quarantine=quarantine, duplicated=duplicated, **kwargs)
    except ValidationError as err:
        return None, None, err.failures
    if quarantine:
        return coded(result[0], name), result[1], None
    return coded(result, name), None, None


def _bucket_pieces(result: tuple, kind: str, n: int) -> tuple[pd.DataFrame | None, ...]:
    """A validated partition's rows split into the ``n`` customer buckets (None if it failed)."""
    part = result[0]
    if part is None:
        return (None,) * n
    part = part.assign(customer_id=_as_kind(part["customer_id"], kind))
    return _split(part, lambda f: _hash_group(f["customer_id"], n), n)


def load(
    tables: Mapping[str, Any],
    *,
    quarantine: bool = False,
    validated: bool = False,
    base_currency: str | None = None,
    buckets: int | None = None,
    progress: bool = False,
) -> tuple[DaskEngine, dict[str, pd.DataFrame]]:
    """Validate and bucket the tables; returns (engine, rejected rows)."""
    dask = import_dask()
    import dask.dataframe as dd

    tables = {k: v for k, v in tables.items() if v is not None}
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise UnknownNameError(f"unknown table(s) {unknown}; expected some of {', '.join(TABLES)}")
    big = {k: (v if is_dask(v) else dd.from_pandas(v, npartitions=1)) for k, v in tables.items() if k in BIG}
    small = {k: (v.compute() if is_dask(v) else v) for k, v in tables.items() if k not in BIG}
    rejected: dict[str, pd.DataFrame]
    if validated:
        valid_small, rejected = dict(small), {}
    else:
        valid_small, rejected = validate_tables(small, quarantine=quarantine)
    fx = valid_small.get("fx")
    n = buckets or max(2, max((t.npartitions for t in big.values()), default=1))

    # one type for customer_id across tables (text if any table has text ids)
    kinds = {_id_kind(t._meta["customer_id"].dtype) for t in big.values() if "customer_id" in t.columns}
    kinds |= {_id_kind(t["customer_id"].dtype) for t in valid_small.values() if "customer_id" in t.columns}
    kind = "str" if "str" in kinds else "int"
    for name, table in valid_small.items():
        if "customer_id" in table.columns:
            valid_small[name] = table.assign(customer_id=_as_kind(table["customer_id"], kind))

    # global facts: duplicated unique values, billing currencies
    facts: dict[tuple[str, str], Any] = {}
    if not validated:
        for name, table in big.items():
            for column in unique_columns(name):
                if column in table.columns:
                    split = dask.delayed(_id_groups, pure=False, nout=_ID_GROUPS)
                    kind_of = _id_kind(table._meta[column].dtype)
                    groups = _taken_apart(
                        [split(p, column, kind_of, _ID_GROUPS) for p in table[[column]].to_delayed()], _ID_GROUPS
                    )
                    facts[(name, column)] = [
                        dask.delayed(_duplicates, pure=False)([g[j] for g in groups]) for j in range(_ID_GROUPS)
                    ]
        if "billing" in big and "currency" in big["billing"].columns:
            facts[("billing", "currency")] = [
                dask.delayed(_currencies, pure=False)(p) for p in big["billing"][["currency"]].to_delayed()
            ]
    computed = dict(zip(facts, compute(*facts.values(), progress=progress), strict=True)) if facts else {}
    duplicated: dict[str, dict[str, np.ndarray]] = {}
    for (name, column), value in computed.items():
        if column != "currency":
            duplicated.setdefault(name, {})[column] = np.concatenate(
                [np.asarray(v, dtype=object) for v in value] or [np.array([], dtype=object)]
            )
    currencies = set().union(*computed[("billing", "currency")]) if ("billing", "currency") in computed else None
    base = base_currency
    if currencies is not None and len(currencies) > 1:
        if fx is None:
            raise table_error("billing", "currency", "mixed currencies need an fx table", sorted(currencies))
        base = resolve_base_currency(currencies, set(fx["currency"]), base_currency, fx)

    # validate every partition with those facts, then split the valid rows into customer buckets
    results: dict[str, list] = {}
    for name, table in big.items():
        parts = table.to_delayed()
        if validated:
            results[name] = [
                dask.delayed(lambda p, t=name: (coded(plain_strings(p), t), None, None), pure=False)(p) for p in parts
            ]
        else:
            check = dask.delayed(_validate_part, pure=False, traverse=False)
            results[name] = [check(p, name, quarantine, fx, base, duplicated.get(name), currencies) for p in parts]
    # one computation validates each partition once: its outcome (rejected rows, failures, stats) and
    # its pieces of the customer buckets are both made from it, then it is released
    outcomes, pieces = {}, {}
    for name, res in results.items():
        outcomes[name] = [dask.delayed(_outcome, pure=False)(r) for r in res]
        cut = dask.delayed(_bucket_pieces, pure=False, nout=n)
        pieces[name] = _taken_apart([cut(r, kind, n) for r in res], n)
    del results
    outcome, bucketed = _buckets(outcomes, pieces, n, progress)
    errors = []
    for name, parts in outcome.items():
        failures = [f for _, f, _, _ in parts if f is not None and len(f)]
        if failures:
            errors.append(ValidationError(name, pd.concat(failures, ignore_index=True)))
        found = [r for r, _, _, _ in parts if r is not None and len(r)]
        if found:
            rejected[name] = pd.concat(found)
    if errors:  # without quarantine any failure; with it, only table-level ones (a missing column)
        raise errors[0]
    stats = {name: _merge_stats([s for _, _, s, _ in parts]) for name, parts in outcome.items()}
    heads = {name: next(h for _, _, _, h in parts if h is not None) for name, parts in outcome.items()}
    return DaskEngine(bucketed, stats, heads, n, valid_small, progress), rejected


_ID_GROUPS = 16


def _currencies(part: pd.DataFrame) -> set:
    return set(part["currency"].dropna().astype("str").unique())


def _outcome(result: tuple) -> tuple:
    """(rejected rows, failures, stats, zero-row frame of the valid columns) of one partition."""
    valid, rejected, failures = result
    return rejected, failures, _stats(valid), None if valid is None else valid.iloc[:0]
