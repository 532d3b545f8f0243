"""The `inspector` command as a script would use it."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from inspector.cli import main

FAST = ["--image-size", "96", "--seed", "2"]


def _json_tail(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("cli-runs")
    out = subprocess.run([sys.executable, "-m", "inspector.cli", "train", str(tiny_data), "--strategy",
                          "linear_probe", "--runs-dir", str(runs), "--json", *FAST],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return _json_tail(out.stdout), out


def test_train_json_is_the_last_stdout_line_and_progress_goes_to_stderr(trained):
    result, out = trained
    assert {"run_id", "run_dir", "backbone", "strategy", "val_accuracy", "train_seconds", "skipped"} <= result.keys()
    assert result["backbone"] == "tf_efficientnet_lite0" and result["strategy"] == "linear_probe"
    assert 0 <= result["val_accuracy"] <= 1 and result["skipped"] == []
    assert "epoch" in out.stderr and "epoch" not in out.stdout
    # 24 images cannot pin an accuracy down: the interval and a plain warning say so.
    low, high = result["val_accuracy_ci"]
    assert low <= result["val_accuracy"] <= high and high - low > 0.25
    assert "too wide to trust" in result["val_accuracy_warning"]
    assert "warning: the 95% interval" in out.stderr


def test_evaluate_predict_and_runs(trained, tiny_data, tmp_path, capsys):
    run_dir = trained[0]["run_dir"]
    assert main(["evaluate", run_dir, str(tiny_data), "--json"]) == 0
    report = _json_tail(capsys.readouterr().out)
    assert report["n_images"] == 24 and report["classes"] == ["crack", "ok", "scratch"]
    assert len(report["confusion_matrix"]) == 3 and report["skipped"] == []
    assert report["accuracy"] > 0.6

    (tiny_data.parent / "broken.jpg").write_bytes(b"not really a jpeg")
    csv_path = tmp_path / "out.csv"
    assert main(["predict", run_dir, str(tiny_data / "ok"), str(tiny_data.parent / "broken.jpg"),
                 "--ok-classes", "ok", "--csv", str(csv_path), "--json"]) == 0
    result = _json_tail(capsys.readouterr().out)
    assert len(result["predictions"]) == 8
    assert result["skipped"][0]["path"].endswith("broken.jpg")
    assert {p["verdict"] for p in result["predictions"]} <= {"OK", "NG"}
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 8 and {"path", "label", "verdict", "p_ok"} <= rows[0].keys()

    assert main(["runs", "--runs-dir", str(trained[0]["run_dir"]).rsplit("/", 1)[0], "--json"]) == 0
    assert _json_tail(capsys.readouterr().out)["runs"][0]["run_id"] == trained[0]["run_id"]


def _one_class(tmp_path, tiny_data):
    import shutil

    shutil.copytree(tiny_data / "ok", tmp_path / "data" / "ok")
    return str(tmp_path / "data")


MISTAKES = {
    "missing folder": (lambda tmp, tiny: ["train", str(tmp / "nope")], "does not exist"),
    "empty folder": (lambda tmp, tiny: ["train", str(tmp)], ""),
    "one class only": (lambda tmp, tiny: ["train", _one_class(tmp, tiny)], "two classes"),
    "unknown backbone": (lambda tmp, tiny: ["train", str(tiny), "--backbone", "resnet_banana"], "Unknown backbone"),
    "not a run": (lambda tmp, tiny: ["predict", str(tmp), str(tiny / "ok")], "not a training run"),
    "offline download-only backbone": (lambda tmp, tiny: ["train", str(tiny), "--backbone", "convnext_tiny"],
                                       "tf_efficientnet_lite0"),
    "bad epochs": (lambda tmp, tiny: ["train", str(tiny), "--epochs", "0"], "epochs"),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_user_mistakes_give_one_error_line_and_exit_2(mistake, tmp_path, tiny_data, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    make_args, expected = MISTAKES[mistake]
    args = make_args(tmp_path, tiny_data)
    if args[0] == "train":
        args += ["--runs-dir", str(tmp_path / "runs")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and expected in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_the_installed_entry_point_prints_no_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "inspector.cli", "predict", str(tmp_path), "x.png"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr


def test_train_and_evaluate_accept_a_zip_and_leave_no_extracted_files(tiny_data, tmp_path, capsys, monkeypatch):
    import shutil
    import tempfile

    archive = shutil.make_archive(str(tmp_path / "parts"), "zip", root_dir=tiny_data.parent, base_dir="train")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert main(["train", archive, "--strategy", "linear_probe", "--runs-dir", str(tmp_path / "runs"),
                 "--json", *FAST]) == 0
    result = _json_tail(capsys.readouterr().out)
    assert result["status"] == "completed" and result["skipped"] == []
    assert main(["evaluate", result["run_dir"], archive, "--json"]) == 0
    assert _json_tail(capsys.readouterr().out)["n_images"] == 24
    assert list(scratch.iterdir()) == []  # the extracted copies are gone


def test_predict_and_runs_print_what_the_task_says(trained, tiny_data, capsys):
    from inspector.runs import RunStore
    from inspector.tasks.base import create_task

    run_dir = trained[0]["run_dir"]
    images = sorted(str(p) for p in (tiny_data / "ok").iterdir())[:2]
    assert main(["predict", run_dir, *images, "--ok-classes", "ok"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == images
    assert all(len(line.split("\t")) == 3 and line.split("\t")[2].split()[-1] in {"OK", "NG"} for line in lines)
    # Options of another task are refused in plain words, not ignored.
    assert main(["predict", run_dir, *images, "--target-frr", "0.1"]) == 2
    assert "--target-frr does not apply" in capsys.readouterr().err

    runs_dir = run_dir.rsplit("/", 1)[0]
    assert main(["runs", "--runs-dir", runs_dir]) == 0
    header, _, row = capsys.readouterr().out.splitlines()[:3]
    info = RunStore(runs_dir).list_runs()[0]
    assert header.split()[-1] == "result"
    assert row.split()[-1] == create_task(info.task).headline(info.run_summary)


def test_every_command_is_one_module_and_the_parser_loads_no_torch():
    code = ("import sys\n"
            "from inspector.cli import build_parser\n"
            "from inspector.commands import COMMANDS, command_modules\n"
            "sub = next(a for a in build_parser()._actions if a.dest == 'command')\n"
            "print(len(sub.choices) == len(COMMANDS) == len(command_modules()), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["True", "False"]


def test_backbones_rank_is_another_spelling_of_rank_backbones(monkeypatch, tmp_path):
    from inspector.commands import rank

    calls = []
    monkeypatch.setattr(rank, "rank_and_report", lambda data, **kw: calls.append((data, kw["as_json"])))
    assert main(["backbones", "--rank", str(tmp_path), "--json"]) == 0
    assert main(["rank-backbones", str(tmp_path), "--json"]) == 0
    assert calls == [(str(tmp_path), True)] * 2
