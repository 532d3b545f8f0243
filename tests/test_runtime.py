"""inspector.runtime: the torch-free code a deployed model runs (decoding, resize, calibration, result
rows, the bundle reader, predict.py's command line), shared by the library and copied into bundles."""
from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_deploy_export import NO_TORCH, _json_tail, bundle  # noqa: F401 - the exported tiny run

from inspector.runtime import calibrate, probability_rows, score_rows
from inspector.runtime.resize import fit_to_input

RUNTIME = Path(__file__).resolve().parents[1] / "inspector" / "runtime"
ENTRY = RUNTIME.parent / "deploy" / "predict_entry.py"
ALLOWED = {"numpy", "PIL", "onnxruntime", "openvino"}  # besides the standard library
LAZY = {"onnxruntime", "openvino"}  # imported only when a bundle is opened


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(module, relative level, at module level) of every import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level, id(node) in top))
    return found


@pytest.mark.parametrize("path", sorted(RUNTIME.glob("*.py")) + [ENTRY], ids=lambda p: p.name)
def test_the_runtime_imports_only_the_standard_library_numpy_and_pillow(path):
    """Nothing of inspector outside inspector/runtime (relative imports stay in the package), and
    never torch, OpenCV or albumentations: the bundle carries this code and nothing else."""
    for module, level, at_top in _imports(path):
        if level:
            assert level == 1 and path.parent == RUNTIME, f"{path.name}: from {'.' * level}{module} leaves the package"
            continue
        root = module.split(".")[0]
        assert root in sys.stdlib_module_names or root in ALLOWED, f"{path.name} imports {module}"
        assert not (root in LAZY and at_top), f"{path.name} imports {module} at module level"


def test_the_library_uses_the_very_runtime_classes_and_functions():
    import inspector.data
    import inspector.data.images
    import inspector.errors
    import inspector.runtime as runtime
    from inspector.tasks.anomaly import calibration

    assert inspector.errors.InspectorError is runtime.errors.InspectorError
    assert inspector.errors.ImageLoadError is runtime.errors.ImageLoadError
    assert issubclass(inspector.errors.UnsafeArchiveError, runtime.InspectorError)
    for name in ("IMAGE_EXTENSIONS", "MAX_IMAGE_PIXELS", "content_hash", "is_image_path", "load_image", "to_rgb_array"):
        assert getattr(inspector.data, name) is getattr(inspector.data.images, name) is getattr(runtime.images, name)
    assert calibration.calibrate is runtime.calibrate and calibration.ScoreScale is runtime.ScoreScale


# ---------------------------------------------------------------- the resize against OpenCV
def _albumentations_resize(settings: dict):
    """The library's resize before it moved to the runtime: albumentations over cv2.resize."""
    import albumentations as A
    import cv2

    size = settings["image_size"]
    flags = {"bicubic": cv2.INTER_CUBIC, "bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}
    resize = {"interpolation": flags[settings["interpolation"]],
              "area_for_downscale": "image" if settings["antialias"] else None}
    if settings["resize_mode"] == "stretch":
        steps = [A.Resize(size, size, **resize)]
    elif settings["resize_mode"] == "crop":
        steps = [A.SmallestMaxSize(max_size=size, **resize), A.CenterCrop(size, size)]
    else:
        steps = [A.LongestMaxSize(max_size=size, **resize),
                 A.PadIfNeeded(size, size, border_mode=cv2.BORDER_CONSTANT, fill=tuple(settings["pad_value"]))]
    pipeline = A.Compose(steps)
    return lambda image: pipeline(image=image)["image"]


# The parity probes' sizes, whole multiples, and extreme strips (one side shrinks 70x, the other grows 5x).
SHAPES = [(97, 131), (272, 219), (123, 286), (600, 244), (448, 448), (1000, 750), (672, 672), (224, 224),
          (50, 900), (48, 16384), (16384, 48)]


@pytest.mark.parametrize("mode", ["stretch", "letterbox", "crop"])
@pytest.mark.parametrize("interpolation,antialias", [("bicubic", True), ("bicubic", False), ("bilinear", True),
                                                     ("bilinear", False), ("nearest", False)])
def test_fit_to_input_gives_opencvs_pixels(mode, interpolation, antialias):
    """Area averaging (shrinking with antialias), bilinear and nearest: bit-exact with cv2.resize.
    Bicubic enlarging: OpenCV hands it to Intel IPP, whose float sums depend on the CPU; within one
    grey level there (measured on this machine: ~1e-3 of the values, up to 1.6e-2 on the strips)."""
    settings = {"image_size": 224, "resize_mode": mode, "interpolation": interpolation, "antialias": antialias,
                "pad_value": [124, 116, 104]}
    reference = _albumentations_resize(settings)
    rng = np.random.default_rng(3)
    differing = total = 0
    for h, w in SHAPES:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        expected, got = reference(image), fit_to_input(image, settings)
        assert got.shape == expected.shape == (224, 224, 3) and got.dtype == np.uint8, (h, w)
        diff = np.abs(got.astype(int) - expected.astype(int))
        if interpolation != "bicubic":
            assert diff.max() == 0, (h, w)
        assert diff.max() <= 1, (h, w)
        assert (diff > 0).mean() < 2e-2, (h, w)
        differing, total = differing + int((diff > 0).sum()), total + diff.size
    assert differing / total < 5e-3


def test_a_centre_crop_computes_only_the_centre():
    """crop mode resizes a 48 x 16384 strip to 224 x 76459 in OpenCV; the runtime computes the
    224 x 224 it keeps (the same pixels) without the 50 MB around it."""
    from inspector.runtime.resize import cv2_resize

    image = np.random.default_rng(0).integers(0, 256, (48, 400, 3), dtype=np.uint8)
    whole = cv2_resize(image, 1867, 224, "bicubic", False)
    window = cv2_resize(image, 1867, 224, "bicubic", False, (0, 821, 224, 224))
    assert np.array_equal(window, whole[:, 821:821 + 224])


def test_an_unknown_resize_is_a_plain_error():
    with pytest.raises(ValueError, match="squash"):
        fit_to_input(np.zeros((4, 4, 3), np.uint8), {"image_size": 8, "resize_mode": "squash",
                                                     "interpolation": "bicubic"})


# ---------------------------------------------------------------- the one result-row builder
def test_probability_rows_have_the_shape_of_inspector_predict():
    classes = ["crack", "ok", "scratch"]
    rows = probability_rows(classes, np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]], dtype=np.float32))
    assert [list(r) for r in rows] == [["label", "confidence", "probabilities"]] * 2
    assert rows[0]["label"] == "ok" and rows[0]["confidence"] == pytest.approx(0.7)
    assert list(rows[1]["probabilities"]) == classes and isinstance(rows[1]["confidence"], float)
    judged = probability_rows(classes, np.array([[0.1, 0.7, 0.2], [0.2, 0.5, 0.3], [0.0, 1.0, 1e-8]]), ["ok"], 0.5)
    assert [list(r)[3:] for r in judged] == [["verdict", "defect_probability"]] * 3
    assert [r["verdict"] for r in judged] == ["OK", "NG", "OK"]  # NG when P(defect) >= threshold
    assert judged[1]["defect_probability"] == pytest.approx(0.5)
    over = probability_rows(["a", "ok"], np.array([[0.0, 1.0000001]]), ["ok"])[0]
    assert over["defect_probability"] == 0.0  # clipped to [0, 1]
    assert probability_rows(classes, np.zeros((0, 3))) == []


def test_score_rows_read_0_5_at_the_threshold_and_ng_above_it():
    scale = calibrate(np.linspace(1.0, 2.0, 19), 0.1)
    rows = score_rows(np.array([scale.threshold - 1, scale.threshold, scale.threshold + 1e-6], dtype=np.float64), scale)
    assert [list(r) for r in rows] == [["score", "raw_score", "verdict"]] * 3
    assert [r["verdict"] for r in rows] == ["OK", "OK", "NG"]
    assert rows[1]["score"] == 0.5 and rows[0]["score"] < 0.5 < rows[2]["score"]
    assert all(isinstance(r["raw_score"], float) for r in rows)


# ---------------------------------------------------------------- a tiny bundle, no training needed
def _tiny_bundle(folder: Path, kind: str) -> Path:
    """A bundle whose model.onnx is a few ONNX nodes: probabilities = softmax of the mean colour /
    64 (classifier), or raw score = the brightest pixel's mean over RGB (anomaly model)."""
    import onnx
    from onnx import TensorProto, helper

    from inspector.deploy.bundle import copy_runtime

    folder.mkdir(parents=True)
    nodes = [helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT)]
    if kind == "probabilities":
        nodes += [helper.make_node("ReduceMean", ["x"], ["mean"], axes=[1, 2], keepdims=0),
                  helper.make_node("Div", ["mean", "c64"], ["logits"]),
                  helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
        outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 3])]
        labels = {"classes": ["blue", "green", "red"][::-1], "ok_classes": ["green"], "threshold": 0.5}
    else:
        nodes += [helper.make_node("ReduceMean", ["x"], ["patch_distances"], axes=[3], keepdims=0),
                  helper.make_node("ReduceMax", ["patch_distances"], ["raw_score"], axes=[1, 2], keepdims=0)]
        outputs = [helper.make_tensor_value_info("raw_score", TensorProto.FLOAT, ["n"]),
                   helper.make_tensor_value_info("patch_distances", TensorProto.FLOAT, ["n", 16, 16])]
        labels = {"classes": ["ok"], "ok_classes": ["ok"], "target_frr": 0.1,
                  "calibration_scores": list(np.linspace(100.0, 200.0, 19))}
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.UINT8,
                                                                            ["n", 16, 16, 3])],
                              outputs, [helper.make_tensor("c64", TensorProto.FLOAT, [], [64.0])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder / "model.onnx")
    (folder / "labels.json").write_text(json.dumps({"task": "toy", "runtime_outputs": kind, **labels}))
    (folder / "preprocessing.json").write_text(json.dumps({"image_size": 16, "resize_mode": "letterbox",
                                                           "interpolation": "bilinear", "antialias": True,
                                                           "pad_value": [0, 0, 0]}))
    copy_runtime(folder)
    return folder


def _colour(rgb, h=40, w=30) -> np.ndarray:
    """A colour with a checkerboard 30 levels darker in every other pixel: an image with detail, not a
    flat frame (which every model answers UNSURE, runtime/frames.py); the brightest pixel is `rgb`."""
    image = np.broadcast_to(np.array(rgb, dtype=np.int16), (h, w, 3)).copy()
    image[(np.indices((h, w)).sum(axis=0) % 2).astype(bool)] -= 30
    return np.clip(image, 0, 255).astype(np.uint8)


def test_the_python_api_predicts_paths_and_arrays(tmp_path):
    from PIL import Image

    import inspector.runtime as runtime

    folder = _tiny_bundle(tmp_path / "b", "probabilities")
    Image.fromarray(_colour((250, 0, 0))).save(tmp_path / "red.png")
    bundle = runtime.load_bundle(folder)
    rows = runtime.predict(bundle, [tmp_path / "red.png", _colour((0, 250, 0), 40, 90)])
    assert [r["label"] for r in rows] == ["red", "green"] and [r["verdict"] for r in rows] == ["NG", "OK"]
    no_rule = runtime.predict(folder, [_colour((0, 0, 250))], ok_classes=[])[0]
    assert no_rule.keys() == {"label", "confidence", "probabilities", "verdict", "reason"}
    assert no_rule["verdict"] is None and no_rule["reason"] is None  # no OK classes: no verdict
    with pytest.raises(runtime.ImageLoadError, match="missing.png: file not found"):
        runtime.predict(bundle, [tmp_path / "missing.png"])
    with pytest.raises(runtime.InspectorError, match="not an exported bundle"):
        runtime.load_bundle(tmp_path)


def test_an_anomaly_bundle_moves_its_threshold_without_re_export(tmp_path):
    import inspector.runtime as runtime

    folder = _tiny_bundle(tmp_path / "b", "anomaly_score")
    bundle = runtime.load_bundle(folder)
    assert bundle.threshold == bundle.scale.threshold and bundle.target_frr == 0.1
    rows = runtime.predict(bundle, [_colour((60, 60, 60)), _colour((250, 250, 250))])
    assert [r["verdict"] for r in rows] == ["OK", "NG"] and rows[1]["raw_score"] == pytest.approx(235, abs=1.5)  # 250 and 220 averaged by the resize
    assert runtime.load_bundle(folder, target_frr=0.5).threshold < bundle.threshold
    with pytest.raises(runtime.InspectorError, match="between 0 and 1"):
        runtime.load_bundle(folder, target_frr=2)


def _run_alone(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """predict.py in a Python where torch, OpenCV, albumentations and inspector cannot be imported."""
    return subprocess.run([sys.executable, "-c", NO_TORCH, *args], cwd=folder, capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "INSPECTOR_THREADS": "1"})


def test_predict_py_runs_alone_and_refuses_the_other_kinds_options(tmp_path):
    from PIL import Image

    folder = _tiny_bundle(tmp_path / "b", "probabilities")
    Image.fromarray(_colour((250, 0, 0))).save(folder / "red.png")
    out = _run_alone(folder, "red.png", "--json")
    assert out.returncode == 0, out.stderr
    result = _json_tail(out.stdout)
    assert list(result) == ["bundle", "classes", "predictions", "skipped"]
    assert result["predictions"][0]["path"] == "red.png" and result["predictions"][0]["verdict"] == "NG"
    out = _run_alone(folder, "red.png", "--target-frr", "0.1")
    assert out.returncode == 2 and out.stderr.strip() == ("error: --target-frr goes with an anomaly model; this "
                                                          "model is a classifier.")
    anomaly = _tiny_bundle(tmp_path / "a", "anomaly_score")
    out = _run_alone(anomaly, str(folder / "red.png"), "--json")
    assert out.returncode == 0, out.stderr
    assert list(_json_tail(out.stdout)) == ["bundle", "task", "threshold", "target_frr", "predictions", "skipped"]
    out = _run_alone(anomaly, str(folder / "red.png"), "--ok-classes", "ok")
    assert out.returncode == 2 and "--ok-classes and --threshold go with a classifier" in out.stderr


def test_two_bundles_in_one_process_keep_their_own_code(tmp_path):
    """predict.py loads its inspector_runtime/ under a name of its own: a second bundle (or the
    library's inspector.runtime) never hands it a cached copy of other code."""
    import inspector.runtime as runtime
    from inspector.deploy.parity import load_bundle_module

    first, second = (_tiny_bundle(tmp_path / name, "probabilities") for name in ("a", "b"))
    (second / "inspector_runtime" / "rows.py").write_text(
        (second / "inspector_runtime" / "rows.py").read_text() + "\nMARK = 'second'\n")
    a, b = load_bundle_module(first), load_bundle_module(second)
    assert a.Bundle is not b.Bundle is not runtime.Bundle and "inspector_runtime" not in sys.modules
    assert not hasattr(sys.modules[a.Bundle.__module__.rpartition(".")[0] + ".rows"], "MARK")
    assert sys.modules[b.Bundle.__module__.rpartition(".")[0] + ".rows"].MARK == "second"
    assert a.load_bundle().folder == first.resolve() and b.predict(second, [_colour((0, 250, 0))])[0]["label"] == "green"


# ---------------------------------------------------------------- slow: an exported trained run
@pytest.mark.slow
def test_an_exported_bundle_copied_elsewhere_runs_alone_like_inspector_predict(bundle, tiny_run, tmp_path,  # noqa: F811
                                                                                capsys):
    from inspector.cli import main

    copy = tmp_path / "line-pc" / "model"
    shutil.copytree(bundle.path, copy)
    sample = next(p for p in (copy / "sample").iterdir() if p.suffix != ".json")
    out = _run_alone(copy, f"sample/{sample.name}", "--json")
    assert out.returncode == 0, out.stderr
    ours = _json_tail(out.stdout)
    assert main(["predict", str(tiny_run.run_dir), str(sample), "--json", "--ok-classes", "ok"]) == 0
    theirs = _json_tail(capsys.readouterr().out)
    assert ours["classes"] == theirs["classes"] and len(ours["predictions"]) == len(theirs["predictions"]) == 1
    a, b = ours["predictions"][0], theirs["predictions"][0]
    assert list(a)[1:] == list(b)[1:] and a["label"] == b["label"] and a["verdict"] == b["verdict"]
    assert max(abs(a["probabilities"][c] - b["probabilities"][c]) for c in a["probabilities"]) <= 1e-4
