"""Multi-task learning across two lines (transfer/multitask.py): one run keeps both lines' classifiers;
predict --head source uses the other line's, the default this line's; export works unchanged."""
from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from inspector import TrainConfig, train
from inspector.cli import main
from inspector.errors import InspectorError
from inspector.inference import load_predictor
from inspector.tasks.base import PredictOptions, create_task
from inspector.tasks.classification.predictor import SOURCE_HEAD_KEYS
from tests.test_strategy_contract import camera_b  # the test's second camera, one definition

FAST = dict(image_size=96, seed=3, max_folds=2, batch_size=8)
CLASSES = ("crack", "ok", "scratch")
TRANSFER_KEYS = {"method", "chosen_by", "score_name", "source_only", "target_only", "adapted", "intervals", "reason"}


@pytest.fixture(scope="module")
def lines(tmp_path_factory) -> dict:
    """This line (the second camera: 4 labelled images per class, 12 unlabelled), and unseen parts of
    both lines saved as files: 4 per class each."""
    from PIL import Image

    from inspector.sample_data import render_image

    rng = np.random.default_rng(5)
    root = tmp_path_factory.mktemp("line_b")
    for label in CLASSES:
        (root / "labelled" / label).mkdir(parents=True)
        (root / "unlabelled").mkdir(exist_ok=True)
        for folder in ("unseen_a", "unseen_b"):
            (root / folder / label).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(camera_b(render_image(label, rng))).save(root / "labelled" / label / f"{i}.png")
            Image.fromarray(camera_b(render_image(label, rng))).save(root / "unlabelled" / f"{label}{i}.png")
            part = render_image(label, rng)
            Image.fromarray(part).save(root / "unseen_a" / label / f"{i}.png")
            Image.fromarray(camera_b(part)).save(root / "unseen_b" / label / f"{i}.png")
    return {"data": root / "labelled", "unlabeled": root / "unlabelled", "unseen_a": root / "unseen_a",
            "unseen_b": root / "unseen_b"}


@pytest.fixture(scope="module")
def multitask_run(lines, tiny_data, tmp_path_factory):
    return train(lines["data"], TrainConfig(strategy="multi_task", **FAST), source=tiny_data,
                 unlabeled=lines["unlabeled"], runs_dir=tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def source_only_run(tiny_data, tmp_path_factory):
    """The other line's own model: a linear probe on its images alone."""
    return train(tiny_data, TrainConfig(strategy="linear_probe", **FAST), runs_dir=tmp_path_factory.mktemp("src"))


def _images(folder) -> tuple[list[str], np.ndarray]:
    paths = sorted(str(p) for p in folder.rglob("*.png"))
    return paths, np.array([CLASSES.index(p.rsplit("/", 2)[-2]) for p in paths])


def test_a_multi_task_run_keeps_both_heads(multitask_run):
    assert multitask_run.status == "completed"
    recipe = json.loads((multitask_run.run_dir / "model.json").read_text())
    assert recipe["heads"] == ["target", "source"]
    weights = load_file(str(multitask_run.run_dir / "model.safetensors"))
    assert set(SOURCE_HEAD_KEYS) <= set(weights)
    assert weights[SOURCE_HEAD_KEYS[0]].shape == weights["head.weight"].shape
    assert not np.allclose(weights[SOURCE_HEAD_KEYS[0]].numpy(), weights["head.weight"].numpy())
    transfer = multitask_run.summary.metrics["transfer"]
    assert TRANSFER_KEYS <= set(transfer) and set(transfer["intervals"]) == {"source_only", "target_only", "adapted"}
    assert transfer["method"] == "multi_task" and transfer["chosen_by"] == "target_cv"
    assert all(0 <= transfer[k] <= 1 for k in ("source_only", "target_only", "adapted"))


def test_the_source_head_predicts_the_other_line(multitask_run, source_only_run, lines):
    paths_a, truth_a = _images(lines["unseen_a"])
    paths_b, truth_b = _images(lines["unseen_b"])
    target = load_predictor(multitask_run.run_dir)
    source = load_predictor(multitask_run.run_dir, head="source")
    assert (target.head, source.head) == ("target", "source") and source.head_names == ["target", "source"]
    on_a = source.predict_proba(paths_a)
    assert not np.allclose(on_a, target.predict_proba(paths_a), atol=1e-3)
    # On the other line's own images its head does what the other line's own model does.
    expected = load_predictor(source_only_run.run_dir).predict_proba(paths_a).argmax(1)
    assert (on_a.argmax(1) == expected).mean() >= 0.75
    assert (on_a.argmax(1) == truth_a).mean() >= 0.75
    # This line's head is the model's ordinary classifier, and is judged on this line's parts.
    assert (target.predict_proba(paths_b).argmax(1) == truth_b).mean() >= 0.5
    assert source.with_head("target").predict_proba(paths_a) == pytest.approx(target.predict_proba(paths_a), abs=1e-5)


def test_predict_head_source_on_the_command_line(multitask_run, lines, capsys):
    run_dir, images = str(multitask_run.run_dir), str(lines["unseen_a"])
    rows = {}
    for head in (None, "target", "source"):
        assert main(["predict", run_dir, images, "--json", *(["--head", head] if head else [])]) == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert result["head"] == (head or "target"), "the JSON says which line's head answered"
        rows[head] = result["predictions"]
    probabilities = {h: np.array([[r["probabilities"][c] for c in CLASSES] for r in rows[h]]) for h in rows}
    np.testing.assert_allclose(probabilities[None], probabilities["target"])
    assert not np.allclose(probabilities[None], probabilities["source"], atol=1e-3)


def test_head_source_is_refused_in_words_without_a_source_head(source_only_run, capsys):
    predictor = load_predictor(source_only_run.run_dir)
    assert predictor.head_names == ["target"]
    with pytest.raises(InspectorError, match="no head for the other line"):
        create_task("classification").configure(predictor, PredictOptions(head="source"))
    assert create_task("classification").configure(predictor, PredictOptions(head="target")) is predictor
    with pytest.raises(InspectorError, match="no head for the other line"):
        load_predictor(source_only_run.run_dir, head="source")
    assert main(["predict", str(source_only_run.run_dir), str(source_only_run.run_dir), "--head", "source"]) != 0
    assert "no head for the other line" in capsys.readouterr().err


def test_other_tasks_refuse_head_like_other_foreign_options():
    with pytest.raises(InspectorError, match="--head does not apply to anomaly runs"):
        create_task("anomaly").check_options(PredictOptions(head="source"))


def test_a_multi_task_run_exports_with_parity(multitask_run, tmp_path):
    from inspector.deploy.bundle import export_bundle

    result = export_bundle(multitask_run.run_dir, tmp_path / "bundle", ok_classes=["ok"])
    assert result.parity.passed and result.parity.agree == result.parity.n_images
