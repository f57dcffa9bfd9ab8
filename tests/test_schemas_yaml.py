"""The published YAML contracts under schemas/ match the code."""

from __future__ import annotations

from pathlib import Path

import pandera.pandas as pa

from csmetrics.schemas_export import schema_yaml

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def test_yaml_contracts_match_the_models():
    texts = schema_yaml()
    on_disk = {p.stem: p.read_text() for p in SCHEMAS.glob("*.yaml")}
    assert set(on_disk) == set(texts), "run `csmetrics schemas export` after adding a table"
    for name, text in texts.items():
        assert on_disk[name] == text, f"schemas/{name}.yaml drifted from csmetrics/schemas.py: run `csmetrics schemas export`"


def test_yaml_contracts_round_trip_with_custom_checks():
    for name, text in schema_yaml().items():
        schema = pa.DataFrameSchema.from_yaml(text)
        assert schema.to_yaml() == text, name
