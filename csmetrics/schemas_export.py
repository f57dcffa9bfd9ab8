"""Export the pandera models as YAML contracts (``schemas/<table>.yaml``)."""

from __future__ import annotations

from pathlib import Path

from csmetrics.schemas import MetricFrame
from csmetrics.validate import MODELS

__all__ = ["export_schemas", "schema_yaml"]


def schema_yaml() -> dict[str, str]:
    """The YAML text of each contract, by file stem."""
    texts = {name: str(model.to_schema().to_yaml()) for name, model in MODELS.items()}
    texts["metric_frame"] = str(MetricFrame.to_schema().to_yaml())
    return texts


def export_schemas(out: Path) -> list[Path]:
    """Write every contract into ``out``; returns the paths written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in schema_yaml().items():
        path = out / f"{name}.yaml"
        path.write_text(text)
        written.append(path)
    return written
