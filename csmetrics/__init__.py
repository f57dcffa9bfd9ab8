"""csmetrics: customer-success metrics from the raw tables a company already has."""

from __future__ import annotations

from csmetrics import accessor as _accessor  # noqa: F401  (registers the `cs` accessor)
from csmetrics._version import __version__
from csmetrics.api import (
    BetaGeoModel,
    GammaGammaModel,
    HealthScorecard,
    ModelFitError,
    ShiftedBetaGeometric,
    active_days_distribution,
    at_risk,
    cohort_retention_model,
    cohort_table,
    current_mrr,
    customer_metrics,
    engagement_metrics,
    followups,
    health_metrics,
    mrr_movements,
    predictive_clv,
    renewal_calendar,
    revenue_metrics,
    rfm_summary,
    support_metrics,
    survey_metrics,
    usage_retention,
    value_metrics,
)
from csmetrics.checks import MappingWarning, check_mapping
from csmetrics.frame import compare_periods, reaggregate, to_wide
from csmetrics.options import ConfigError, NotFittedError
from csmetrics.report import Report, report
from csmetrics.schedule import Schedule, business_minutes
from csmetrics.validate import TABLES, ValidationError, validate, validate_tables

__all__ = [
    "MappingWarning",
    "check_mapping",
    "BetaGeoModel",
    "GammaGammaModel",
    "ModelFitError",
    "ShiftedBetaGeometric",
    "cohort_retention_model",
    "predictive_clv",
    "rfm_summary",
    "ConfigError",
    "HealthScorecard",
    "NotFittedError",
    "Report",
    "Schedule",
    "TABLES",
    "ValidationError",
    "__version__",
    "active_days_distribution",
    "at_risk",
    "business_minutes",
    "cohort_table",
    "compare_periods",
    "current_mrr",
    "customer_metrics",
    "engagement_metrics",
    "followups",
    "health_metrics",
    "mrr_movements",
    "renewal_calendar",
    "reaggregate",
    "report",
    "revenue_metrics",
    "support_metrics",
    "survey_metrics",
    "usage_retention",
    "to_wide",
    "validate",
    "validate_tables",
    "value_metrics",
]
