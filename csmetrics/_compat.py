"""Optional dependencies, asked about without importing them (the way polars' ``dependencies.py`` does).

Only :func:`csmetrics.engines.open_engine` looks at input types; it asks here whether a
table is a Dask DataFrame, and imports Dask through :func:`import_dask` only then.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["any_dask", "import_dask", "is_dask", "lazy_module"]


def is_dask(obj: Any) -> bool:
    """A Dask DataFrame (without importing dask)."""
    return type(obj).__module__.split(".")[0] in ("dask", "dask_expr") and hasattr(obj, "npartitions")


def any_dask(*objs: Any) -> bool:
    """Any of ``objs`` is a Dask DataFrame."""
    return any(is_dask(o) for o in objs)


def import_dask() -> ModuleType:
    """The dask module, or an ImportError that says which extra to install."""
    try:
        import dask
    except ImportError as err:  # pragma: no cover - the extra is not installed
        raise ImportError("the Dask engine needs the dask extra: pip install 'csmetrics[dask]'") from err
    return dask


class lazy_module:  # noqa: N801 - used like a module
    """A module imported on the first attribute access (scipy for the fitted models: importing
    csmetrics does not pay for it)."""

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)
