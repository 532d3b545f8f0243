"""Classification on tiles (issue 22): a tiled run's image is the mean of its tiles' features under the
linear probe's head (runtime/tiling.py mean_over_inputs), so the PyTorch predictor, its map of where a
class lies and the exported bundle all read the tiles the same way. Generated strips with an 8 px spot."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from test_deploy_export import _json_tail
from test_tiling import part, with_spot

from inspector.cli import main
from inspector.runtime.tiling import mean_over_inputs

HEIGHT, WIDTH = 128, 256
SPOTS = {"spot_a.png": (20, 30), "spot_b.png": (90, 200)}  # (top, left) of the new spotted strips


def test_mean_over_inputs_averages_each_images_inputs_across_batches():
    images = [np.full(3, 1.0), np.full(1, 5.0), np.full(2, 2.0)]  # an "image" of k inputs, each its value
    calls = []

    def run(batch):
        calls.append(len(batch))
        return [batch[:, None] * np.array([1.0, 10.0]), batch]

    pairs, values = mean_over_inputs(images, lambda im: iter(im), run, batch_size=2)
    assert calls == [2, 2, 2]  # 6 inputs in batches of 2, across image boundaries
    assert np.allclose(values, [1.0, 5.0, 2.0]) and np.allclose(pairs[:, 1], [10.0, 50.0, 20.0])
    assert mean_over_inputs([], lambda im: iter(im), run) == []
    with pytest.raises(ValueError):
        mean_over_inputs([np.zeros(0)], lambda im: iter(im), run)


@pytest.fixture(scope="module")
def strips(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls_strips")
    rng = np.random.default_rng(0)
    for label in ("ok", "spot"):
        (root / "train" / label).mkdir(parents=True)
    for seed in range(8):
        Image.fromarray(part(seed, HEIGHT, WIDTH)).save(root / "train" / "ok" / f"ok_{seed}.png")
        top, left = int(rng.integers(4, HEIGHT - 12)), int(rng.integers(4, WIDTH - 12))
        Image.fromarray(with_spot(part(100 + seed, HEIGHT, WIDTH), top, left, 8)).save(
            root / "train" / "spot" / f"spot_{seed}.png")
    (root / "new").mkdir()
    for name, (top, left) in SPOTS.items():
        Image.fromarray(with_spot(part(300 + top, HEIGHT, WIDTH), top, left, 8)).save(root / "new" / name)
    for seed in (200, 201):
        Image.fromarray(part(seed, HEIGHT, WIDTH)).save(root / "new" / f"ok_{seed}.png")
    return root


@pytest.mark.slow
def test_a_tiled_classifier_finds_small_spots_and_exports_with_parity(strips, tmp_path, capsys):
    from inspector import Predictor
    from inspector.deploy.bundle import export_bundle
    from inspector.runtime.bundle import Bundle

    runs = tmp_path / "runs"
    assert main(["train", str(strips / "train"), "--image-size", "64", "--defect-size", "8", "--orientation-matters",
                 "--runs-dir", str(runs)]) in (0, None)
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    run = json.loads((run_dir / "run.json").read_text())
    summary = run["summary"]
    assert run["strategy"] == "linear_probe" and summary["inputs"] == "tiles" and summary["tile_px"] == 64
    assert summary["val_accuracy"] >= 0.85  # out of fold, 16 strips

    capsys.readouterr()
    assert main(["predict", str(run_dir), str(strips / "new"), "--json"]) == 0
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in _json_tail(capsys.readouterr().out)["predictions"]}
    assert [rows[n]["label"] for n in sorted(rows)] == ["ok", "ok", "spot", "spot"]

    predictor = Predictor.from_run(run_dir, device="cpu")
    for name, (top, left) in SPOTS.items():  # the map over the whole strip is hottest at the spot's tile
        heat = predictor.heatmap(np.asarray(Image.open(strips / "new" / name).convert("RGB")))
        assert heat.shape == (HEIGHT, WIDTH)
        assert heat[top:top + 8, left:left + 8].max() >= 0.99 * heat.max() > heat.min() + 0.2

    bundle_dir = export_bundle(run_dir, tmp_path / "bundle", parity_images=sorted((strips / "new").iterdir())).path
    parity = json.loads((bundle_dir / "parity.json").read_text())
    assert parity["passed"] and parity["labels_agree"] == parity["n_images"]
    bundle = Bundle(bundle_dir)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((strips / "new").iterdir())]
    assert np.abs(bundle.predict_proba(images) - predictor.predict_proba(images)).max() < 1e-3
    assert [r["label"] for r in bundle.rows(images)] == ["ok", "ok", "spot", "spot"]


@pytest.mark.parametrize("args, words", [
    (["--strategy", "fine_tune", "--defect-size", "8"], "linear_probe"),
    (["--ignore-mask", "MASK"], "anomaly runs"),
])
def test_a_classifier_refuses_tiles_it_cannot_read_in_plain_words(strips, tmp_path, capsys, args, words):
    mask = tmp_path / "mask.png"
    Image.fromarray(np.pad(np.full((4, 4), 255, np.uint8), 2)).save(mask)  # a white square to ignore
    args = [str(mask) if a == "MASK" else a for a in args]
    code = main(["train", str(strips / "train"), "--image-size", "64", "--runs-dir", str(tmp_path / "runs"), *args])
    assert code != 0
    assert words in capsys.readouterr().err
