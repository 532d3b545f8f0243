"""The benchmarks stand on their own: they share benchmarks/_common.py, never the tests' helpers,
and each still starts (its --help)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from reliability_tools import SUBPROCESS_ENV

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}


def test_benchmarks_import_nothing_from_the_tests_nor_from_each_other():
    scripts = {p.stem for p in SCRIPTS}
    for path in [*SCRIPTS, BENCHMARKS / "_common.py"]:
        modules = _imported_modules(path)
        assert not {m for m in modules if m.startswith(("test_", "conftest", "tests"))}, path.name
        assert not modules & scripts, f"{path.name} imports another benchmark: share through _common.py"
        assert '"tests"' not in path.read_text(encoding="utf-8"), f"{path.name} puts tests/ on sys.path"


def test_few_shot_split_is_nested_balanced_and_disjoint():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from _common import few_shot_split
    finally:
        sys.path.remove(str(BENCHMARKS))
    labels = np.repeat([0, 1, 2], [80, 30, 12])
    train10, test = few_shot_split(labels, 10, seed=0, test_per_class=15)
    train5, _ = few_shot_split(labels, 5, seed=0, test_per_class=15)
    assert set(train5) <= set(train10)  # a seed's 5 are among its 10
    assert not set(test) & set(train10)
    assert np.bincount(labels[test]).tolist() == [15, 15, 2]  # capped per class; class 2 has 2 left
    assert np.bincount(labels[train10]).tolist() == [10, 10, 10]


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_benchmark_starts(script):
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                          env=SUBPROCESS_ENV, timeout=300)
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr[-2000:]
