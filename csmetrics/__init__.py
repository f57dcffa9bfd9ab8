"""csmetrics: customer-success metrics from the raw tables a company already has."""

from __future__ import annotations

from csmetrics.validate import TABLES, ValidationError, validate, validate_tables

__version__ = "0.1.0"

__all__ = [
    "TABLES",
    "ValidationError",
    "__version__",
    "validate",
    "validate_tables",
]
