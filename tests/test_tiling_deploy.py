"""A tiled anomaly run with an ignore mask, end to end as a user drives it: `inspector train
--defect-size --ignore-mask`, `inspector predict`, the exported bundle's predict.py without torch and
the REST service all tile the same way and give the same verdicts (parity holds tile for tile)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from test_deploy_export import NO_TORCH, _json_tail
from test_tiling import part, with_spot

from inspector.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def strips(tmp_path_factory):
    """Good 192 x 384 strips to train on, new good ones, strips with a 5 px spot, one with a spot inside
    the ignored top-left corner, and the ignore mask (white = ignore)."""
    root = tmp_path_factory.mktemp("strips")
    (root / "train" / "good").mkdir(parents=True)
    (root / "new").mkdir()
    for seed in range(6):
        Image.fromarray(part(seed, 192, 384)).save(root / "train" / "good" / f"good_{seed}.png")
    for seed in (40, 41):
        Image.fromarray(part(seed, 192, 384)).save(root / "new" / f"good_{seed}.png")
    for i, seed in enumerate((50, 51)):
        Image.fromarray(with_spot(part(seed, 192, 384), 60 + 40 * i, 200 + 60 * i)).save(root / "new" / f"spot_{seed}.png")
    Image.fromarray(with_spot(part(60, 192, 384), 40, 50, 8)).save(root / "new" / "spot_ignored.png")
    Image.fromarray(part(60, 192, 384)).save(root / "new" / "plain_60.png")  # the same part without the spot
    mask = np.zeros((48, 96), np.uint8)  # a quarter-size mask: it is stretched over every photo
    mask[:24, :36] = 255  # the top-left 96 x 144 px
    Image.fromarray(mask).save(root / "ignore.png")
    return root


@pytest.fixture(scope="module")
def tiled_run(strips, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    code = main(["train", str(strips / "train"), "--task", "anomaly", "--image-size", "64", "--defect-size", "8",
                 "--ignore-mask", str(strips / "ignore.png"), "--runs-dir", str(runs), "--target-frr", "0.2"])
    assert code in (0, None)
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    return run_dir


def _predict_json(capsys, *args) -> dict:
    capsys.readouterr()
    assert main(["predict", *args, "--json"]) == 0
    return _json_tail(capsys.readouterr().out)


def test_a_tiled_run_stores_its_scale_and_regions_and_finds_small_spots(tiled_run, strips, capsys):
    metrics = json.loads((tiled_run / "run.json").read_text())["summary"]
    assert metrics["inputs"] == "tiles" and metrics["tile_px"] == 64 and "8 px defect" in metrics["scale_reason"]
    recipe = json.loads((tiled_run / "model.json").read_text())
    assert recipe["detector"]["detector"]["tiling"]["tile"] == 64
    assert recipe["detector"]["detector"]["regions"]["ignore_mask"]  # the mask travels with the run
    rows = {p["path"].rsplit("/", 1)[-1]: p for p in _predict_json(capsys, str(tiled_run), str(strips / "new"))["predictions"]}
    assert rows["spot_50.png"]["verdict"] == rows["spot_51.png"]["verdict"] == "NG"
    assert rows["good_40.png"]["verdict"] == rows["good_41.png"]["verdict"] == "OK"
    # its spot lies in the ignored corner: the part scores as it does without it
    assert rows["spot_ignored.png"]["raw_score"] <= 1.05 * rows["plain_60.png"]["raw_score"]


def test_the_bundle_and_the_service_tile_like_the_library(tiled_run, strips, tmp_path, capsys):
    from fastapi.testclient import TestClient

    from inspector.deploy.bundle import export_bundle
    from inspector.deploy.service import ServiceConfig, create_app
    from inspector.inference import load_predictor

    bundle = export_bundle(tiled_run, tmp_path / "bundle", parity_images=sorted((strips / "new").iterdir()))
    parity = json.loads((bundle.path / "parity.json").read_text())
    assert parity["passed"] and parity["verdicts_agree"] == parity["n_images"]
    assert json.loads((bundle.path / "preprocessing.json").read_text())["tiling"]["tile"] == 64
    images = [str(p) for p in sorted((strips / "new").iterdir())]
    out = subprocess.run([sys.executable, "-c", NO_TORCH, *images, "--json"], cwd=bundle.path, capture_output=True,
                         text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "INSPECTOR_THREADS": "2"})
    assert out.returncode == 0, out.stderr
    ours = _json_tail(out.stdout)["predictions"]
    theirs = _predict_json(capsys, str(tiled_run), *images)["predictions"]
    assert [a["verdict"] for a in ours] == [b["verdict"] for b in theirs]
    for a, b in zip(ours, theirs):
        assert abs(a["raw_score"] - b["raw_score"]) <= 1e-4 * abs(b["raw_score"])
    predictor = load_predictor(tiled_run, device="cpu")
    with TestClient(create_app(None, ServiceConfig(), predictor=predictor)) as client:
        files = [("files", (p.rsplit("/", 1)[-1], open(p, "rb").read(), "image/png")) for p in images]
        served = client.post("/predict", files=files).json()["predictions"]
    assert [r["verdict"] for r in served] == [b["verdict"] for b in theirs]
    for a, b in zip(served, theirs):
        assert a["raw_score"] == pytest.approx(b["raw_score"], rel=1e-6)


def test_a_photo_unlike_the_good_parts_is_unsure_not_a_confident_verdict(tiled_run, tmp_path, capsys):
    """The run keeps a model of its good images' features: a photo of another product (a smooth
    gradient with blobs, nothing like the woven surface) is UNSURE "unlike the training images" with
    its distance, in `inspector predict` and in the bundle alike; a new good part is not."""
    from inspector.runtime import load_bundle, predict

    y, x = np.mgrid[0:192, 0:384]
    foreign = np.clip(60 + 0.4 * x + 30 * np.sin(y / 40.0), 0, 255).astype(np.uint8)
    Image.fromarray(np.stack([foreign, foreign // 2 + 60, 255 - foreign], axis=2)).save(tmp_path / "foreign.png")
    Image.fromarray(part(70, 192, 384)).save(tmp_path / "good_70.png")
    rows = _predict_json(capsys, str(tiled_run), str(tmp_path / "foreign.png"), str(tmp_path / "good_70.png"))
    alien, good = rows["predictions"]
    assert alien["verdict"] == "UNSURE" and alien["reason"].startswith("unlike the training images")
    assert alien["familiarity"]["distance"] > alien["familiarity"]["limit"]
    assert good["verdict"] == "OK" and good["familiarity"]["distance"] <= good["familiarity"]["limit"]
    from inspector.deploy.bundle import export_bundle

    bundle = export_bundle(tiled_run, tmp_path / "bundle", parity_images=[tmp_path / "good_70.png"])
    theirs = predict(load_bundle(bundle.path), [str(tmp_path / "foreign.png"), str(tmp_path / "good_70.png")])
    assert [r["verdict"] for r in theirs] == ["UNSURE", "OK"]
    assert theirs[0]["familiarity"]["distance"] == pytest.approx(alien["familiarity"]["distance"], rel=1e-3)
