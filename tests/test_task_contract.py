"""The task contract, checked over every registered task in the style of scikit-learn's
check_estimator: train on sample data, predict through the hooks, evaluate, export with parity,
serve one request; plus the registry's rules and a toy task registered from outside the package
that the CLI offers and trains."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from inspector import TrainConfig, train
from inspector.data import discover_dataset, load_image, to_rgb_array
from inspector.errors import InspectorError
from inspector.inference import load_predictor
from inspector.runs import Run, RunStore
from inspector.tasks.base import TASKS, PredictOptions, Predictor, Task, create_task, list_tasks, register_task

PACKAGE = Path(__file__).resolve().parents[1] / "inspector"
REPO = PACKAGE.parent
BUILTIN = ["classification", "anomaly"]
FAST = {"classification": dict(strategy="linear_probe", image_size=96, seed=3, max_folds=2),
        "anomaly": dict(image_size=96, seed=3)}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def test_the_registry_is_a_leaf_that_imports_no_task():
    for name in ("base.py", "__init__.py"):
        imported = _imports(PACKAGE / "tasks" / name)
        assert not [m for m in imported if "classification" in m or "anomaly" in m], (name, imported)


def test_the_builtin_tasks_load_on_first_use_in_a_fresh_interpreter():
    import subprocess
    import sys

    code = ("import sys; from inspector.tasks.base import list_tasks, TASKS; assert not TASKS; "
            "print(sorted(list_tasks())); assert 'inspector.tasks.anomaly.detector' in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(sorted(BUILTIN))


def test_the_default_task_comes_first_whatever_was_imported_first():
    import subprocess
    import sys

    code = "import inspector.tasks.anomaly; from inspector.tasks.base import list_tasks; print(list(list_tasks()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(BUILTIN), "the Train page's first choice and the CLI's default is classification"


def test_a_second_task_under_a_taken_name_is_an_error():
    class Impostor(Task):
        name = "classification"
        summary = "not the real one"

    with pytest.raises(ValueError, match="already registered"):
        register_task(Impostor)
    assert TASKS["classification"] is not Impostor
    assert register_task(TASKS["classification"]) is TASKS["classification"]  # the same class again is fine


def test_no_task_name_is_compared_outside_the_tasks():
    """Front ends call the task's hooks; they never branch on "anomaly" or "classification"."""
    offenders = []
    files = [*PACKAGE.rglob("*.py"), REPO / "app.py", *(REPO / "pages").glob("*.py"), *(REPO / "ui").glob("*.py")]
    for path in files:
        if (PACKAGE / "tasks") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                if any(isinstance(o, ast.Constant) and o.value in BUILTIN for o in operands) or any(
                        isinstance(o, (ast.Tuple, ast.List, ast.Set)) and any(
                            isinstance(e, ast.Constant) and e.value in BUILTIN for e in o.elts) for o in operands):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


@pytest.fixture(scope="module", params=BUILTIN)
def trained(request, tiny_data, tmp_path_factory):
    name = request.param
    runs = tmp_path_factory.mktemp(f"runs-{name}")
    result = train(tiny_data, TrainConfig(task=name, **FAST[name]), runs_dir=runs)
    return create_task(name), result


def test_every_registered_task_is_covered():
    assert set(BUILTIN) <= set(list_tasks())


@pytest.mark.slow
def test_task_contract_predict_evaluate_and_read_back(trained, tiny_data):
    task, result = trained
    assert result.status == "completed" and result.summary.task == task.name
    predictor = load_predictor(result.run_dir, device="cpu")
    assert isinstance(predictor, Predictor) and predictor.task == task.name
    assert predictor.run_dir == result.run_dir, "the loader gives the predictor its run folder"
    images = [to_rgb_array(load_image(p)) for p in sorted((tiny_data / "crack").iterdir())[:2]]
    options = PredictOptions()
    rows = task.result_rows(task.configure(predictor, options), images, options)
    assert len(rows) == 2 and all(isinstance(task.describe_row(r), str) and task.row_words(r) for r in rows)
    json.dumps(rows)  # rows leave the library as JSON
    header = task.result_header(predictor)
    assert header["task"] == task.name
    foreign = {key: value for key, value in dict(ok_classes=("ok",), threshold=0.4, target_frr=0.1).items()
               if key not in task.accepts}
    for key, value in foreign.items():
        with pytest.raises(InspectorError):
            task.configure(predictor, PredictOptions(**{key: value}))

    dataset = discover_dataset(tiny_data)
    report = task.evaluate_predictor(predictor, dataset, PredictOptions(), source=str(tiny_data))
    json.dumps(report)
    assert task.evaluation_lines(report) and all(isinstance(line, str) for line in task.evaluation_lines(report))

    info = RunStore(result.run_dir.parent).list_runs()[0]
    assert info.summary == result.summary, "the run store gives back the typed summary training built"
    assert task.headline(info.summary) and task.result_words(info.summary)
    shown = [c for c in task.columns if info.summary.value(c.key) is not None]
    assert shown and all(c.text(info.summary.value(c.key)) != "-" for c in shown)
    assert Run(result.run_dir).evaluation_report() == task.read_evaluation(Run(result.run_dir).evaluation())
    assert Run(result.run_dir).evaluation_report() is not None
    stored = Run(result.run_dir).evaluation()
    assert task.read_evaluation(stored).to_dict() == stored, "the typed report and evaluation.json say the same"
    assert isinstance(result.evaluation, task.evaluation_type), "training hands back the typed report"


@pytest.mark.slow
def test_task_contract_export_with_parity_and_serve_one_request(trained, tiny_data, tmp_path):
    from fastapi.testclient import TestClient

    from inspector.deploy.bundle import export_bundle
    from inspector.deploy.service import ServiceConfig, create_app

    task, result = trained
    assert task.parity is not None, f"{task.name} cannot be exported"
    exported = export_bundle(result.run_dir, tmp_path / "bundle")
    parity = json.loads((exported.path / "parity.json").read_text())
    assert parity["passed"] and parity["task"] == task.name
    labels = json.loads((exported.path / "labels.json").read_text())
    assert labels["task"] == task.name and labels["runtime_outputs"] == task.runtime_outputs

    path = sorted((tiny_data / "crack").iterdir())[0]
    with TestClient(create_app(result.run_dir, ServiceConfig(), device="cpu")) as client:
        response = client.post("/predict", files=[("files", (path.name, path.read_bytes(), "image/png"))])
    assert response.status_code == 200, response.text
    row = response.json()["predictions"][0]
    predictor = load_predictor(result.run_dir, device="cpu")
    expected = task.result_rows(predictor, [to_rgb_array(load_image(path))], PredictOptions())[0]
    assert set(expected) <= set(row) and "score" in row
    for key, value in expected.items():
        if isinstance(value, float):
            assert row[key] == pytest.approx(value, abs=1e-6), key
        elif not isinstance(value, dict):
            assert row[key] == value, key


@pytest.fixture
def toy_task():
    """The toy task registered for one test only (the other tests see the built-in tasks alone)."""
    import toy_task as module

    register_task(module.MeanColourTask)
    yield module
    TASKS.pop(module.NAME, None)


@pytest.mark.slow
def test_a_task_from_outside_the_package_appears_in_the_cli_and_trains(toy_task, tiny_data, tmp_path, capsys):
    from inspector.cli import build_parser, main

    assert toy_task.NAME in list_tasks()
    assert toy_task.NAME in _train_help(build_parser()), "--task offers every registered task"
    runs = tmp_path / "runs"
    assert main(["train", str(tiny_data), "--task", toy_task.NAME, "--runs-dir", str(runs), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["task"] == toy_task.NAME and summary["val_accuracy"] is not None
    run_dir = next(runs.iterdir())
    images = [str(p) for p in sorted((tiny_data / "ok").iterdir())[:2]]
    assert main(["predict", str(run_dir), *images, "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["task"] == toy_task.NAME and [Path(r["path"]).name for r in out["predictions"]] == \
        [Path(p).name for p in images]
    assert all(set(r["probabilities"]) == {"crack", "ok", "scratch"} for r in out["predictions"])


def _train_help(parser) -> str:
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices["train"].format_help()
