"""Domain adaptation on frozen features (inspector/tasks/classification/transfer): the shift meter, the
methods, the guard against negative transfer, and the CLI contract of a transfer run."""
from __future__ import annotations

import json

import numpy as np
import pytest

from inspector.tasks.classification.transfer.alignment import METHODS, DomainFeatures, subspace_alignment
from inspector.tasks.classification.transfer.guard import NO_HELP, balanced_accuracy, decide
from inspector.tasks.classification.transfer.shift import domain_auroc, measure_shift

K, D = 3, 40


def line(rng: np.random.Generator, n_per_class: int, means: np.ndarray, transform=None) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian classes around `means` (K, D); `transform(x)`: the other camera's change of the features."""
    y = np.repeat(np.arange(K), n_per_class)
    x = means[y] + rng.normal(0, 1.0, (len(y), D))
    return (transform(x) if transform else x), y


@pytest.fixture(scope="module")
def shifted_lines():
    """A source line and a target line whose features are scaled, mixed and moved (a second camera)."""
    rng = np.random.default_rng(0)
    means = rng.normal(0, 0.5, (K, D))
    mix = np.eye(D) + rng.normal(0, 1, (D, D)) / np.sqrt(D)
    scale = rng.uniform(0.3, 3.0, D)
    offset = rng.normal(0, 3.0, D)

    def camera_b(x):
        return (x @ mix) * scale + offset

    xs, ys = line(rng, 60, means)
    xt, yt = line(rng, 60, means, camera_b)
    xtest, ytest = line(rng, 40, means, camera_b)
    return xs, ys, xt, yt, xtest, ytest


def test_the_shift_meter_tells_alike_lines_from_different_ones(shifted_lines):
    xs, ys, xt, yt, _, _ = shifted_lines
    rng = np.random.default_rng(1)
    alike = domain_auroc(xs[::2], xs[1::2])
    different = domain_auroc(xs, xt)
    assert alike < 0.65 and different > 0.9, (alike, different)
    shift = measure_shift(xs, ys, xt, np.where(rng.random(len(yt)) < 0.5, yt, -1), ["a", "b", "c"])
    assert shift.domain_auroc > 0.9 and "differ" in shift.words
    assert set(shift.per_class) == {"a", "b", "c"}
    assert domain_auroc(xs[:3], xt[:3]) is None  # too few images to say anything


@pytest.mark.parametrize("name", [m for m in METHODS if m != "target_only"])
def test_every_method_gives_a_head_on_this_lines_raw_features(name, shifted_lines):
    xs, ys, xt, _, xtest, ytest = shifted_lines
    data = DomainFeatures(xs, ys, np.zeros((0, D)), np.zeros(0, dtype=int), xt, K)
    head = METHODS[name](data, 0)
    assert head.weight.shape == (K, D) and head.bias.shape == (K,)
    assert np.isfinite(head.logits(xtest)).all()


def test_coral_without_labels_beats_the_other_lines_model_as_it_is(shifted_lines):
    xs, ys, xt, _, xtest, ytest = shifted_lines
    data = DomainFeatures(xs, ys, np.zeros((0, D)), np.zeros(0, dtype=int), xt, K)
    before = balanced_accuracy(ytest, METHODS["source_only"](data, 0).logits(xtest).argmax(1), K)
    after = balanced_accuracy(ytest, METHODS["coral"](data, 0).logits(xtest).argmax(1), K)
    assert after > before + 0.15 and after > 0.8, (before, after)


def test_subspace_alignment_folded_into_the_head_works_on_raw_features(shifted_lines):
    """The target's projection (skada's PCA) is folded into a head on raw features: it has the raw
    features' width and classifies the shifted line above chance (a wrong fold gives chance or worse)."""
    xs, ys, xt, _, xtest, _ = shifted_lines
    data = DomainFeatures(xs, ys, np.zeros((0, D)), np.zeros(0, dtype=int), xt, K)
    head = subspace_alignment(data, 0)
    assert head.weight.shape == (K, D)
    assert balanced_accuracy(shifted_lines[5], head.logits(xtest).argmax(1), K) > 0.5


def test_the_guard_keeps_a_method_that_helps(shifted_lines):
    xs, ys, xt, yt, _, _ = shifted_lines
    few = np.concatenate([np.flatnonzero(yt == k)[:6] for k in range(K)])
    rest = np.setdiff1d(np.arange(len(yt)), few)
    data = DomainFeatures(xs, ys, xt[few], yt[few], xt[rest], K)
    decision = decide(data, ["coral"], 0, automatic=False)
    assert decision.chosen_by == "target_cv" and decision.score_name == "balanced_accuracy"
    assert decision.method == "coral"
    for key in ("source_only", "target_only", "adapted"):
        value, (low, high) = getattr(decision, key), decision.intervals[key]
        assert 0 <= low <= value <= high <= 1


def test_the_guard_trains_target_only_when_the_source_is_unrelated():
    """Another line whose labels mean nothing here (a product with other defects): auto must not use it."""
    rng = np.random.default_rng(5)
    means = rng.normal(0, 1.5, (K, D))
    xs, _ = line(rng, 60, rng.normal(0, 1.5, (K, D)))
    ys = rng.integers(0, K, len(xs))  # labels unrelated to the images
    xt, yt = line(rng, 12, means)
    unlabelled, _ = line(rng, 30, means)
    data = DomainFeatures(xs, ys, xt, yt, unlabelled, K)
    decision = decide(data, [m for m in METHODS if m not in ("source_only", "target_only")], 0, automatic=True)
    assert decision.method == "target_only"
    assert decision.reason.startswith(NO_HELP)
    assert decision.target_only > decision.source_only + 0.2


def test_without_labels_a_label_free_score_chooses_and_says_so(shifted_lines):
    xs, ys, xt, _, _, _ = shifted_lines
    data = DomainFeatures(xs, ys, np.zeros((0, D)), np.zeros(0, dtype=int), xt, K)
    decision = decide(data, ["coral", "subspace_alignment"], 0, automatic=True)
    assert decision.chosen_by == "label_free_score" and decision.score_name == "reverse_validation"
    assert decision.source_only is None and decision.target_only is None and decision.adapted is None
    assert "not this line's accuracy" in decision.reason
    assert decision.method in ("source_only", "coral", "subspace_alignment")


# -- the CLI contract (issue 21) -------------------------------------------------------------------

TRANSFER_KEYS = {"method", "chosen_by", "score_name", "source_only", "target_only", "adapted", "intervals", "reason"}


@pytest.fixture(scope="module")
def second_camera(tiny_data, tmp_path_factory):
    """tiny_data's parts through a second camera: 4 labelled per class and 9 unlabelled in sub-folders."""
    from PIL import Image

    from inspector.sample_data import render_image
    from tests.test_strategy_contract import camera_b

    rng = np.random.default_rng(11)
    root = tmp_path_factory.mktemp("camera_b")
    for label in ("crack", "ok", "scratch"):
        (root / "labelled" / label).mkdir(parents=True)
        (root / "unlabelled" / "monday").mkdir(parents=True, exist_ok=True)
        for i in range(4):
            Image.fromarray(camera_b(render_image(label, rng))).save(root / "labelled" / label / f"{i}.png")
        for i in range(3):
            Image.fromarray(camera_b(render_image(label, rng))).save(root / "unlabelled" / "monday" / f"{label}{i}.jpg")
    return root


def run_cli(args: list[str], capsys) -> tuple[int, dict, str]:
    from inspector.cli import main

    code = main(args)
    out, err = capsys.readouterr()
    return code, (json.loads(out.strip().splitlines()[-1]) if out.strip() else {}), err


@pytest.mark.slow
def test_train_with_a_source_reports_the_shift_and_the_guard(tiny_data, second_camera, tmp_path, capsys):
    code, result, err = run_cli(["train", str(second_camera / "labelled"), "--source", str(tiny_data),
                                 "--unlabeled", str(second_camera / "unlabelled"), "--image-size", "96",
                                 "--runs-dir", str(tmp_path), "--json"], capsys)
    assert code in (0, None), err
    assert result["source"] == str(tiny_data) and result["n_source"] == 24 and result["n_unlabeled"] == 9
    assert set(result["shift"]) >= {"domain_auroc", "words"} and 0.5 <= result["shift"]["domain_auroc"] <= 1
    transfer = result["transfer"]
    assert TRANSFER_KEYS <= set(transfer)
    assert transfer["chosen_by"] == "target_cv"
    assert set(transfer["intervals"]) == {"source_only", "target_only", "adapted"}
    assert result["strategy"] == "auto_transfer"
    # an ordinary model: predict and evaluate like any other run, with balanced accuracy
    code, report, err = run_cli(["evaluate", result["run_dir"], str(second_camera / "labelled"), "--json"], capsys)
    assert code in (0, None), err
    assert 0 <= report["balanced_accuracy"] <= 1


@pytest.mark.slow
def test_train_without_labels_from_this_line_uses_the_sources_classes(tiny_data, second_camera, tmp_path, capsys):
    code, result, err = run_cli(["train", "--source", str(tiny_data), "--unlabeled", str(second_camera / "unlabelled"),
                                 "--strategy", "coral", "--image-size", "96", "--runs-dir", str(tmp_path), "--json"],
                                capsys)
    assert code in (0, None), err
    transfer = result["transfer"]
    assert transfer["method"] == "coral" and transfer["chosen_by"] == "label_free_score"
    assert transfer["target_only"] is None and transfer["adapted"] is None
    assert result["n_unlabeled"] == 9 and result["val_accuracy"] is None


def test_the_cli_refuses_what_cannot_work_in_words(tiny_data, second_camera, tmp_path, capsys):
    from inspector.cli import main

    assert main(["train", "--unlabeled", str(second_camera / "unlabelled"), "--runs-dir", str(tmp_path)]) != 0
    assert "--source" in capsys.readouterr().err
    assert main(["train", str(second_camera / "labelled"), "--source", str(tiny_data), "--strategy", "fine_tune",
                 "--runs-dir", str(tmp_path)]) != 0
    assert "does not use another line's images" in capsys.readouterr().err
    assert main(["train", str(second_camera / "labelled"), "--strategy", "coral", "--runs-dir", str(tmp_path)]) != 0
    assert "another line" in capsys.readouterr().err


def test_a_transfer_runs_plan_counts_the_other_lines_images():
    """The ETA plans the features of the other line's and the unlabelled images, and the guard; the joint
    objective's loop runs over the source's batches."""
    import types

    from inspector import TrainConfig
    from inspector.data import ValidationPlan
    from inspector.engine.loop import batches_per_epoch
    from inspector.engine.trainer import plan_work
    from inspector.tasks.classification.strategies import create_strategy

    plan = ValidationPlan("holdout", [(np.arange(10), np.arange(10, 14))], "hold-out")
    model = types.SimpleNamespace(symmetric=False)
    work = plan_work(create_strategy("coral"), model, plan, TrainConfig(), n_source=30, n_unlabeled=50)
    assert [w.total for w in work if w.phase == "features"] == [10, 4, 30, 50]
    assert [w.phase for w in work][-2:] == ["adaptation", "head"]
    config = TrainConfig(batch_size=8, epochs=2)
    joint = plan_work(create_strategy("dann"), model, plan, config, n_source=30, n_unlabeled=50)
    assert [w.total for w in joint if w.phase == "training"] == [2 * batches_per_epoch(30, 8)]


def test_the_other_lines_classes_this_line_lacks_are_named(tiny_data, second_camera, tmp_path, capsys):
    import shutil

    from inspector.cli import main

    target = tmp_path / "two_classes"
    for label in ("ok", "scratch"):
        shutil.copytree(second_camera / "labelled" / label, target / label)
    # fine_tune is refused with a source: the warning is printed before, and nothing trains
    assert main(["train", str(target), "--source", str(tiny_data), "--strategy", "fine_tune",
                 "--runs-dir", str(tmp_path / "runs")]) != 0
    err = capsys.readouterr().err
    assert "the other line's classes crack are not among this line's (ok, scratch)" in err
