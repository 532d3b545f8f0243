"""The library's shape: UI-free, pickle-free, importable module by module, layers pointing one way."""
from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "inspector"
# The Streamlit app: it uses the library, never the command line's modules.
APP_FILES = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "ui").rglob("*.py"))]

# Lowest first. A module may import its own layer or a lower one, never a higher one.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # What an exported bundle carries (copied as inspector_runtime/): imports nothing of inspector.
    ("runtime", ("inspector.runtime",)),
    ("base", ("inspector.errors", "inspector._io", "inspector.config", "inspector.evaluation", "inspector.summary",
              "inspector.scale")),
    # The task registry and the Task contract: a leaf that imports no task (they load by name).
    ("task contract", ("inspector.tasks.base",)),
    ("data", ("inspector.data", "inspector.sample_data")),
    ("models", ("inspector.backbones", "inspector.models", "inspector.augment", "inspector.heatmap")),
    ("engine", ("inspector.engine",)),
    ("tasks", ("inspector.tasks",)),
    ("runs and inference", ("inspector.runs", "inspector.inference", "inspector.training", "inspector.reports", "inspector.gate",
                            "inspector.comparison", "inspector.evidence", "inspector.deploy")),
    ("jobs", ("inspector.jobs", "inspector.workspace", "inspector.sweep")),
    ("front ends", ("inspector.cli", "inspector.commands", "inspector.__main__")),
]


def _module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = _module_names()


def layer_of(module: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")


def imported_modules(module: str) -> set[str]:
    """Every inspector module `module` imports, at the top or inside a function (not TYPE_CHECKING)."""
    path = PACKAGE.parent.joinpath(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return _inspector_imports(path, package) - {module}


def _inspector_imports(path: Path, package: str) -> set[str]:
    """The inspector modules a file imports; relative imports are resolved against `package`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                 and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("inspector")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("inspector"):
                # `from . import anomaly` names a module; `from .x import name` names x.
                found |= {f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names}
    return found


def test_every_module_belongs_to_a_layer():
    for module in MODULES:
        if module != "inspector":  # the lazy public facade re-exports every layer
            layer_of(module)


@pytest.mark.parametrize("module", [m for m in MODULES if m != "inspector"])
def test_imports_point_down_the_layers(module):
    mine = layer_of(module)
    upward = sorted(m for m in imported_modules(module) if m != "inspector" and layer_of(m) > mine)
    assert not upward, (f"{module} ({LAYERS[mine][0]}) imports a higher layer: "
                        + ", ".join(f"{m} ({LAYERS[layer_of(m)][0]})" for m in upward))


@pytest.mark.parametrize("path", APP_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_app_never_imports_the_command_line(path):
    """The app calls the library; the CLI's modules are a front end beside it, not under it."""
    cli = dict(LAYERS)["front ends"]
    front_ends = sorted(m for m in _inspector_imports(path, package="")
                        if any(m == p or m.startswith(p + ".") for p in cli))
    assert not front_ends, f"{path.relative_to(ROOT)} imports {', '.join(front_ends)}: move what it needs into the library"


def test_the_task_contract_imports_no_task():
    """tasks/base.py is a leaf: the built-in tasks load by name on first use, so no import circle."""
    assert not {m for m in imported_modules("inspector.tasks.base") if m.startswith("inspector.tasks")}


def test_every_module_imports_first_in_a_fresh_interpreter():
    """An import cycle hides when modules load in a lucky order: import each one first, alone."""
    def import_alone(module: str) -> str | None:
        done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=300)
        return f"{module}: {done.stderr.strip().splitlines()[-1]}" if done.returncode else None

    with ThreadPoolExecutor(max_workers=4) as pool:  # one interpreter per module, a few at a time
        failures = [f for f in pool.map(import_alone, MODULES) if f]
    assert not failures, "\n".join(failures)


def test_a_plugin_can_import_the_extension_points_first():
    code = ("from inspector import register_strategy, Strategy, register_task, Task\n"
            "from inspector.tasks.classification import register_strategy as r\n"
            "print(r is register_strategy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_inference_loads_no_training_code(tiny_run):
    code = ("import sys\n"
            "from inspector.inference import load_predictor\n"
            f"p = load_predictor({str(tiny_run.run_dir)!r}, device='cpu')\n"
            "import numpy as np\n"
            "p.predict_proba([np.zeros((64, 64, 3), np.uint8)])\n"
            "heavy = ['inspector.training', 'inspector.engine.loop', 'inspector.engine.trainer', "
            "'inspector.tasks.classification.strategies', 'inspector.tasks.classification.linear', 'sklearn']\n"
            "print([m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_inspector_never_imports_streamlit():
    code = ("import importlib, sys\n"
            f"for m in {MODULES!r}: importlib.import_module(m)\n"
            "print('streamlit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_pickle_loading_in_the_library():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "import pickle" not in text, path
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path}: {line.strip()}"
