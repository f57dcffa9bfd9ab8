"""The README's Quick start holds exactly two bash blocks, and .ci/run runs the second."""

from __future__ import annotations

import re

from .conftest import ROOT


def quick_start_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_quick_start_has_two_commands_and_ci_runs_the_test_one():
    blocks = quick_start_blocks()
    assert len(blocks) == 2
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert ci == [blocks[1]]
    assert "sample_data" in blocks[0]


def test_tour_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    tour = re.findall(r"```python\n(.*?)```", text.split("## A short tour", 1)[1], flags=re.S)[0]
    monkeypatch.chdir(ROOT)
    tour = tour.replace('report.write("report")', f'report.write({str(tmp_path / "report")!r})')
    exec(compile(tour, "README tour", "exec"), {})
