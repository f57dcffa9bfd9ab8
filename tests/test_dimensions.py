"""Dimension columns (channel, priority, survey, component, touchpoint, event) arriving as categoricals
(dictionary-encoded Parquet) stay categorical through validation and give exactly the outputs of
plain text (issue 14)."""

from __future__ import annotations

import pandas as pd
import pytest

import csmetrics
from csmetrics.report import report
from csmetrics.schemas import DIMENSIONS

from .test_threads import assert_same


def as_categoricals(tables: dict[str, pd.DataFrame], unused: bool = True) -> dict[str, pd.DataFrame]:
    """Each dimension as a categorical in order of appearance (as Parquet dictionaries come), with an
    unused category when ``unused``."""
    out = dict(tables)
    for name, columns in DIMENSIONS.items():
        if name not in tables:
            continue
        frame = tables[name].copy()
        for column in columns:
            if column in frame:
                values = frame[column]
                categories = list(pd.unique(values.dropna())) + (["zz-unused"] if unused else [])
                frame[column] = pd.Categorical(values, categories=categories)
        out[name] = frame
    return out


def test_validation_keeps_categoricals_and_checks_their_values(sample_tables):
    tables = as_categoricals(sample_tables)
    surveys = csmetrics.validate(tables["surveys"], "surveys")
    assert isinstance(surveys["survey"].dtype, pd.CategoricalDtype)
    bad = tables["surveys"].copy()
    bad["survey"] = bad["survey"].cat.add_categories(["pulse"])
    bad.loc[bad.index[0], "survey"] = "pulse"
    with pytest.raises(csmetrics.ValidationError, match="survey"):
        csmetrics.validate(bad, "surveys")
    # categories that are not text become text
    numbered = tables["tickets"].assign(priority=pd.Categorical([1, 2] * (len(tables["tickets"]) // 2) + [1] * (len(tables["tickets"]) % 2)))
    valid = csmetrics.validate(numbered, "tickets")
    assert list(valid["priority"].cat.categories) == ["1", "2"]


@pytest.mark.parametrize("engine", ["pandas", "threads"])
def test_report_with_categorical_dimensions_equals_plain_text(sample_tables, engine):
    by = ["region"]
    expected = report(sample_tables, by=by, html=False)
    got = report(as_categoricals(sample_tables), by=by, html=False, engine=engine, **({"buckets": 2} if engine == "threads" else {}))
    assert_same(expected, got)


@pytest.mark.parametrize(("family", "table", "by"), [
    (csmetrics.support_metrics, "tickets", "channel"),
    (csmetrics.support_metrics, "tickets", ["priority", "channel"]),
    (csmetrics.survey_metrics, "surveys", "touchpoint"),
    (csmetrics.engagement_metrics, "events", None),
    (csmetrics.revenue_metrics, "billing", "plan"),
    (csmetrics.customer_metrics, "billing", "plan"),
    (csmetrics.value_metrics, "billing", None),
    (csmetrics.mrr_movements, "billing", None),
    (csmetrics.renewal_calendar, "billing", None),
])  # fmt: skip
def test_families_split_by_categorical_dimensions_equal_plain_text(sample_tables, family, table, by):
    options = {"fx": sample_tables["fx"]} if table == "billing" else {}
    if by is not None:
        options["by"] = by
    expected = family(sample_tables[table], **options)
    got = family(as_categoricals(sample_tables)[table], **options)
    pd.testing.assert_frame_equal(got, expected)
