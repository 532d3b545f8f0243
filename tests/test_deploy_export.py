"""`inspector export`: the bundle, its parity check, and predict.py in a Python without torch."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from inspector.cli import main
from inspector.errors import InspectorError

# A Python whose imports of torch, timm, cv2, albumentations or inspector fail, as on a line PC.
NO_TORCH = textwrap.dedent("""
    import importlib.abc, runpy, sys
    BLOCKED = {"torch", "timm", "torchvision", "cv2", "albumentations", "inspector", "safetensors"}
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is not installed on the line PC")
    sys.meta_path.insert(0, Block())
    sys.argv = ["predict.py", *sys.argv[1:]]
    runpy.run_path("predict.py", run_name="__main__")
""")


BUNDLE_FILES = ["model.onnx", "preprocessing.json", "labels.json", "predict.py", "requirements.txt", "README.md",
                "parity.json", "bundle.json", "sample/expected.json", "inspector_runtime/__init__.py",
                "inspector_runtime/resize.py"]


def _json_tail(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def bundle(tiny_run, tmp_path_factory):
    from inspector.deploy.bundle import export_bundle

    out = tmp_path_factory.mktemp("export") / "bundle"
    return export_bundle(tiny_run.run_dir, out, ok_classes=["ok"], threshold=0.5)


# ---------------------------------------------------------------- fast: no trained model needed
@pytest.mark.parametrize("mode", ["stretch", "letterbox", "crop"])
@pytest.mark.parametrize("interpolation,antialias", [("bicubic", True), ("bicubic", False), ("bilinear", True)])
def test_the_training_pipeline_feeds_the_pixels_the_bundle_computes(mode, interpolation, antialias):
    """inspector.augment resizes with the runtime's fit_to_input, the code the bundle carries: the
    app and the bundle see the same pixels (tests/test_runtime.py compares them with OpenCV)."""
    from inspector.augment import Preprocessing, build_preview
    from inspector.runtime.resize import fit_to_input

    prep = Preprocessing(224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), interpolation, mode, antialias)
    pipeline = build_preview(prep, "none")
    rng = np.random.default_rng(3)
    for h, w in [(97, 131), (272, 219), (600, 244), (224, 224), (50, 900)]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        assert np.array_equal(pipeline(image), fit_to_input(image, prep.resize_settings())), (h, w)


def test_the_bundle_code_is_the_runtime_copied_unchanged(tmp_path):
    """predict.py and inspector_runtime/ are byte-for-byte copies (no markers, no stand-ins), and
    predict.py imports nothing of inspector."""
    from inspector.deploy.bundle import PREDICT_ENTRY, RUNTIME_FOLDER, RUNTIME_SOURCE, copy_runtime

    copy_runtime(tmp_path)
    assert (tmp_path / "predict.py").read_bytes() == PREDICT_ENTRY.read_bytes()
    copied = sorted(p.name for p in (tmp_path / RUNTIME_FOLDER).iterdir())
    assert copied == sorted(p.name for p in RUNTIME_SOURCE.glob("*.py")) and "__init__.py" in copied
    assert all((tmp_path / RUNTIME_FOLDER / name).read_bytes() == (RUNTIME_SOURCE / name).read_bytes()
               for name in copied)
    assert "inspector." not in PREDICT_ENTRY.read_text().replace("inspector/", "")


def test_views_are_stacked_in_the_models_order():
    import torch

    from inspector.deploy.onnx_export import stacked_dihedral_views
    from inspector.models import dihedral_views

    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    assert torch.equal(stacked_dihedral_views(x), torch.cat(list(dihedral_views(x))))


def test_unknown_task_and_missing_openvino_are_plain_errors(tmp_path, capsys, monkeypatch):
    from inspector.deploy.onnx_export import create_exporter, list_exporters

    assert "classification" in list_exporters()
    with pytest.raises(InspectorError, match="cannot be exported yet"):
        create_exporter("no-such-task")
    monkeypatch.setitem(sys.modules, "openvino", None)  # as where it is not installed
    assert main(["export", str(tmp_path), "--format", "openvino"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: OpenVINO export needs the openvino package")


def test_a_failed_parity_check_is_a_plain_error():
    from inspector.deploy.parity import ParityReport, require_parity

    report = ParityReport(10, 9, 0.2, 0.01, 1e-4, "a.png", 1.0)
    with pytest.raises(InspectorError, match="different label on 1 of 10"):
        require_parity(report)
    with pytest.raises(InspectorError, match="differ by up to 2.0e-01"):
        require_parity(ParityReport(10, 10, 0.2, 0.01, 1e-4, "a.png", 1.0))


# ---------------------------------------------------------------- slow: export a trained run
@pytest.mark.slow
def test_bundle_is_complete_and_parity_is_recorded(bundle, tiny_run):
    folder = bundle.path
    assert [name for name in BUNDLE_FILES if not (folder / name).is_file()] == []
    assert not list(folder.rglob("__pycache__"))  # loading it for the parity check leaves no bytecode
    assert len(list((folder / "sample").iterdir())) == 2
    parity = json.loads((folder / "parity.json").read_text())
    assert parity["passed"] and parity["labels_agree"] == parity["n_images"] >= 20
    assert parity["max_abs_probability_diff"] <= 1e-4
    assert parity["sources"]["run"] > 0 and parity["sources"]["generated"] > 0
    print(bundle.parity.summary())
    labels = json.loads((folder / "labels.json").read_text())
    assert labels["classes"] == ["crack", "ok", "scratch"] and labels["ok_classes"] == ["ok"]
    assert labels["runtime_outputs"] == "probabilities"
    prep = json.loads((folder / "preprocessing.json").read_text())
    assert prep["image_size"] == 128 and prep["channel_order"] == "RGB"
    assert set((folder / "requirements.txt").read_text().split()) == {"onnxruntime>=1.16", "numpy>=1.24",
                                                                        "pillow>=10.0"}
    assert not list(folder.parent.glob(".bundle.*"))  # no staging folder left behind
    assert bundle.images_per_second > 0 and bundle.export_seconds > 0


@pytest.mark.slow
def test_predict_py_runs_without_torch_and_matches_the_cli(bundle, tiny_run, tiny_data, tmp_path, capsys):
    images = sorted((tiny_data / "crack").iterdir())[:3] + sorted((tiny_data / "ok").iterdir())[:3]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    args = [str(p) for p in images] + [str(broken), "--json"]
    out = subprocess.run([sys.executable, "-c", NO_TORCH, *args], cwd=bundle.path, capture_output=True,
                         text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "INSPECTOR_THREADS": "2"})
    assert out.returncode == 0, out.stderr
    ours = _json_tail(out.stdout)
    assert main(["predict", str(tiny_run.run_dir), *args, "--ok-classes", "ok"]) == 0
    theirs = _json_tail(capsys.readouterr().out)
    assert [p["path"] for p in ours["predictions"]] == [p["path"] for p in theirs["predictions"]]
    assert ours["skipped"][0]["path"] == theirs["skipped"][0]["path"] == str(broken)
    for a, b in zip(ours["predictions"], theirs["predictions"]):
        assert a.keys() == b.keys()  # the OK classes stored at export give the verdict
        assert a["label"] == b["label"] and a["verdict"] == b["verdict"]
        assert max(abs(a["probabilities"][c] - b["probabilities"][c]) for c in a["probabilities"]) <= 1e-4


@pytest.mark.slow
def test_sample_expected_output_is_reproduced(bundle):
    out = subprocess.run([sys.executable, "-c", NO_TORCH, "sample/" + next(
        p.name for p in (bundle.path / "sample").iterdir() if p.suffix != ".json"), "--json"],
        cwd=bundle.path, capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    got = _json_tail(out.stdout)["predictions"][0]
    expected = json.loads((bundle.path / "sample" / "expected.json").read_text())["predictions"][0]
    assert got["path"] == expected["path"] and got["label"] == expected["label"]
    assert got["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-6)


@pytest.mark.slow
def test_export_cli_json_and_refuses_a_foreign_folder(tiny_run, tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["export", str(tiny_run.run_dir), "--out", str(foreign)]) == 2
    assert "not an exported bundle" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "keep me" and not list(tmp_path.glob(".mine.*"))


@pytest.mark.slow
def test_openvino_bundle(tiny_run, tmp_path):
    from inspector.deploy.bundle import export_bundle

    result = export_bundle(tiny_run.run_dir, tmp_path / "ov", "openvino", max_diff=1e-3)
    assert (result.path / "model.xml").is_file() and not (result.path / "model.onnx").exists()
    assert "openvino" in (result.path / "requirements.txt").read_text()
    assert result.parity.agree == result.parity.n_images
