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

import numpy as np
import pandas as pd

from csmetrics.frame import FrameBuilder, id_positions
from csmetrics.metrics._billing import prepare as prepare_billing
from csmetrics.metrics._common import Context, Grid, as_tuple, combine, dense, long_partial, make_context, segments_of
from csmetrics.metrics.revenue import current_mrr_of
from csmetrics.options import check_csat_thresholds
from csmetrics.periods import NAT, instants, period_codes
from csmetrics.schemas import AS_OF_COLUMNS, CXI_COMPONENTS, survey_scale
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


def answer_arrays(surveys: pd.DataFrame, context: Context) -> dict[str, np.ndarray]:
    """Per row: survey type, score, scale, answered (by as_of) and the answer's period."""
    spine = context.spine
    as_of = spine.as_of.value
    survey = surveys["survey"]
    score = surveys["score"].to_numpy(dtype=float, na_value=np.nan)
    responded = instants(surveys["responded_at"]) if "responded_at" in surveys else np.full(len(surveys), NAT)
    sent = instants(surveys["sent_at"]) if "sent_at" in surveys else np.full(len(surveys), NAT)
    answered_at = np.where(responded != NAT, responded, sent)
    answered = ~np.isnan(score) & (answered_at != NAT) & (answered_at <= as_of)
    kinds = pd.factorize(survey)  # a few survey types: compare codes, not strings
    low, high = survey_scale(surveys, kinds)
    codes, names = kinds
    position = {name: k for k, name in enumerate(names)}
    return {
        "is": {name: codes == position.get(name, -2) for name in ("nps", "csat", "ces", "cxi")},
        "score": score,
        "low": low,
        "high": high,
        "answered": answered,
        "answer_period": np.where(answered, spine.index(period_codes(answered_at, spine.freq, spine.tz)), -1),
        "sent": sent,
        "sent_period": np.where(
            (sent != NAT) & (sent <= as_of), spine.index(period_codes(sent, spine.freq, spine.tz)), -1
        ),
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


def partial(surveys: pd.DataFrame, context: Context, tickets: pd.DataFrame | None = None) -> pd.DataFrame:
    """Additive sums per (period index, segment values) over these survey rows (``tickets``: the same
    customers' tickets, when a segment is a ticket column)."""
    surveys = with_ticket_columns(surveys, tickets, context.options.get("from_tickets", ()))
    rows = answer_arrays(surveys, context)
    seg, seg_table = segments_of(surveys, context, "surveys")
    n = context.spine.n
    grid = Grid(n, len(seg_table) if seg_table is not None else 1)
    at_answer = grid.points(rows["answer_period"], seg)
    at_send = grid.points(rows["sent_period"], seg)
    score, low, high, answered, is_ = rows["score"], rows["low"], rows["high"], rows["answered"], rows["is"]

    # one bincount for every survey type's classes (a row has one survey type): NPS promoter/passive/
    # detractor at 0-2, CSAT negative/positive at 3-4, CES not easy/easy at 5-6, CXI component x
    # (top-two, bottom-two) boxes from 7; on a 3-point scale a middle answer is both boxes
    code = np.full(len(score), -1, dtype=np.int64)
    nps_rows = answered & is_["nps"]
    code[nps_rows] = np.select([score[nps_rows] >= 9, score[nps_rows] >= 7], [0, 1], 2)
    csat_rows = np.flatnonzero(answered & is_["csat"])
    threshold = csat_threshold(low[csat_rows], high[csat_rows], context.options["csat_thresholds"])
    code[csat_rows] = 3 + (score[csat_rows] >= threshold)
    ces = answered & is_["ces"]
    code[ces] = 5 + (score[ces] >= high[ces] - 2)
    component = surveys["component"] if "component" in surveys else pd.Series(None, index=surveys.index, dtype="str")
    codes, names = pd.factorize(component)  # map the few distinct names, not every row
    component_code = np.append(pd.Index(CXI_COMPONENTS).get_indexer(np.asarray(names, dtype=object)), -1)[codes]
    cxi_ok = answered & is_["cxi"] & (component_code >= 0)
    boxes = (score[cxi_ok] >= high[cxi_ok] - 1).astype(np.int64) + 2 * (score[cxi_ok] <= low[cxi_ok] + 1)
    code[cxi_ok] = 7 + component_code[cxi_ok] * 4 + boxes
    classes = grid.add_classes(at_answer, code, 7 + 4 * len(CXI_COMPONENTS))
    nps, csat, easy, cxi = classes[..., 0:3], classes[..., 3:5], classes[..., 5:7], classes[..., 7:]
    columns = {
        "nps_n": nps.sum(axis=2),
        "promoters": nps[..., 0],
        "passives": nps[..., 1],
        "detractors": nps[..., 2],
        "csat_n": csat.sum(axis=2),
        "csat_positive": csat[..., 1],
        "ces_n": easy.sum(axis=2),
        "ces_sum": grid.add(at_answer, np.where(ces, score, 0.0)),
        "ces_easy": easy[..., 1],
    }
    for k, name in enumerate(CXI_COMPONENTS):
        mine = cxi[..., 4 * k : 4 * k + 4]
        columns[f"cxi_{name}_n"] = mine.sum(axis=2)
        columns[f"cxi_{name}_top"] = mine[..., 1] + mine[..., 3]
        columns[f"cxi_{name}_bottom"] = mine[..., 2] + mine[..., 3]
    sends = grid.add_classes(at_send, answered.astype(np.int64), 2)
    columns["sent"] = sends.sum(axis=2)
    columns["sent_answered"] = sends[..., 1]
    has_comment = _has_text(surveys["comment"]) if "comment" in surveys else np.zeros(len(surveys), dtype=bool)
    answers = grid.add_classes(at_answer, np.where(answered, has_comment.astype(np.int64), -1), 2)
    columns["answers"] = answers.sum(axis=2)
    columns["commented"] = answers[..., 1]
    return long_partial(columns, PARTIAL_COLUMNS, seg_table, n)


def _has_text(column: pd.Series) -> np.ndarray:
    """Present and not only whitespace (Unicode), per row; Arrow kernels, no per-row Python."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = pa.array(column.astype("str").array)
    blank = pc.or_kleene(pc.utf8_is_space(values), pc.equal(pc.utf8_length(values), 0))
    return pc.fill_null(pc.invert(blank), False).to_numpy(zero_copy_only=False)


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
    surveys: pd.DataFrame, context: Context, *, billing: pd.DataFrame | None = None, fx: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The unhappy answers of these (validated) rows, with the customers' MRR at as_of given
    billing of the same customers; unsorted (see :func:`sort_followups`)."""
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
        billing, billing_context = prepare_billing(billing, fx=fx, as_of=context.spine.as_of)
        mrr = current_mrr_of(billing, billing_context)
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
