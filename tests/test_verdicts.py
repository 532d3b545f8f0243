"""Issue 19, kind 6: a blank, saturated or flat frame is never a confident OK from any model.

One verdict vocabulary for every model (OK, NG, UNSURE, with a `reason`, null for a plain OK/NG; `label`
null when the model names no class) in the library, the CLI JSON and CSV, the service and the bundle;
the data report warns about such frames in training data.
"""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_anomaly_task import anomaly_run, parts  # noqa: F401 - the anomaly task's own trained run
from test_deploy_export import NO_TORCH, _json_tail, bundle  # noqa: F401 - the exported tiny run

from inspector.cli import main
from inspector.runtime.frames import frame_problem
from inspector.runtime.rows import VERDICTS, guard_row

FRAMES = {  # name: (pixel value, the word the reason starts with)
    "black.png": (0, "blank frame"),
    "white.png": (255, "saturated frame"),
    "grey.png": (128, "flat frame"),
}


@pytest.fixture()
def frames(tmp_path) -> dict[str, Path]:
    folder = tmp_path / "frames"
    folder.mkdir()
    paths = {}
    for name, (value, _) in FRAMES.items():
        Image.new("RGB", (120, 90), (value,) * 3).save(folder / name)
        paths[name] = folder / name
    return paths


def _ordinary(tiny_data: Path) -> Path:
    return sorted((tiny_data / "ok").iterdir())[0]


def _check_frame_rows(rows_by_name: dict[str, dict]) -> None:
    for name, (_, words) in FRAMES.items():
        row = rows_by_name[name]
        assert row["verdict"] in ("UNSURE", "NG"), f"{name}: {row}"  # never OK
        assert row["reason"].startswith(words), row["reason"]


# ------------------------------------------------------------------ the check itself
def test_frame_problem_names_blank_saturated_and_flat_frames():
    assert frame_problem(np.zeros((50, 80, 3), np.uint8)).startswith("blank frame")
    assert frame_problem(np.full((50, 80, 3), 255, np.uint8)).startswith("saturated frame")
    assert frame_problem(np.full((50, 80, 3), 90, np.uint8)).startswith("flat frame")
    noisy_black = np.random.default_rng(0).integers(0, 8, (200, 300, 3)).astype(np.uint8)
    noisy_black[5, 5] = 255  # a hot pixel does not make it an ordinary image
    assert frame_problem(noisy_black).startswith("blank frame")
    assert frame_problem(Image.new("RGB", (4000, 3000))).startswith("blank frame")  # PIL images, reduced first


def test_ordinary_part_images_are_not_flagged(tiny_data):
    from inspector.data import load_image, to_rgb_array

    paths = sorted(tiny_data.rglob("*.png")) + sorted(tiny_data.rglob("*.jpg"))
    assert paths
    assert [p.name for p in paths if frame_problem(to_rgb_array(load_image(p)))] == []


def test_guard_row_uses_one_vocabulary_and_is_idempotent():
    black = np.zeros((10, 10, 3), np.uint8)
    texture = np.random.default_rng(1).integers(0, 255, (10, 10, 3)).astype(np.uint8)
    ok = {"label": "ok", "confidence": 1.0, "verdict": "OK"}
    guarded = guard_row(ok, black)
    assert guarded["verdict"] == "UNSURE" and guarded["reason"].startswith("blank frame")
    assert guard_row(guarded, black) == guarded
    assert guard_row({"score": 0.9, "raw_score": 3.0, "verdict": "NG"}, black)["verdict"] == "NG"  # NG stays NG
    plain = guard_row({"score": 0.1, "raw_score": 1.0, "verdict": "OK"}, texture)
    assert plain["label"] is None and plain["verdict"] == "OK" and plain["reason"] is None
    assert guard_row({"label": "ok", "confidence": 1.0}, texture)["verdict"] is None  # no OK/NG rule given
    assert set(VERDICTS) == {"OK", "NG", "UNSURE"}


# ------------------------------------------------------------------ every entry point
def test_cli_predict_json_and_csv_say_unsure_with_the_reason(tiny_run, tiny_data, frames, tmp_path, capsys):
    out_csv = tmp_path / "results.csv"
    images = [*map(str, frames.values()), str(_ordinary(tiny_data))]
    assert main(["predict", str(tiny_run.run_dir), *images, "--ok-classes", "ok", "--csv", str(out_csv), "--json"]) == 0
    rows = {Path(r["path"]).name: r for r in _json_tail(capsys.readouterr().out)["predictions"]}
    _check_frame_rows(rows)
    ordinary = rows[_ordinary(tiny_data).name]
    assert ordinary["verdict"] in ("OK", "NG") and ordinary["reason"] is None and ordinary["label"]
    with open(out_csv, newline="", encoding="utf-8") as handle:
        table = {Path(r["path"]).name: r for r in csv.DictReader(handle)}
    assert table["black.png"]["verdict"] in ("UNSURE", "NG") and table["black.png"]["reason"].startswith("blank")


def test_cli_predict_without_ok_classes_still_flags_the_frame(tiny_run, frames, capsys):
    assert main(["predict", str(tiny_run.run_dir), str(frames["black.png"])]) == 0
    line = capsys.readouterr().out
    assert "UNSURE" in line and "blank frame" in line


def test_service_says_unsure_with_the_reason(tiny_run, frames):
    from fastapi.testclient import TestClient

    from inspector.deploy.service import ServiceConfig, create_app

    with TestClient(create_app(str(tiny_run.run_dir), ServiceConfig(ok_classes=("ok",)), device="cpu")) as client:
        files = [("files", (name, path.read_bytes(), "image/png")) for name, path in frames.items()]
        body = client.post("/predict", files=files).json()
    _check_frame_rows({r["filename"]: r for r in body["predictions"]})


def test_exported_bundle_says_unsure_without_torch(bundle, frames):  # noqa: F811
    out = subprocess.run([sys.executable, "-c", NO_TORCH, *map(str, frames.values()), "--json"],
                         cwd=bundle.path, capture_output=True, text=True, check=True)
    _check_frame_rows({Path(r["path"]).name: r for r in _json_tail(out.stdout)["predictions"]})
    assert "UNSURE" in (Path(bundle.path) / "README.md").read_text()


def test_anomaly_model_never_says_ok_on_a_blank_frame_and_names_no_class(anomaly_run, frames, capsys):  # noqa: F811
    assert main(["predict", str(anomaly_run.run_dir), *map(str, frames.values()), "--json"]) == 0
    rows = {Path(r["path"]).name: r for r in _json_tail(capsys.readouterr().out)["predictions"]}
    _check_frame_rows(rows)
    assert all(r["label"] is None for r in rows.values())


def test_the_data_report_warns_about_a_black_frame_in_ok(tiny_data, tmp_path):
    import shutil

    from inspector.data import discover_dataset, validate_dataset

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    assert "blank_frames" not in {f.code for f in validate_dataset(discover_dataset(data)).findings}
    Image.new("RGB", (128, 128)).save(data / "ok" / "lens_cap.png")
    findings = {f.code: f for f in validate_dataset(discover_dataset(data)).findings}
    assert findings["blank_frames"].level == "warning"
    assert "ok/lens_cap.png in 'ok': blank frame" in findings["blank_frames"].message
