"""The ``cs`` pandas accessor: ``billing.cs.revenue_metrics(freq="M")`` and friends.

Thin and stateless: each method checks that the frame has the required columns
of its table (AttributeError naming what is missing) and calls the public
function, so there is one code path.
"""

from __future__ import annotations

import pandas as pd

from csmetrics import api
from csmetrics.frame import segment_columns, to_wide
from csmetrics.validate import required_columns, validate

__all__ = ["CsAccessor"]


@pd.api.extensions.register_dataframe_accessor("cs")
class CsAccessor:
    """Customer-success metrics on a DataFrame that holds one of the input tables."""

    def __init__(self, frame: pd.DataFrame):
        self._frame = frame

    def _as(self, table: str) -> pd.DataFrame:
        missing = [c for c in required_columns(table) if c not in self._frame.columns]
        if missing:
            raise AttributeError(f"this frame is not a {table} table: missing column(s) {missing}")
        return self._frame

    def validate(self, table: str, **kwargs):  # noqa: ANN201 - the frame, or (valid, rejected)
        """:func:`csmetrics.validate` on this frame as ``table``."""

        return validate(self._as(table), table, **kwargs)

    # billing
    def revenue_metrics(self, **kwargs) -> pd.DataFrame:
        """:func:`csmetrics.revenue_metrics` on this billing table."""

        return api.revenue_metrics(self._as("billing"), **kwargs)

    def customer_metrics(self, **kwargs) -> pd.DataFrame:
        """:func:`csmetrics.customer_metrics` on this billing table."""

        return api.customer_metrics(self._as("billing"), **kwargs)

    def mrr_movements(self, **kwargs) -> pd.DataFrame:
        """:func:`csmetrics.mrr_movements` on this billing table."""

        return api.mrr_movements(self._as("billing"), **kwargs)

    def cohort_table(self, **kwargs) -> pd.DataFrame:
        """:func:`csmetrics.cohort_table` on this billing table."""

        return api.cohort_table(self._as("billing"), **kwargs)

    def rfm_summary(self, **kwargs) -> pd.DataFrame:
        """:func:`csmetrics.rfm_summary` on this billing table."""

        return api.rfm_summary(self._as("billing"), **kwargs)

    def cohort_retention_model(self, **kwargs) -> pd.DataFrame:
        """:func:`csmetrics.cohort_retention_model` on this billing table."""

        return api.cohort_retention_model(self._as("billing"), **kwargs)

    def renewal_calendar(self, **kwargs) -> pd.DataFrame:
        """:func:`csmetrics.renewal_calendar` on this billing table."""

        return api.renewal_calendar(self._as("billing"), **kwargs)

    # tickets
    def support_metrics(self, **kwargs) -> pd.DataFrame:
        """:func:`csmetrics.support_metrics` on this tickets table."""

        return api.support_metrics(self._as("tickets"), **kwargs)

    # surveys
    def survey_metrics(self, **kwargs) -> pd.DataFrame:
        """:func:`csmetrics.survey_metrics` on this surveys table."""

        return api.survey_metrics(self._as("surveys"), **kwargs)

    def followups(self, **kwargs) -> pd.DataFrame:
        """:func:`csmetrics.followups` on this surveys table."""

        return api.followups(self._as("surveys"), **kwargs)

    # events
    def engagement_metrics(self, **kwargs) -> pd.DataFrame:
        """:func:`csmetrics.engagement_metrics` on this events table."""

        return api.engagement_metrics(self._as("events"), **kwargs)

    def usage_retention(self, **kwargs) -> pd.DataFrame:
        """:func:`csmetrics.usage_retention` on this events table."""

        return api.usage_retention(self._as("events"), **kwargs)

    def active_days_distribution(self, **kwargs) -> pd.DataFrame:
        """:func:`csmetrics.active_days_distribution` on this events table."""

        return api.active_days_distribution(self._as("events"), **kwargs)

    def health_scores(self, scorecard=None, **tables) -> pd.DataFrame:
        """Health scores with this frame as the events table:
        ``events.cs.health_scores(tickets=..., surveys=..., billing=...)``."""

        return (scorecard or api.HealthScorecard()).score(events=self._as("events"), **tables)

    # billing (value)
    def value_metrics(self, **kwargs) -> pd.DataFrame:
        """:func:`csmetrics.value_metrics` on this billing table."""

        return api.value_metrics(self._as("billing"), **kwargs)

    # metric frames
    def _metric_frame(self) -> pd.DataFrame:
        missing = [c for c in ("period", "metric", "value") if c not in self._frame.columns]
        if missing:
            raise AttributeError(f"this frame is not a metric frame: missing column(s) {missing}")
        return self._frame

    def wide(self, column: str = "value") -> pd.DataFrame:
        """:func:`csmetrics.to_wide` of this metric frame."""

        return to_wide(self._metric_frame(), column)

    def plot(self, metric: str, ax=None):
        """A line per segment of ``metric`` over the periods, with its 95% interval where there is one."""
        import matplotlib.pyplot as plt

        frame = self._metric_frame()
        rows = frame[frame["metric"] == metric]
        if rows.empty:
            raise KeyError(f"metric {metric!r} is not in this frame")
        ax = ax or plt.subplots(figsize=(7, 3))[1]
        segments = [c for c in segment_columns(rows) if rows[c].notna().any()]
        groups = rows.groupby(segments, dropna=False, sort=True) if segments else [((), rows)]
        for key, part in groups:
            part = part.sort_values("period")
            label = ", ".join(str(k) for k in (key if isinstance(key, tuple) else (key,))) or metric
            ax.plot(part["period"], part["value"], marker="o", ms=3, label=label)
            if part["ci_low"].notna().any():
                ax.fill_between(part["period"], part["ci_low"], part["ci_high"], alpha=0.2)
        ax.set_title(metric)
        if segments:
            ax.legend()
        return ax
