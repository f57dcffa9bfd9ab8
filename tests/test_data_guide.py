"""docs/DATA_GUIDE.md: its examples run, every column of every table is documented, README links it."""

from __future__ import annotations

import re
from pathlib import Path

from csmetrics.validate import TABLES, schema_of

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "DATA_GUIDE.md").read_text()


def test_the_guide_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", GUIDE, flags=re.S)
    assert len(blocks) >= 2
    for block in blocks:
        exec(compile(block, "DATA_GUIDE.md", "exec"), {})


def test_every_column_of_every_table_is_in_the_guide():
    for table in TABLES:
        assert f"### {table}" in GUIDE or f"| {table} |" in GUIDE, table
        for column in schema_of(table).columns:
            assert column in GUIDE, f"{table}.{column}"


def test_readme_links_the_guide():
    assert "docs/DATA_GUIDE.md" in (ROOT / "README.md").read_text()
