"""Survey metrics (METRICS.md §7): NPS, CSAT, CES, CX index, response and comment rates.

Answers (non-null score) count in the period of responded_at (sent_at when a
row has no responded_at); sends count in the period of sent_at. Each survey type
feeds only its own metrics. Every metric here is additive per (period, segment)
(CXI through its per-component box counts), so ``partial`` + ``finalize`` is
exact for any split of the rows.

CSAT's positive threshold follows the answer scale: 1-5 -> 4, 1-7 -> 6, 0-10 or
1-10 -> 6 (METRICS.md; ``csat_thresholds`` overrides, keyed by (min, max)); any
other scale uses the top 40% of its range. CES's "easy" answers are the top
three points of its scale; CXI's top/bottom two boxes are the two highest /
lowest points of each answer's scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from csmetrics.frame import FrameBuilder, id_positions
from csmetrics.metrics._billing import BillingContext
from csmetrics.metrics._billing import prepare as prepare_billing
from csmetrics.metrics._common import Context, Grid, as_tuple, combine, dense, long_partial, make_context, segments_of
from csmetrics.metrics.revenue import current_mrr_of
from csmetrics.options import check_csat_thresholds
from csmetrics.periods import NAT, instants
from csmetrics.schemas import AS_OF_COLUMNS, CXI_COMPONENTS, survey_scale, value_codes
from csmetrics.stats import nps_interval
from csmetrics.validate import table_error

__all__ = [
    "LATEST_ANSWER_COLUMNS",
    "latest_answers",
    "DEFAULT_CSAT_THRESHOLDS",
    "PARTIAL_COLUMNS",
    "answer_arrays",
    "combine",
    "csat_threshold",
    "cxi",
    "finalize",
    "followup_rows",
    "partial",
    "prepare",
    "sort_followups",
    "with_ticket_columns",
]

DEFAULT_CSAT_THRESHOLDS: dict[tuple[float, float], float] = {(0, 1): 1, (1, 5): 4, (1, 7): 6, (0, 10): 6, (1, 10): 6}

PARTIAL_COLUMNS = (
    "nps_n",
    "promoters",
    "passives",
    "detractors",
    "csat_n",
    "csat_positive",
    "ces_n",
    "ces_sum",
    "ces_easy",
    *(f"cxi_{c}_{part}" for c in CXI_COMPONENTS for part in ("n", "top", "bottom")),
    "sent",
    "sent_answered",
    "answers",
    "commented",
)


def prepare(
    surveys: pd.DataFrame,
    *,
    freq: str = "M",
    by: Sequence[str] | str | None = None,
    customers: pd.DataFrame | None = None,
    tz: str = "UTC",
    as_of: object = None,
    start: object = None,
    end: object = None,
    csat_thresholds: Mapping[tuple[float, float], float] | None = None,
    ticket_columns: Sequence[str] = (),
) -> tuple[pd.DataFrame, Context]:
    """The context (spine, as_of, segments, CSAT thresholds) of validated surveys; ``ticket_columns``
    are the columns of the tickets given with them (an answer takes its ticket's as segments, §11)."""
    if "responded_at" not in surveys and "sent_at" not in surveys:
        raise table_error(
            "surveys", "responded_at", "required column is missing (responded_at or sent_at places answers in periods)"
        )
    thresholds = dict(DEFAULT_CSAT_THRESHOLDS)
    thresholds.update(check_csat_thresholds(csat_thresholds) or {})
    context = make_context(
        surveys,
        period_columns=["responded_at", "sent_at"],
        as_of_columns=AS_OF_COLUMNS["surveys"],
        freq=freq,
        by=by,
        customers=customers,
        tz=tz,
        as_of=as_of,
        start=start,
        end=end,
        table_name="surveys",
        extra_columns=ticket_columns,
        csat_thresholds=thresholds,
        from_tickets=tuple(c for c in as_tuple(by) if c not in surveys.columns and c in ticket_columns),
    )
    return surveys, context


def csat_threshold(low: np.ndarray, high: np.ndarray, thresholds: Mapping[tuple[float, float], float]) -> np.ndarray:
    """Positive threshold per answer from its scale; top 40% of the range for unlisted scales."""
    out = np.ceil(low + 0.6 * (high - low))
    for (scale_low, scale_high), threshold in thresholds.items():
        out = np.where((low == scale_low) & (high == scale_high), threshold, out)
    return out


def answer_arrays(surveys: pd.DataFrame, context: Context) -> dict:
    """Per row: survey type (``kind`` codes into ``kinds``; ``is`` masks), score, scale, answered (by
    as_of), the spine position of the answer's instant and of the send's (-1 for none or before the
    spine, ``n`` after it; an answer counts where ``answered``, a send where ``sent_by_as_of``)."""
    spine = context.spine
    as_of = spine.as_of.value
    score = surveys["score"].to_numpy(dtype=float, na_value=np.nan)
    responded = instants(surveys["responded_at"]) if "responded_at" in surveys else np.full(len(surveys), NAT)
    sent = instants(surveys["sent_at"]) if "sent_at" in surveys else np.full(len(surveys), NAT)
    # responded_at is never before sent_at (validated) and NAT is the smallest int64: the later of the
    # two is responded_at where there is one, else sent_at
    answered_at = np.maximum(responded, sent)
    answered = ~np.isnan(score) & (answered_at != NAT) & (answered_at <= as_of)
    kinds = value_codes(surveys["survey"])  # a few survey types: compare codes, not strings
    low, high = survey_scale(surveys, kinds)
    codes, names = kinds
    position = {name: k for k, name in enumerate(names)}
    return {
        "kind": codes,
        "kinds": names,
        "is": {name: codes == position.get(name, -2) for name in ("nps", "csat", "ces", "cxi")},
        "score": score,
        "low": low,
        "high": high,
        "answered": answered,
        "answer_period": spine.positions(answered_at),
        "sent": sent,
        "sent_period": spine.positions(sent),
        "sent_by_as_of": sent <= as_of,
    }


def with_ticket_columns(surveys: pd.DataFrame, tickets: pd.DataFrame | None, columns: Sequence[str]) -> pd.DataFrame:
    """The answers with their ticket's ``columns`` (joined on ticket_id; null where the ticket is unknown)."""
    if not columns:
        return surveys
    out = surveys.copy(deep=False)
    if tickets is None or "ticket_id" not in surveys:
        for column in columns:
            out[column] = pd.Series(None, index=surveys.index, dtype=object)
        return out
    position = id_positions(tickets["ticket_id"], surveys["ticket_id"])
    position = np.where(surveys["ticket_id"].isna().to_numpy(), -1, position)
    for column in columns:
        source = tickets[column]
        if pd.api.types.is_integer_dtype(source.dtype):
            source = source.astype("Int64")  # stays an integer with the unknown tickets as NA
        out[column] = pd.Series(source.array.take(position, allow_fill=True), index=surveys.index)
    return out


#: Class codes of an answer (one bincount counts them all, a row having one survey type): NPS
#: detractor / passive / promoter 0-2, CSAT negative / positive 3-4, CES not easy / easy 5-6, CXI
#: component k's (top-two, bottom-two) boxes at 7 + 4k + top + 2 * bottom (on a 3-point scale a middle
#: answer is in both), any other answer last; each doubled, + 1 when the answer has a comment.
_CXI_BASE = 7
_OTHER = _CXI_BASE + 4 * len(CXI_COMPONENTS)
_GROUP_BASE = np.array([0, 3, 5, *(_CXI_BASE + 4 * k for k in range(len(CXI_COMPONENTS))), _OTHER])


def partial(surveys: pd.DataFrame, context: Context, tickets: pd.DataFrame | None = None) -> pd.DataFrame:
    """Additive sums per (period index, segment values) over these survey rows (``tickets``: the same
    customers' tickets, when a segment is a ticket column)."""
    surveys = with_ticket_columns(surveys, tickets, context.options.get("from_tickets", ()))
    rows = answer_arrays(surveys, context)
    seg, seg_table = segments_of(surveys, context, "surveys")
    grid = Grid(context.spine.n, len(seg_table) if seg_table is not None else 1)
    at_answer = grid.cells(rows["answer_period"], seg) * rows["answered"]  # unanswered rows: the padding
    group = _answer_groups(surveys, rows)
    thresholds = _group_thresholds(rows, group, context.options["csat_thresholds"])
    score = rows["score"]
    code = _GROUP_BASE[group] + (score >= thresholds[0]) + (score >= thresholds[1]) + 2 * (score <= thresholds[2])
    has_comment = _has_text(surveys["comment"]) if "comment" in surveys else np.zeros(len(surveys), dtype=bool)
    classes = grid.count_classes(at_answer, 2 * code + has_comment, 2 * (_OTHER + 1))
    answers = classes[..., 0::2] + classes[..., 1::2]  # with or without a comment
    nps, csat, easy, cxi = answers[..., 0:3], answers[..., 3:5], answers[..., 5:7], answers[..., _CXI_BASE:_OTHER]
    columns = {
        "nps_n": nps.sum(axis=2),
        "promoters": nps[..., 2],
        "passives": nps[..., 1],
        "detractors": nps[..., 0],
        "csat_n": csat.sum(axis=2),
        "csat_positive": csat[..., 1],
        "ces_n": easy.sum(axis=2),
        "ces_sum": grid.sum(at_answer * (group == 2), score),  # other rows (and unanswered NaN) in the padding
        "ces_easy": easy[..., 1],
    }
    for k, name in enumerate(CXI_COMPONENTS):
        mine = cxi[..., 4 * k : 4 * k + 4]
        columns[f"cxi_{name}_n"] = mine.sum(axis=2)
        columns[f"cxi_{name}_top"] = mine[..., 1] + mine[..., 3]
        columns[f"cxi_{name}_bottom"] = mine[..., 2] + mine[..., 3]
    at_send = grid.cells(rows["sent_period"], seg) * rows["sent_by_as_of"]
    sends = grid.count_classes(at_send, rows["answered"], 2)
    columns["sent"] = sends.sum(axis=2)
    columns["sent_answered"] = sends[..., 1]
    columns["answers"] = answers.sum(axis=2)
    columns["commented"] = classes[..., 1::2].sum(axis=2)
    return long_partial(columns, PARTIAL_COLUMNS, seg_table, context.spine.n)


def _answer_groups(surveys: pd.DataFrame, rows: dict) -> np.ndarray:
    """Per row: 0 NPS, 1 CSAT, 2 CES, 3 + k CXI component k, then any other answer (a CXI answer of an
    unknown component too): one gather from a (survey type, component) table."""
    kinds = [str(k) for k in rows["kinds"]]
    other = 3 + len(CXI_COMPONENTS)
    if "component" in surveys:
        component, components = value_codes(surveys["component"])
        known = pd.Index(CXI_COMPONENTS).get_indexer(np.asarray(components, dtype=object))
    else:
        component, known = np.full(len(surveys), -1, dtype=np.int8), np.array([], dtype=np.int64)
    table = np.full((len(kinds) + 1, len(known) + 1), other, dtype=np.int64)  # last row / column: null
    for k, kind in enumerate(kinds):
        if kind == "cxi":
            table[k, : len(known)] = np.where(known >= 0, 3 + known, other)
        elif kind in ("nps", "csat", "ces"):
            table[k, :] = ("nps", "csat", "ces").index(kind)
    return table[rows["kind"], component]  # -1 (null) picks the last row / column


def _group_thresholds(
    rows: dict, group: np.ndarray, csat_thresholds: Mapping[tuple[float, float], float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three class thresholds per row (score >= first, score >= second, score <=
    third): NPS 7 and 9, CSAT its scale's threshold, CES the top three points, CXI the top two
    (first) and the bottom two (third) points of its scale. Where every answer of a group has one
    scale (the usual case) the thresholds are per group, gathered; else computed per row."""
    low, high = rows["low"], rows["high"]
    n_groups = len(_GROUP_BASE)
    row = np.full(n_groups, -1, dtype=np.int64)
    row[group] = np.arange(len(group))  # a row of each group (whichever write lands)
    present = row >= 0
    group_low, group_high = np.full(n_groups, np.nan), np.full(n_groups, np.nan)
    group_low[present], group_high[present] = low[row[present]], high[row[present]]
    per_group = _same(group_low[group], low) and _same(group_high[group], high)
    if per_group:  # the thresholds of each group once, then gathered for the rows
        low, high, kind = group_low, group_high, np.arange(n_groups)
    else:
        kind = group
    inf = np.full(len(low), np.inf)
    is_cxi = np.zeros(n_groups, dtype=bool)
    is_cxi[3 : 3 + len(CXI_COMPONENTS)] = True
    first = np.select(
        [kind == 0, kind == 1, kind == 2, is_cxi[kind]],
        [np.full(len(low), 7.0), csat_threshold(low, high, csat_thresholds), high - 2, high - 1],
        inf,
    )
    second = np.where(kind == 0, 9.0, inf)
    third = np.where(is_cxi[kind], low + 1, -inf)
    if per_group:
        return first[group], second[group], third[group]
    return first, second, third


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal arrays, NaN equal to NaN (the plain comparison first: it is the usual answer)."""
    return bool((a == b).all()) or np.array_equal(a, b, equal_nan=True)


def _has_text(column: pd.Series) -> np.ndarray:
    """Present and not only whitespace (Unicode), per row; no per-row Python. A value whose first byte
    is printable ASCII other than a space has text; the others (rare) go through Arrow's Unicode test."""
    import pyarrow as pa

    values = pa.array(column.astype("str").array)
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    out = [_chunk_has_text(c if c.type == pa.large_string() else c.cast(pa.large_string())) for c in chunks]
    return np.concatenate(out) if out else np.zeros(0, dtype=bool)


def _chunk_has_text(values: object) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    n, start = len(values), values.offset  # type: ignore[arg-type, attr-defined]
    validity, offsets_buffer, data_buffer = values.buffers()  # type: ignore[attr-defined]
    if n == 0 or data_buffer is None or data_buffer.size == 0:
        return np.zeros(n, dtype=bool)
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[start : start + n + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8)
    present = offsets[1:] > offsets[:-1]  # not empty (a null is empty)
    if validity is not None:
        present &= np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")[start : start + n].view(
            bool
        )
    first = data[np.minimum(offsets[:-1], len(data) - 1)]
    out = present & (first > 0x20) & (first < 0x7F)
    unsure = np.flatnonzero(present & ~out)
    if len(unsure):
        rest = values.take(pa.array(unsure))  # type: ignore[attr-defined]
        out[unsure] = pc.fill_null(pc.invert(pc.utf8_is_space(rest)), False).to_numpy(zero_copy_only=False)
    return out


def finalize(summed: pd.DataFrame, context: Context) -> pd.DataFrame:
    """The survey metric frame (§7) from summed partials."""
    a, seg_table = dense(summed, context.by, PARTIAL_COLUMNS, context.spine.n)
    builder = FrameBuilder(context.spine, seg_table)
    builder.ratio(
        "nps",
        a["promoters"] - a["detractors"],
        a["nps_n"],
        ci=nps_interval(a["promoters"], a["detractors"], a["nps_n"]),
    )
    builder.add("promoters", a["promoters"])
    builder.add("passives", a["passives"])
    builder.add("detractors", a["detractors"])
    builder.ratio("csat", a["csat_positive"], a["csat_n"])
    builder.ratio("ces", a["ces_sum"], a["ces_n"])
    builder.ratio("ces_easy_rate", a["ces_easy"], a["ces_n"])
    builder.add("cxi", cxi(a))
    builder.ratio("response_rate", a["sent_answered"], a["sent"])
    builder.ratio("comment_rate", a["commented"], a["answers"])
    return builder.build()


def cxi(a: dict[str, np.ndarray]) -> np.ndarray:
    """Mean over components with answers of (top-two share - bottom-two share) * 100."""
    scores, used = [], []
    for name in CXI_COMPONENTS:
        n = a[f"cxi_{name}_n"]
        with np.errstate(invalid="ignore", divide="ignore"):
            scores.append(np.where(n > 0, 100 * (a[f"cxi_{name}_top"] - a[f"cxi_{name}_bottom"]) / n, 0.0))
        used.append(n > 0)
    count = np.sum(used, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.sum(scores, axis=0) / np.maximum(count, 1), np.nan)


def followup_rows(
    surveys: pd.DataFrame,
    context: Context,
    *,
    billing: pd.DataFrame | None = None,
    fx: pd.DataFrame | None = None,
    billing_context: BillingContext | None = None,
    memo: Any = None,
) -> pd.DataFrame:
    """The unhappy answers of these (validated) rows, with the customers' MRR at as_of given
    billing of the same customers; unsorted (see :func:`sort_followups`). ``billing_context`` (a
    report's, with its policies) and ``memo``: the MRR from the ledger the report's revenue families
    build (no second one); without it, billing's own context at the surveys' as_of."""
    rows = answer_arrays(surveys, context)
    threshold = csat_threshold(rows["low"], rows["high"], context.options["csat_thresholds"])
    in_spine = (rows["answer_period"] >= 0) & (rows["answer_period"] < context.spine.n)
    unhappy = (
        rows["answered"]
        & in_spine
        & ((rows["is"]["nps"] & (rows["score"] <= 6)) | (rows["is"]["csat"] & (rows["score"] < threshold)))
    )
    picked = surveys.loc[unhappy]
    responded = picked["responded_at"] if "responded_at" in picked else picked["sent_at"]
    out = pd.DataFrame(
        {
            "period": context.spine.starts[rows["answer_period"][unhappy]],
            "customer_id": picked["customer_id"].to_numpy(),
            "response_id": picked["response_id"].to_numpy(),
            "survey": pd.Series(picked["survey"].to_numpy(), dtype="str").array,
            "score": picked["score"].to_numpy(dtype=float),
            "comment": pd.Series(picked["comment"].to_numpy(), dtype="str").array if "comment" in picked else None,
            "responded_at": responded.fillna(picked["sent_at"]) if "sent_at" in picked else responded,
        }
    )
    for column in ("touchpoint", "ticket_id"):
        if column in picked:
            values = picked[column].to_numpy()
            out[column] = pd.Series(values, dtype="str").array if column == "touchpoint" else values
    if billing is not None:
        if billing_context is None:
            billing, billing_context = prepare_billing(billing, fx=fx, as_of=context.spine.as_of)
        mrr = current_mrr_of(billing, billing_context, memo)
        position = id_positions(mrr.index, out["customer_id"])
        values = np.append(mrr.to_numpy(dtype=float), np.nan)  # -1 (no billing for the customer) picks NaN
        out["mrr"] = values[position]
    return out


#: The columns of :func:`latest_answers`.
LATEST_ANSWER_COLUMNS = ("customer_id", "latest_survey", "latest_score", "latest_answered_at")


def latest_answers(surveys: pd.DataFrame | None, as_of: pd.Timestamp) -> pd.DataFrame:
    """Each customer's latest NPS or CSAT answer by as_of (responded_at, else sent_at): its survey
    type, score and instant (ties: the later row)."""
    if surveys is None or not len(surveys):
        return pd.DataFrame(
            {
                "customer_id": pd.Series([], dtype=object),
                "latest_survey": pd.Series([], dtype="str"),
                "latest_score": pd.Series([], dtype=float),
                "latest_answered_at": pd.Series([], dtype="datetime64[ns, UTC]"),
            }
        )
    score = surveys["score"].to_numpy(dtype=float, na_value=np.nan)
    responded = instants(surveys["responded_at"]) if "responded_at" in surveys else np.full(len(surveys), NAT)
    sent = instants(surveys["sent_at"]) if "sent_at" in surveys else np.full(len(surveys), NAT)
    at = np.where(responded != NAT, responded, sent)
    kind = surveys["survey"].astype("str").to_numpy(dtype=object)
    keep = ~np.isnan(score) & (at != NAT) & (at <= as_of.value) & np.isin(kind, ["nps", "csat"])
    out = pd.DataFrame(
        {
            "customer_id": surveys["customer_id"].to_numpy()[keep],
            "latest_survey": pd.Series(kind[keep], dtype="str"),
            "latest_score": score[keep],
            "latest_answered_at": pd.DatetimeIndex(at[keep].view("M8[ns]")).tz_localize("UTC"),
        }
    )
    out = out.iloc[np.argsort(at[keep], kind="stable")]
    return out.drop_duplicates("customer_id", keep="last").reset_index(drop=True)


def sort_followups(rows: pd.DataFrame) -> pd.DataFrame:
    """Largest MRR first (customers without MRR last), then the latest answer; without MRR, latest first."""
    if "mrr" in rows:
        rows = rows.sort_values(
            ["mrr", "responded_at", "response_id"], ascending=[False, False, True], na_position="last", kind="stable"
        )
    else:
        rows = rows.sort_values(["responded_at", "response_id"], ascending=[False, True], kind="stable")
    return rows.reset_index(drop=True)
