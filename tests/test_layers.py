"""The layers of ARCHITECTURE.md: every import (function-level ones included) points down a layer or
across one, never up; ``metrics/`` and ``engines/`` never import each other; no csmetrics module
imports another inside a function; no ``_private`` name is imported across modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "csmetrics"

LAYERS = {
    0: {"_version", "_compat", "schemas", "periods", "stats", "catalog", "io", "options", "datagen", "schedule", "models", "charts", "sorting", "memo"},
    1: {"validate", "frame", "schemas_export", "checks"},
    2: {"metrics", "engines", "adapters"},
    3: {"plans"},
    4: {"api"},
    5: {"report", "config", "output", "dashboard"},
    6: {"cli", "accessor", "__init__"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top(module: str) -> str:
    """The layer key of a csmetrics module: its first component below the package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(module: str) -> int:
    key = _top(module)
    for layer, names in LAYERS.items():
        if key in names:
            return layer
    raise AssertionError(f"{module} has no layer in tests/test_layers.py: add it to LAYERS")


def _imports(path: Path):
    """(imported csmetrics module, names, line, inside a function) of every import in a file."""
    tree = ast.parse(path.read_text())
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rsplit(".", 1)[0]
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inside = {id(node) for f in functions for node in ast.walk(f) if node is not f}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "csmetrics":
                    yield alias.name, [], node.lineno, id(node) in inside
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if module.split(".")[0] != "csmetrics":
                continue
            names = [a.name for a in node.names]
            # `from csmetrics import api` imports the module csmetrics.api
            submodules = [f"{module}.{n}" for n in names if (PACKAGE.parent / f"{module}.{n}".replace(".", "/")).with_suffix(".py").exists()
                          or (PACKAGE.parent / f"{module}.{n}".replace(".", "/")).is_dir()]  # fmt: skip
            for sub in submodules:
                yield sub, [], node.lineno, id(node) in inside
            rest = [n for n in names if f"{module}.{n}" not in submodules]
            if rest:
                yield module, rest, node.lineno, id(node) in inside


FILES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(PACKAGE)) for p in FILES])
def test_imports_point_down_the_layers(path):
    source = _module_name(path)
    mine = _layer(source)
    problems = []
    for target, names, line, in_function in _imports(path):
        if target == "csmetrics" and source != "csmetrics":
            problems.append(f"line {line}: imports the package itself ({names})")
            continue
        theirs = _layer(target)
        if theirs > mine:
            problems.append(f"line {line}: {target} (layer {theirs}) is above {source} (layer {mine})")
        groups = {_top(source), _top(target)}
        if groups == {"metrics", "engines"}:
            problems.append(f"line {line}: {source} and {target}: metrics/ and engines/ never import each other")
        if in_function:
            problems.append(f"line {line}: {target} imported inside a function")
        private = [n for n in names if n.startswith("_") and n != "__version__"]
        if private:
            problems.append(f"line {line}: private name(s) {private} imported from {target}")
    assert not problems, f"{source}:\n  " + "\n  ".join(problems)


def test_every_module_has_a_layer():
    for path in FILES:
        _layer(_module_name(path))


def test_the_checker_catches_an_upward_arrow(tmp_path):
    """The test above can fail: a metrics module importing the API is reported."""
    bad = PACKAGE / "metrics" / "_layer_probe.py"
    bad.write_text("from csmetrics.api import support_metrics\n\ndef f():\n    from csmetrics.engines import open_engine\n")
    try:
        with pytest.raises(AssertionError, match="above|never import each other|inside a function"):
            test_imports_point_down_the_layers(bad)
    finally:
        bad.unlink()
