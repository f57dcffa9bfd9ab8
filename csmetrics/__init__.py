"""csmetrics: customer-success metrics from the raw tables a company already has."""

from __future__ import annotations

from csmetrics import accessor as _accessor  # noqa: F401  (registers the `cs` accessor)
from csmetrics.frame import compare_periods, reaggregate, to_wide
from csmetrics.metrics.customers import customer_metrics
from csmetrics.metrics.revenue import cohort_table, current_mrr, mrr_movements, revenue_metrics
from csmetrics.metrics.support import support_metrics
from csmetrics.metrics.surveys import followups, survey_metrics
from csmetrics.validate import TABLES, ValidationError, validate, validate_tables

__version__ = "0.1.0"

__all__ = [
    "TABLES",
    "ValidationError",
    "__version__",
    "cohort_table",
    "compare_periods",
    "current_mrr",
    "customer_metrics",
    "followups",
    "mrr_movements",
    "reaggregate",
    "revenue_metrics",
    "support_metrics",
    "survey_metrics",
    "to_wide",
    "validate",
    "validate_tables",
]
