"""Issue 19, kind 5: well-known dataset layouts. An MVTec-style folder (train/good, test/good,
test/<defect>, ground_truth/<defect>/<name>_mask.png) and a train/ + val/ split are read by split:
training reads train/, evaluation test/ (else val/) with the masks giving the pixel AUROC; split
names are never classes and masks are never photos, through the library, the CLI and the app's zip
import."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspector.cli import main
from inspector.data import discover_dataset
from inspector.errors import InspectorError

SIDE = 64


def _json_tail(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def _part(path: Path, rng: np.random.Generator, defect: bool = False) -> np.ndarray:
    """A textured grey part (PNG at `path`); a defect is a dark blotch. Returns its mask (255 on the defect)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.clip(128 + rng.normal(0, 10, (SIDE, SIDE, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros((SIDE, SIDE), np.uint8)
    if defect:
        y, x = rng.integers(8, SIDE - 24, size=2)
        image[y:y + 14, x:x + 14] = 20
        mask[y:y + 14, x:x + 14] = 255
    Image.fromarray(image).save(path)
    return mask


@pytest.fixture(scope="module")
def mvtec(tmp_path_factory) -> Path:
    """bottle/: train/good (8), test/good (4), test/crack (4) with ground_truth/crack/<name>_mask.png."""
    root = tmp_path_factory.mktemp("mvtec") / "bottle"
    rng = np.random.default_rng(0)
    for i in range(8):
        _part(root / "train" / "good" / f"{i:03d}.png", rng)
    for i in range(4):
        _part(root / "test" / "good" / f"{i:03d}.png", rng)
        mask = _part(root / "test" / "crack" / f"{i:03d}.png", rng, defect=True)
        (root / "ground_truth" / "crack").mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(root / "ground_truth" / "crack" / f"{i:03d}_mask.png")
    (root / "license.txt").write_text("CC BY-NC-SA 4.0")
    return root


@pytest.fixture(scope="module")
def train_val(tiny_data, tmp_path_factory) -> Path:
    """parts/: train/{ok,scratch,crack} (5 each) and val/{ok,scratch,crack} (3 each) from the tiny data."""
    root = tmp_path_factory.mktemp("split") / "parts"
    for name in ("ok", "scratch", "crack"):
        files = sorted((tiny_data / name).iterdir())
        for split, chosen in (("train", files[:5]), ("val", files[5:])):
            (root / split / name).mkdir(parents=True)
            for f in chosen:
                shutil.copy(f, root / split / name / f.name)
    return root


# -- the library: discover_dataset --------------------------------------------------------------------

def test_mvtec_training_reads_train_good_only_and_says_so(mvtec):
    dataset = discover_dataset(mvtec)
    assert dataset.classes == ["good"] and dataset.counts() == {"good": 8}
    assert all("train" in s.path.parts and "ground_truth" not in s.path.parts for s in dataset.samples)
    assert len(dataset.notes) == 1
    assert "train/" in dataset.notes[0] and "inspector evaluate" in dataset.notes[0] and "test/" in dataset.notes[0]
    assert [s.path for s in dataset.skipped] == ["license.txt"]  # nothing of test/ or the masks is "skipped"


def test_mvtec_evaluation_reads_test_with_its_masks(mvtec):
    dataset = discover_dataset(mvtec, split="test")
    assert dataset.classes == ["crack", "good"] and dataset.counts() == {"crack": 4, "good": 4}
    masks = {s.path.name: s.mask for s in dataset.samples if s.label == "crack"}
    assert masks == {f"{i:03d}.png": mvtec / "ground_truth" / "crack" / f"{i:03d}_mask.png" for i in range(4)}
    assert all(s.mask is None for s in dataset.samples if s.label == "good")
    assert "evaluating on test/" in dataset.notes[0]
    # the test folder given on its own still finds the masks beside it
    alone = discover_dataset(mvtec / "test", split="test")
    assert sum(s.mask is not None for s in alone.samples) == 4


def test_a_zipped_mvtec_folder_is_read_the_same(mvtec, tmp_path):
    archive = tmp_path / "bottle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(mvtec.rglob("*")):
            if path.is_file():
                zf.write(path, Path("bottle") / path.relative_to(mvtec))
    assert discover_dataset(archive, extract_dir=tmp_path / "x").counts() == {"good": 8}
    tested = discover_dataset(archive, extract_dir=tmp_path / "y", split="test")
    assert tested.counts() == {"crack": 4, "good": 4} and sum(s.mask is not None for s in tested.samples) == 4


def test_a_train_val_split_trains_on_train_classes_never_on_split_names(train_val):
    dataset = discover_dataset(train_val)
    assert dataset.classes == ["crack", "ok", "scratch"] and set(dataset.counts().values()) == {5}
    assert "val/" in dataset.notes[0] and "inspector evaluate" in dataset.notes[0]
    held_out = discover_dataset(train_val, split="test")  # no test/: evaluation reads val/
    assert held_out.classes == ["crack", "ok", "scratch"] and set(held_out.counts().values()) == {3}


def test_split_folders_beside_class_folders_are_refused_in_plain_words(train_val, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(train_val / "train", mixed)
    shutil.copytree(train_val / "val", mixed / "test")  # classes ok, scratch, crack ... and "test"
    with pytest.raises(InspectorError, match="split") as caught:
        discover_dataset(mixed)
    assert "test/" in str(caught.value) and "Pass the folder of class folders" in str(caught.value)
    only_val = tmp_path / "only_val"
    shutil.copytree(train_val / "val", only_val / "val")
    shutil.copytree(train_val / "val", only_val / "test")
    with pytest.raises(InspectorError, match="no train/ folder"):
        discover_dataset(only_val)


def test_masks_are_never_photos_even_in_plain_class_folders(mvtec, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(mvtec / "test", plain)
    shutil.copytree(mvtec / "ground_truth", plain / "ground_truth")  # beside the classes
    shutil.copytree(mvtec / "ground_truth" / "crack", plain / "crack" / "masks")  # inside a class
    dataset = discover_dataset(plain)
    assert dataset.classes == ["crack", "good"] and dataset.counts() == {"crack": 4, "good": 4}
    left_out = {s.path: s.reason for s in dataset.skipped}
    assert set(left_out) == {"ground_truth/", "crack/masks/"}
    assert all("masks" in reason and "not photos" in reason for reason in left_out.values())
    # the mask folder itself, or a wrapper around nothing but masks: no class is made of masks
    with pytest.raises(InspectorError, match="masks"):
        discover_dataset(mvtec / "ground_truth")
    shutil.copytree(mvtec / "ground_truth", tmp_path / "wrapper" / "ground_truth")
    with pytest.raises(InspectorError, match="masks"):
        discover_dataset(tmp_path / "wrapper")


# -- the app: importing a zip into the workspace ------------------------------------------------------

def test_the_app_imports_only_the_train_split_of_a_zip_and_lists_the_rest(mvtec, tmp_path):
    from inspector.workspace import Workspace

    archive = tmp_path / "bottle.zip"
    shutil.make_archive(str(archive.with_suffix("")), "zip", mvtec.parent, mvtec.name)
    ws = Workspace(tmp_path / "ws")
    counts, skipped = ws.add_zip(archive)
    assert counts == {"good": 8} and ws.classes() == {"good": 8}
    reasons = {s.path: s.reason for s in skipped}
    assert "test/" in reasons and "not imported" in reasons["test/"]
    assert "ground_truth/" in reasons and "not photos" in reasons["ground_truth/"]


# -- the CLI: train, evaluate, advise ----------------------------------------------------------------

@pytest.fixture(scope="module")
def anomaly_run(mvtec, tmp_path_factory) -> dict:
    """`inspector train MVTEC --task anomaly --json`, run once (a module fixture cannot use capsys)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["train", str(mvtec), "--task", "anomaly", "--image-size", "64", "--orientation-matters",
                     "--runs-dir", str(tmp_path_factory.mktemp("runs")), "--json"])
    assert code == 0, err.getvalue()
    return {"result": _json_tail(out.getvalue()), "stderr": err.getvalue()}


def test_cli_anomaly_training_on_mvtec_uses_train_good_and_says_so(anomaly_run):
    result = anomaly_run["result"]
    assert result["task"] == "anomaly" and result["n_good"] == 8
    notes = [line for line in anomaly_run["stderr"].splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "train/ only" in notes[0] and result["notes"] == [notes[0][len("note: "):]]
    recipe = json.loads((Path(result["run_dir"]) / "model.json").read_text())
    assert recipe["classes"] == ["good"] and recipe["ok_classes"] == ["good"]


def test_cli_evaluate_on_mvtec_reads_test_and_reports_pixel_auroc(anomaly_run, mvtec, capsys):
    run_dir = anomaly_run["result"]["run_dir"]
    assert main(["evaluate", run_dir, str(mvtec), "--json"]) == 0
    out = capsys.readouterr()
    report = _json_tail(out.out)
    assert report["n_good"] == 4 and report["n_defect"] == 4 and report["ok_classes"] == ["good"]
    assert report["pixel_auroc_images"] == 8
    assert report["pixel_auroc"] > 0.8  # the dark blotches stand out of the texture
    assert "auroc" in report and "note: " in out.err and "evaluating on test/" in out.err
    assert main(["evaluate", run_dir, str(mvtec)]) == 0
    assert f"pixel AUROC {report['pixel_auroc']:.3f}" in capsys.readouterr().out


def test_cli_evaluate_without_masks_keeps_the_key_empty(anomaly_run, mvtec, tmp_path, capsys):
    plain = tmp_path / "plain"
    shutil.copytree(mvtec / "test", plain)
    assert main(["evaluate", anomaly_run["result"]["run_dir"], str(plain), "--json"]) == 0
    out = capsys.readouterr()
    report = _json_tail(out.out)
    assert report["pixel_auroc"] is None and report["n_defect"] == 4


def test_cli_classification_on_a_train_val_split_learns_the_classes_not_the_splits(train_val, tmp_path, capsys):
    assert main(["train", str(train_val), "--strategy", "linear_probe", "--image-size", "64", "--no-cv",
                 "--orientation-matters", "--runs-dir", str(tmp_path / "runs"), "--json"]) == 0
    out = capsys.readouterr()
    result = _json_tail(out.out)
    recipe = json.loads((Path(result["run_dir"]) / "model.json").read_text())
    assert recipe["classes"] == ["crack", "ok", "scratch"]
    assert "note: " in out.err and "val/ is never trained on" in out.err
    assert main(["evaluate", result["run_dir"], str(train_val), "--json"]) == 0
    report = _json_tail(capsys.readouterr().out)
    assert sum(c["support"] for c in report["per_class"].values()) == 9  # the 3 x 3 images of val/


# -- the measure itself -------------------------------------------------------------------------------

def test_pixel_auroc_is_one_for_a_map_that_outlines_the_mask_and_half_for_a_flat_one(tmp_path):
    from types import SimpleNamespace

    from inspector.tasks.anomaly.pixel import pixel_auroc, read_mask

    mask = np.zeros((32, 48), np.uint8)
    mask[8:16, 8:24] = 1  # a 0/1 mask reads the same as a 0/255 one
    Image.fromarray(mask).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png").sum() == 8 * 16
    prep = SimpleNamespace(resize_mode="stretch", image_size=32)
    patches = np.zeros((1, 32, 48), np.float32)
    patches[0, 8:16, 8:24] = 10.0

    class Fake:
        preprocessing = prep

        def __init__(self, maps):
            self.maps = maps

        def score(self, images):
            return np.zeros(len(images)), self.maps[:len(images)]

    defect = SimpleNamespace(path="d.png", label="crack", mask=tmp_path / "m.png", width=48, height=32)
    good = SimpleNamespace(path="g.png", label="good", mask=None, width=48, height=32)
    sharp = pixel_auroc(Fake(np.concatenate([patches, np.zeros_like(patches)])), [defect, good], ["good"])
    assert sharp["pixel_auroc"] > 0.95 and sharp["pixel_auroc_images"] == 2
    flat = pixel_auroc(Fake(np.zeros((2, 32, 48), np.float32)), [defect, good], ["good"])
    assert flat["pixel_auroc"] == pytest.approx(0.5)
    assert pixel_auroc(Fake(patches), [good], ["good"]) == {"pixel_auroc": None, "pixel_auroc_images": 0}


def test_predict_on_an_mvtec_folder_leaves_the_masks_out_and_says_why(anomaly_run, mvtec, capsys):
    """`inspector predict` and the bundle's predict.py share runtime.bundle.collect_images: a mask is no part."""
    from inspector.runtime.bundle import collect_images

    paths, skipped = collect_images([mvtec])
    assert paths and not any("ground_truth" in p.parts for p in paths)
    masks = [s for s in skipped if "ground_truth" in s["path"]]
    assert len(masks) == 4 and all("defect mask" in s["reason"] for s in masks)
    assert main(["predict", anomaly_run["result"]["run_dir"], str(mvtec), "--json"]) == 0
    result = _json_tail(capsys.readouterr().out)
    assert len(result["predictions"]) == 16  # 8 train/good + 4 test/good + 4 test/crack; no mask
    assert sum("defect mask" in s["reason"] for s in result["skipped"]) == 4
