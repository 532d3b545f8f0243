"""The familiarity guard end to end: a trained classification run keeps one, and the PyTorch predictor,
the exported bundle and the service give a photo unlike the training images the verdict UNSURE."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inspector.runtime.rows import UNFAMILIAR
from inspector.tasks.base import PredictOptions, create_task, decode_for
from tests.test_transfer import second_camera  # noqa: F401 - the fixture: this line's second camera

TEXTILE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "textile-sim" / "nominal"
OPTIONS = PredictOptions(ok_classes=("ok",))


def foreign_images() -> list[np.ndarray]:
    """Photos of nothing the sample data shows: a woven texture, a colour gradient, a checkerboard, and
    textile-sim photos (another product) where the shared datasets are present."""
    y, x = np.mgrid[0:240, 0:320]
    noise = np.random.default_rng(0).normal(0, 20, (240, 320))
    weave = np.clip(128 + 60 * np.sin(x / 3) * np.sin(y / 3) + noise, 0, 255).astype(np.uint8)
    gradient = np.stack([x * 255 // 320, y * 255 // 240, 255 - x * 255 // 320], -1).astype(np.uint8)
    checker = (((x // 20 + y // 20) % 2) * 255).astype(np.uint8)
    images = [np.dstack([weave] * 3), gradient, np.dstack([checker] * 3)]
    if TEXTILE.is_dir():
        from inspector.data import load_image, to_rgb_array

        images += [to_rgb_array(load_image(p)) for p in sorted(TEXTILE.iterdir())[:3]]
    return images


@pytest.fixture(scope="module")
def predictor(tiny_run):
    from inspector import Predictor

    return Predictor.from_run(tiny_run.run_dir, device="cpu")


@pytest.fixture(scope="module")
def new_parts(tiny_data, predictor) -> list[np.ndarray]:
    """The generator's fresh parts of the run's classes: not trained on, but like the training images."""
    paths = [p for p in sorted((tiny_data.parent / "new_parts").iterdir()) if p.name.split("_")[0] in predictor.classes]
    assert paths
    return [decode_for(predictor, p) for p in paths]


@pytest.fixture(scope="module")
def bundle_dir(tiny_run, tmp_path_factory) -> Path:
    from inspector.deploy.bundle import export_bundle

    return export_bundle(tiny_run.run_dir, tmp_path_factory.mktemp("export") / "bundle", ok_classes=["ok"]).path


def _unfamiliar(row: dict) -> bool:
    return row["verdict"] == "UNSURE" and row["reason"].startswith(UNFAMILIAR)


def test_a_run_keeps_a_guard_and_the_predictor_flags_foreign_photos_only(tiny_run, predictor, new_parts):
    recipe = json.loads((Path(tiny_run.run_dir) / "model.json").read_text())
    guard = recipe["familiarity"]
    assert guard["n_images"] == 24 and len(guard["blocks"]) == 4  # 3 classes x 8; three stages + final features
    task = create_task("classification")
    foreign = task.result_rows(predictor, foreign_images(), OPTIONS)
    assert all(_unfamiliar(row) for row in foreign), [row["familiarity"] for row in foreign]
    row = foreign[0]
    assert row["label"] in predictor.classes and set(row["probabilities"]) == set(predictor.classes)  # kept
    assert f"limit {guard['limit']:.2f}" in row["reason"] and row["familiarity"]["distance"] > guard["limit"]
    familiar = task.result_rows(predictor, new_parts, OPTIONS)
    assert not any(_unfamiliar(row) for row in familiar), [row["familiarity"] for row in familiar]
    assert all(row["verdict"] in ("OK", "NG") and row["familiarity"]["distance"] <= guard["limit"] for row in familiar)
    plain = task.result_rows(predictor, foreign_images()[:1], PredictOptions())  # no OK classes: still UNSURE
    assert _unfamiliar(plain[0])
    assert "unsure" in task.row_words(row) and "unlike the training images" in task.row_words(row)  # the app's words


def test_the_exported_bundle_gives_the_same_unsure(bundle_dir, predictor, new_parts):
    from inspector.deploy.parity import load_bundle_module

    labels = json.loads((bundle_dir / "labels.json").read_text())
    assert labels["outputs"] == ["probabilities", "logits", "embedding"] and labels["familiarity"]["blocks"]
    parity = json.loads((bundle_dir / "parity.json").read_text())
    assert parity["passed"] and parity["max_rel_familiarity_distance_diff"] < 1e-3
    module = load_bundle_module(bundle_dir)  # the bundle's own predict.py and inspector_runtime/
    images = foreign_images() + new_parts
    theirs = module.predict(module.load_bundle(bundle_dir), images)
    ours = create_task("classification").result_rows(predictor, images, OPTIONS)
    assert [r["verdict"] for r in theirs] == [r["verdict"] for r in ours]
    assert [r["label"] for r in theirs] == [r["label"] for r in ours]
    assert [r["familiarity"]["distance"] for r in theirs] == pytest.approx([r["familiarity"]["distance"] for r in ours],
                                                                          rel=1e-4)
    assert all(_unfamiliar(r) for r in theirs[:len(foreign_images())])


def test_the_service_answers_unsure_through_pytorch_and_through_the_bundle(predictor, bundle_dir):
    from fastapi.testclient import TestClient
    from PIL import Image

    from inspector.deploy.runtime import BundlePredictor
    from inspector.deploy.service import ServiceConfig, create_app

    buffer = __import__("io").BytesIO()
    Image.fromarray(foreign_images()[1]).save(buffer, format="PNG")
    files = {"files": ("gradient.png", buffer.getvalue(), "image/png")}
    for model in (predictor, BundlePredictor(bundle_dir)):
        with TestClient(create_app(None, ServiceConfig(ok_classes=("ok",)), predictor=model)) as client:
            response = client.post("/predict", files=files)
        assert response.status_code == 200, response.text
        row = response.json()["predictions"][0]
        assert _unfamiliar(row) and row["familiarity"]["distance"] > row["familiarity"]["limit"]


@pytest.mark.slow
def test_a_transfer_runs_guard_learns_this_lines_images_with_the_unlabelled_ones(tiny_data, request, tmp_path):
    """Fitted on this line's labelled (4 per class, hold-out split: train and validation) and unlabelled (9)
    images, never on the other line's (24)."""
    from inspector import TrainConfig, train

    camera = request.getfixturevalue("second_camera")  # tests/test_transfer.py's, imported above

    result = train(camera / "labelled", TrainConfig(strategy="coral", image_size=96, seed=0),
                   source=tiny_data, unlabeled=camera / "unlabelled", runs_dir=tmp_path)
    guard = json.loads((Path(result.run_dir) / "model.json").read_text())["familiarity"]
    assert guard["n_images"] == 12 + 9
