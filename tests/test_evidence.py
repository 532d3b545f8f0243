"""Evidence tools (issue 15): the statistics on synthetic cases with known answers, and the CLI contracts."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from inspector.errors import InspectorError
from inspector.evidence.learning_curve import (
    PowerLaw,
    advise,
    advise_from_features,
    fit_power_law,
    fit_power_law_many,
    measure_learning_curve,
)
from inspector.evidence.paired import (
    bootstrap_difference_ci,
    compare_correctness,
    compare_predictions,
    mcnemar_exact_p,
    negative_transfer_note,
)
from inspector.evidence.transferability import _evidence_one, logme


# -- McNemar's exact test ---------------------------------------------------------------------
@pytest.mark.parametrize("b, c, expected", [
    (10, 2, 2 * (1 + 12 + 66) / 4096),  # 2 * P(X <= 2), X ~ Bin(12, 1/2)
    (5, 0, 2 / 32),
    (0, 5, 2 / 32),
    (3, 3, 1.0),
    (0, 0, 1.0),
    (1, 0, 1.0),
    (20, 5, 2 * sum(math.comb(25, k) for k in range(6)) / 2 ** 25),
])
def test_mcnemar_exact_matches_hand_computed_tables(b, c, expected):
    assert mcnemar_exact_p(b, c) == pytest.approx(expected, rel=1e-12)


def _pairs(n, acc_a, acc_b, seed):
    rng = np.random.default_rng(seed)
    return rng.random(n) < acc_a, rng.random(n) < acc_b


def test_bootstrap_interval_covers_the_true_difference():
    """Independent right/wrong with accuracies 0.80 vs 0.70: the 95% interval holds +0.10 ~95% of the time."""
    hits = 0
    for seed in range(200):
        a, b = _pairs(150, 0.80, 0.70, seed)
        low, high = bootstrap_difference_ci(a, b, n_boot=2000, seed=seed)
        hits += low <= 0.10 <= high
    assert 0.88 <= hits / 200 <= 0.99


def test_bootstrap_interval_is_about_the_normal_one():
    a, b = _pairs(400, 0.85, 0.75, 1)
    d = a.astype(float) - b
    low, high = bootstrap_difference_ci(a, b, n_boot=20_000)
    half = 1.96 * d.std() / math.sqrt(len(d))
    assert low == pytest.approx(d.mean() - half, abs=0.01) and high == pytest.approx(d.mean() + half, abs=0.01)


def test_verdicts_and_sentences():
    better = compare_correctness(np.r_[np.ones(40), np.zeros(10)].astype(bool),
                                 np.r_[np.ones(25), np.zeros(25)].astype(bool))  # 15 disagreements, all for A
    assert better.verdict == "a_better" and better.only_a_right == 15 and better.only_b_right == 0
    assert better.p_value == pytest.approx(2 / 2 ** 15)
    assert better.sentence.startswith("A is better than B: +30 points (95% CI +")
    worse = compare_correctness(np.r_[np.ones(25), np.zeros(25)].astype(bool), np.r_[np.ones(40), np.zeros(10)].astype(bool))
    assert worse.verdict == "b_better" and worse.difference == pytest.approx(-0.30)
    assert worse.sentence.startswith("B is better than A: +30 points")
    tie = compare_correctness(*_pairs(60, 0.8, 0.8, 3))
    assert tie.verdict == "no_significant_difference" or tie.p_value < 0.05
    same = compare_correctness(np.ones(20, bool), np.ones(20, bool))
    assert same.verdict == "no_significant_difference" and same.p_value == 1.0
    assert "pick the faster one" in same.sentence


def _rows(paths, labels, predicted):
    return [{"path": p, "label": t, "predicted": q} for p, t, q in zip(paths, labels, predicted)]


def test_compare_predictions_pairs_by_path_in_any_order():
    paths = [f"data/{c}/{i}.png" for c in "xy" for i in range(10)]
    labels = [p.split("/")[1] for p in paths]
    a = _rows(paths, labels, labels)  # all right
    b = _rows(paths, labels, ["x"] * 20)  # y all wrong
    result = compare_predictions(a, list(reversed(b)))
    assert (result.accuracy_a, result.accuracy_b, result.n_images) == (1.0, 0.5, 20)
    assert result.only_a_right == 10 and result.verdict == "a_better"
    assert set(result.to_dict()) >= {"accuracy_a", "accuracy_b", "difference", "difference_ci", "p_value",
                                     "n_images", "verdict"}


def test_different_images_are_refused_in_plain_words():
    paths = [f"img{i}.png" for i in range(10)]
    a = _rows(paths, ["ok"] * 10, ["ok"] * 10)
    b = _rows(paths[:8] + ["other1.png", "other2.png"], ["ok"] * 10, ["ok"] * 10)
    with pytest.raises(InspectorError, match="different images"):
        compare_predictions(a, b)
    relabelled = _rows(paths, ["ok"] * 9 + ["crack"], ["ok"] * 10)
    with pytest.raises(InspectorError, match="true class"):
        compare_predictions(a, relabelled)
    with pytest.raises(InspectorError, match="twice"):
        compare_predictions(a + a[:1], b)


def _info(name, strategy, val_accuracy, n_images=60, classes=("crack", "ok")):
    from pathlib import Path

    from inspector.runs import RunInfo
    from inspector.summary import RunSummary

    summary = RunSummary(n_images=n_images, classes=list(classes), metrics={"val_accuracy": val_accuracy})
    return RunInfo(name or "r1", Path("/runs/r1"), name, "completed", 0.0, strategy=strategy, summary=summary)


def test_negative_transfer_is_said_only_when_fine_tuning_lost_on_the_same_data():
    from dataclasses import replace

    tuned, probe = _info("ft", "fine_tune", 0.70), _info("lp", "linear_probe", 0.76)
    note = negative_transfer_note(tuned, probe)
    assert note and note.startswith("Fine-tuning hurt here: ft (fine_tune) scored 0.70") and "negative transfer" in note
    assert negative_transfer_note(probe, tuned) == note  # either order
    assert negative_transfer_note(_info("ft", "fine_tune", 0.8), probe) is None
    assert negative_transfer_note(_info("ft", "fine_tune", 0.7, n_images=120), probe) is None  # different data
    assert negative_transfer_note(_info("ft", "fine_tune", 0.7, classes=("a", "b")), probe) is None
    assert negative_transfer_note(_info("ft", "linear_probe", 0.7), probe) is None
    assert negative_transfer_note(replace(tuned, summary=None), probe) is None  # not finished: no accuracy
    # A summary that never recorded its images or classes is not "different data"; a run without a name is "run A".
    bare = _info("", "l2_sp", 0.5, n_images=0, classes=())
    assert negative_transfer_note(bare, probe).startswith("Fine-tuning hurt here: run A (l2_sp)")


# -- learning curve ---------------------------------------------------------------------------
def test_power_law_fit_recovers_known_parameters():
    x = np.array([2, 3, 4, 6, 8, 12, 16.0])
    truth = PowerLaw(0.93, 0.7, 0.6)
    fit = fit_power_law(x, truth(x))
    assert (fit.a, fit.b, fit.c) == pytest.approx((0.93, 0.7, 0.6), abs=1e-3)
    rng = np.random.default_rng(0)
    noisy = fit_power_law(x, truth(x) + rng.normal(0, 0.005, x.size))
    assert noisy(40) == pytest.approx(truth(40), abs=0.03)
    grid = fit_power_law_many(x, np.stack([truth(x), PowerLaw(0.8, 0.5, 1.2)(x)]))
    assert (grid[0].a, grid[0].c) == pytest.approx((0.93, 0.6), abs=0.01)
    assert (grid[1].a, grid[1].c) == pytest.approx((0.8, 1.2), abs=0.01)


def test_power_law_respects_its_bounds():
    x = np.array([2, 4, 6, 8.0])
    fit = fit_power_law(x, 1.1 - 0.6 * x ** -0.5)  # would saturate above 1: a is capped at 1
    assert fit.a <= 1.0 and fit.b >= 0 and 0.05 <= fit.c <= 2
    flat = fit_power_law(x, np.array([0.7, 0.69, 0.71, 0.7]))
    assert flat(50) == pytest.approx(0.7, abs=0.03)


def _gaussian_classes(n_per_class, n_classes=4, dim=40, separation=0.45, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(0, separation, (n_classes, dim))
    x = np.concatenate([m + rng.normal(0, 1, (n_per_class, dim)) for m in means])
    return x, np.repeat(np.arange(n_classes), n_per_class), means


def test_advice_shape_and_honesty_on_synthetic_classes():
    x, y, _ = _gaussian_classes(10)
    advice = advise_from_features(x, y, ["a", "b", "c", "d"], at=20, repeats=2, n_boot=100)
    data = advice.to_dict()
    assert set(data) >= {"current_accuracy", "predicted_accuracy", "predicted_interval", "per_class"}
    low, high = data["predicted_interval"]
    assert low <= data["predicted_accuracy"] <= high
    assert data["predicted_accuracy"] >= data["current_accuracy"] - 0.05  # more images do not hurt here
    for name, row in data["per_class"].items():
        assert row["images"] == 10 and row["suggested_extra_images"] in (0, 10)
        assert row["status"] in ("rising", "plateaued", "uncertain")
    assert data["at"] == 20 and advice.sentences[0].startswith("Cross-validated accuracy now")
    json.dumps(data)  # plain JSON


def test_advisor_extrapolates_a_synthetic_learning_curve():
    """Gaussian classes: the advice from 12 per class brackets the accuracy measured with 24 per class."""
    from inspector.evidence.features import lda_predict

    x, y, means = _gaussian_classes(12, seed=2)
    advice = advise_from_features(x, y, list("abcd"), at=24, repeats=3, n_boot=150)
    rng = np.random.default_rng(5)
    measured = []
    for _ in range(20):
        train_x = np.concatenate([m + rng.normal(0, 1, (24, len(m))) for m in means])
        test_x = np.concatenate([m + rng.normal(0, 1, (100, len(m))) for m in means])
        train_y, test_y = np.repeat(np.arange(4), 24), np.repeat(np.arange(4), 100)
        measured.append((lda_predict(train_x, train_y, test_x, 4) == test_y).mean())
    low, high = advice.predicted_interval
    assert low - 0.03 <= np.mean(measured) <= high + 0.03


def test_advisor_refuses_classes_with_fewer_than_three_images():
    x, y, _ = _gaussian_classes(5)
    keep = np.r_[np.arange(15), [15, 16]]  # the last class keeps 2 images
    with pytest.raises(InspectorError, match="at least 3 images"):
        measure_learning_curve(x[keep], y[keep], list("abcd"))


def test_advisor_without_enough_sizes_says_so():
    x, y, _ = _gaussian_classes(3)
    advice = advise(measure_learning_curve(x, y, list("abcd"), repeats=1), at=6, n_boot=20)
    assert advice.predicted_accuracy is None and "no prediction" in " ".join(advice.sentences)


# -- the linear probe's head, fast --------------------------------------------------------------
def test_gram_shrinkage_is_scikit_learns_ledoit_wolf():
    """The linear probe's head computes Ledoit-Wolf from the n x n Gram matrix (fast); same value."""
    from sklearn.covariance import ledoit_wolf_shrinkage

    from inspector.tasks.classification.linear import ledoit_wolf_shrinkage_gram

    rng = np.random.default_rng(0)
    for n, d in ((9, 300), (3, 50), (40, 20)):
        block = rng.normal(size=(n, d)) * rng.uniform(0.1, 3.0, size=d)
        centred = block - block.mean(0)
        assert ledoit_wolf_shrinkage_gram(centred) == pytest.approx(
            ledoit_wolf_shrinkage(centred, assume_centered=True), rel=1e-10)


# -- LogME ------------------------------------------------------------------------------------
def test_logme_evidence_is_the_maximum_of_the_marginal_likelihood():
    from scipy.optimize import minimize

    rng = np.random.default_rng(1)
    n, d = 40, 10
    f = rng.normal(size=(n, d))
    y = (rng.random(n) < 0.4) + 0.3 * f[:, 0]

    def evidence(log_alpha, log_beta):
        alpha, beta = math.exp(log_alpha), math.exp(log_beta)
        a = alpha * np.eye(d) + beta * f.T @ f
        m = beta * np.linalg.solve(a, f.T @ y)
        return (d / 2 * log_alpha + n / 2 * log_beta - beta / 2 * ((y - f @ m) ** 2).sum() - alpha / 2 * m @ m
                - np.linalg.slogdet(a)[1] / 2 - n / 2 * math.log(2 * math.pi)) / n

    best = minimize(lambda p: -evidence(*p), [0.0, 0.0], method="Nelder-Mead",
                    options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 4000})
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    ours = _evidence_one(u.T @ y, float(y @ y), s ** 2, n, d)
    assert ours.log_evidence == pytest.approx(-best.fun, abs=1e-5)


def test_logme_ranks_separable_features_above_random_ones():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(5), 12)
    random = rng.normal(size=(60, 300))
    separable = np.eye(5)[y] @ rng.normal(size=(5, 300)) + rng.normal(size=(60, 300))
    weak = 0.3 * np.eye(5)[y] @ rng.normal(size=(5, 300)) + rng.normal(size=(60, 300))
    scores = [logme(f, y) for f in (separable, weak, random)]
    assert scores[0] > scores[1] > scores[2]


# -- CLI contracts ----------------------------------------------------------------------------
def _fake_run(store, name, strategy, rows, accuracy):
    run = store.create({"strategy": strategy}, backbone="tf_efficientnet_lite0", strategy=strategy, name=name)
    run.save_evaluation({"accuracy": accuracy, "predictions": rows})
    run.update(status="completed", summary={"val_accuracy": accuracy, "n_images": len(rows)})
    return run


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_compare_cli_on_stored_predictions(tmp_path, capsys):
    from inspector.cli import main
    from inspector.runs import RunStore

    store = RunStore(tmp_path / "runs")
    paths = [f"/data/{c}/{i}.png" for c in ("ok", "crack") for i in range(30)]
    labels = [p.split("/")[2] for p in paths]
    a = _fake_run(store, "ft", "fine_tune", _rows(paths, labels, labels[:30] + ["ok"] * 10 + labels[40:]), 0.83)
    b = _fake_run(store, "lp", "linear_probe", _rows(paths, labels, labels), 1.0)
    assert main(["compare", a.run_id, b.run_id, "--runs-dir", str(store.root), "--json"]) == 0
    result = _last_json(capsys.readouterr().out)
    assert list(result) == ["name_a", "name_b", "n_images", "accuracy_a", "accuracy_b", "difference", "difference_ci",
                            "p_value", "only_a_right", "only_b_right", "verdict", "sentence", "run_a", "run_b",
                            "scored_on", "negative_transfer", "inference_ms_a", "inference_ms_b"]  # the contract
    assert (result["name_a"], result["run_a"], result["scored_on"]) == ("A (ft)", str(a.path),
                                                                        "the runs' validation predictions")
    assert result["inference_ms_a"] is None and result["only_b_right"] == 10
    assert result["accuracy_a"] == pytest.approx(50 / 60) and result["accuracy_b"] == 1.0
    assert result["difference"] == pytest.approx(-10 / 60) and result["n_images"] == 60
    assert result["verdict"] == "b_better" and result["p_value"] == pytest.approx(2 / 2 ** 10)
    assert len(result["difference_ci"]) == 2 and result["negative_transfer"].startswith("Fine-tuning hurt here")

    other = _fake_run(store, "other", "linear_probe", _rows(paths[:50], labels[:50], labels[:50]), 1.0)
    assert main(["compare", str(a.path), str(other.path), "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "different images" in err[0]


@pytest.fixture(scope="module")
def tiny_labeled(tmp_path_factory):
    """3 classes x 6 generated images (the project's generator), small enough for 64 px features."""
    from inspector.sample_data import generate_sample_data

    out = tmp_path_factory.mktemp("evidence")
    generate_sample_data(out, seed=3, images_per_class=6, new_parts=0)
    train = out / "train"
    for extra in ("dent", "stain"):
        for f in (train / extra).iterdir():
            f.unlink()
        (train / extra).rmdir()
    return train


@pytest.mark.slow
def test_advise_and_rank_cli_contracts(tiny_labeled, tmp_path, capsys, monkeypatch):
    from inspector.cli import main

    monkeypatch.setenv("INSPECTOR_CACHE_DIR", str(tmp_path / "cache"))
    args = ["advise", str(tiny_labeled), "--image-size", "64", "--orientation-matters", "--repeats", "2",
            "--device", "cpu", "--json"]
    assert main(args) == 0
    first = _last_json(capsys.readouterr().out)
    assert set(first) >= {"current_accuracy", "predicted_accuracy", "predicted_interval", "per_class"}
    assert first["at"] == 12  # twice the smallest class
    for row in first["per_class"].values():
        assert {"recall", "predicted_recall", "suggested_extra_images"} <= set(row)
    assert main(args + ["--at", "30"]) == 0  # second time: features from the cache
    second = _last_json(capsys.readouterr().out)
    assert second["at"] == 30 and second["feature_seconds"] == 0.0
    assert second["current_accuracy"] == first["current_accuracy"]

    assert main(["rank-backbones", str(tiny_labeled), "--backbones", "tf_efficientnet_lite0", "--image-sizes", "64",
                 "96", "--device", "cpu", "--json"]) == 0
    ranking = _last_json(capsys.readouterr().out)["ranking"]
    assert [r["rank"] for r in ranking] == [1, 2] and {r["image_size"] for r in ranking} == {64, 96}
    assert ranking[0]["logme"] >= ranking[1]["logme"]


@pytest.mark.slow
def test_compare_cli_on_trained_runs_with_data(tiny_labeled, tmp_path, capsys):
    from inspector import TrainConfig, train
    from inspector.cli import main

    runs = tmp_path / "runs"
    a = train(tiny_labeled, TrainConfig(strategy="linear_probe", image_size=64, seed=0, max_folds=3,
                                        any_orientation=False), runs_dir=runs)
    b = train(tiny_labeled, TrainConfig(strategy="linear_probe", image_size=64, seed=1, max_folds=3,
                                        any_orientation=False), runs_dir=runs)
    assert main(["compare", str(a.run_dir), str(b.run_dir), str(tiny_labeled), "--device", "cpu", "--json"]) == 0
    result = _last_json(capsys.readouterr().out)
    assert result["n_images"] == 18 and result["verdict"] in ("a_better", "b_better", "no_significant_difference")
    assert main(["compare", str(a.run_dir), str(b.run_dir), "--json"]) == 0  # stored CV predictions
    stored = _last_json(capsys.readouterr().out)
    assert stored["n_images"] == 18 and stored["verdict"] == "no_significant_difference"


# -- the page helpers (thin: they only draw) ----------------------------------------------------
def test_rank_backbones_json_rows(tmp_path, capsys, monkeypatch):
    """Typed rows inside, the same JSON rows outside (keys in order), best first; stderr reports each one."""
    from PIL import Image

    from inspector.cli import main
    from inspector.evidence import features
    from inspector.evidence.features import FeatureSet

    for c, colour in (("crack", 0), ("ok", 255)):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (16, 16), (colour, i, 0)).save(tmp_path / "data" / c / f"{i}.png")
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 4)

    def fake_features(dataset, backbone, size, **_):
        signal = {"good": 3.0, "poor": 0.1}[backbone]  # features that separate the classes well / hardly
        x = signal * np.eye(2)[y] @ rng.normal(size=(2, 6)) + rng.normal(size=(8, 6))
        return FeatureSet(x, y, ["crack", "ok"], [], backbone, size or 224, False, 0.0)

    monkeypatch.setattr(features, "frozen_features", fake_features)
    assert main(["rank-backbones", str(tmp_path / "data"), "--backbones", "poor", "good", "--json"]) == 0
    out, err = capsys.readouterr()
    ranking = _last_json(out)["ranking"]
    assert [list(r) for r in ranking] == [["backbone", "image_size", "logme", "n_images", "n_features", "seconds",
                                           "rank"]] * 2
    assert [(r["backbone"], r["rank"], r["n_images"], r["n_features"]) for r in ranking] == [("good", 1, 8, 6),
                                                                                            ("poor", 2, 8, 6)]
    assert ranking[0]["logme"] > ranking[1]["logme"]
    assert err.splitlines()[-2].startswith("poor at 224 px: LogME")


def test_rank_features_is_typed_and_keeps_ties_in_order():
    from inspector.evidence.transferability import rank_features

    y = np.repeat(np.arange(3), 10)
    same = np.eye(3)[y] + np.random.default_rng(0).normal(0, 0.1, (30, 3))
    ranked = rank_features([("first", same), ("noise", np.random.default_rng(1).normal(size=(30, 3))),
                            ("second", same)], y)
    assert [(r.candidate, r.rank) for r in ranked] == [("first", 1), ("second", 2), ("noise", 3)]


def test_page_helpers_render_the_answers():
    from streamlit.testing.v1 import AppTest

    from inspector.comparison import RunComparison
    from inspector.evidence.transferability import BackboneRank

    x, y, _ = _gaussian_classes(8)
    advice = advise_from_features(x, y, list("abcd"), at=16, repeats=1, n_boot=30)
    comparison = RunComparison(compare_correctness(*_pairs(50, 0.9, 0.6, 0)), "/runs/a", "/runs/b",
                               "the runs' validation predictions", "Fine-tuning hurt here: ...", 3.0, None)
    ranking = [BackboneRank("tf_efficientnet_lite0", 224, -0.2, 40, 1280, 3.0, rank=1)]

    def page(advice, comparison, ranking):
        from ui.evidence import render_advice, render_comparison, render_ranking

        render_advice(advice)
        render_comparison(comparison)
        render_ranking(ranking)

    at = AppTest.from_function(page, args=(advice, comparison, ranking), default_timeout=60).run()
    assert not at.exception
    assert any("Fine-tuning hurt here" in w.value for w in at.warning)
    assert any(comparison.paired.sentence == s.value for s in at.success)
    assert len(at.dataframe) == 2
