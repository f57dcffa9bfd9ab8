"""Adapters from the raw tables data teams already have to csmetrics' tables (METRICS.md §17).

:func:`fivetran_stripe` reads Fivetran's Stripe schema (a folder of ``<table>.csv`` /
``<table>_data.csv`` / ``.parquet`` files, or a mapping of frames). Every adapter validates its
output with the table schemas and returns an :class:`Converted` with the tables, the as_of it
read (the newest ``_fivetran_synced``) and what it used.
"""

from __future__ import annotations

from csmetrics.adapters.stripe import AdapterError, Converted, fivetran_stripe, minor_unit_exponent, read_source
from csmetrics.adapters.zendesk import ZENDESK_ZONES, fivetran_zendesk

__all__ = [
    "ADAPTERS",
    "ZENDESK_ZONES",
    "AdapterError",
    "Converted",
    "fivetran_stripe",
    "fivetran_zendesk",
    "minor_unit_exponent",
    "read_source",
]

#: Adapters by their ``csmetrics convert`` name.
ADAPTERS = {"fivetran-stripe": fivetran_stripe, "fivetran-zendesk": fivetran_zendesk}
