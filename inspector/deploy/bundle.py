"""`inspector export`: a self-contained bundle folder for the line, written atomically.

    <out>/
      model.onnx            uint8 resized RGB (batch, size, size, 3) -> probabilities (batch, classes);
                            anomaly runs: -> raw_score (batch,), patch_distances (batch, H', W')
      preprocessing.json    size, resize mode, interpolation, mean/std, channel order, padding colour
      labels.json           task, classes, OK classes and threshold (anomaly: the score scale, the target
                            false-reject rate and the good parts' calibration scores)
      predict.py            python predict.py IMAGE... [--json]  (onnxruntime, numpy, pillow only)
      requirements.txt      README.md
      sample/               one image and expected.json, its expected output
      parity.json           the export-time comparison with the PyTorch predictor
      bundle.json           where it came from: run, versions, export time, speed

The bundle is built in a hidden folder beside `out` and renamed into place only after the parity
check passed, so `out` is always either the previous bundle or a complete, checked new one.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .._io import storage_errors
from ..errors import InspectorError
from .onnx_export import create_exporter, load_run_predictor, task_of_run
from .parity import ParityReport, check_parity, probe_images, require_parity, run_images

FORMATS = ("onnx", "openvino")
TEMPLATE = Path(__file__).with_name("predict_template.py")
_PACKAGE = Path(__file__).resolve().parents[1]
# (marker in the template, inspector module copied there, its one inspector import -> a stand-in)
INLINED = [("# >>> IMAGE LOADER (inlined at export) <<<", _PACKAGE / "data" / "images.py",
            "from inspector.errors import ImageLoadError",
            'class ImageLoadError(Exception):\n    """An image could not be read; the message says why."""'),
           ("# >>> SCORE CALIBRATION (inlined at export) <<<", _PACKAGE / "tasks" / "anomaly" / "calibration.py",
            "from ...errors import InspectorError",
            'class InspectorError(Exception):\n    """A plain error for the user (a bad setting)."""')]
REQUIREMENTS = {"onnx": "onnxruntime>=1.16\nnumpy>=1.24\npillow>=10.0\n",
                "openvino": "openvino>=2024.0\nnumpy>=1.24\npillow>=10.0\n"}
SPEED_BATCH = 32


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    parity: ParityReport
    export_seconds: float
    images_per_second: float  # model.onnx alone, batch SPEED_BATCH, all cores of this computer
    first_call_seconds: float  # loading the session + the first image

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "parity": self.parity.to_dict(),
                "export_seconds": round(self.export_seconds, 2), "images_per_second": self.images_per_second,
                "first_call_seconds": round(self.first_call_seconds, 3)}


def default_out_dir(run_dir: str | os.PathLike, fmt: str = "onnx") -> Path:
    return Path(run_dir) / f"export-{fmt}"


def render_predict_script() -> str:
    """predict_template.py with inspector's image loader and the anomaly score calibration inlined
    (one file, no inspector import)."""
    source = TEMPLATE.read_text(encoding="utf-8")
    for marker, module, their_import, stand_in in INLINED:
        code = module.read_text(encoding="utf-8").replace("from __future__ import annotations\n", "")
        if marker not in source or their_import not in code:
            raise RuntimeError(f"predict_template.py or {module.name} changed shape: update bundle.INLINED")
        code = code.replace(their_import, stand_in)
        name = module.relative_to(_PACKAGE.parent).as_posix()
        source = source.replace(marker, f"# ---- a copy of {name} ----\n{code.strip()}\n# ---- end of the copy ----\n")
    return source


def _readme(run_id: str, labels: dict[str, Any], prep: dict[str, Any], views: int, parity: ParityReport) -> str:
    if labels["task"] == "anomaly":
        usage = "python predict.py /path/to/images --target-frr 0.01  # another false-reject target, no re-export"
        what = (f"- Anomaly detection: learned from good parts ({', '.join(labels['ok_classes'])}) only. `score` is "
                f"0..1, exactly 0.5 at the threshold; `verdict` is NG above it. The threshold keeps the false-reject "
                f"rate at {labels['target_frr']:.1%} (target set at training; `--target-frr` moves it).")
        rest = "the patch features and their distances to the good parts' memory bank"
        api = "b.score([rgb_uint8_array])  # raw scores, patch distance maps"
    else:
        usage = "python predict.py /path/to/images --ok-classes ok   # adds an OK/NG verdict"
        what = f"- Classes: {', '.join(labels['classes'])}."
        rest = f"{views} symmetric view(s) averaged inside the model"
        api = "b.predict_proba([rgb_uint8_array])"
    return f"""# Defect Inspector model: {run_id}

```
pip install -r requirements.txt
python predict.py sample/{{image}} --json        # last line: {{"predictions": [...]}}
{usage}
```

{what}
- Input: any image file Pillow reads (16-bit TIFFs are scaled by the bit depth they use); it is
  resized to {prep['image_size']} x {prep['image_size']} ({prep['resize_mode']}) in predict.py, exactly as in
  the training app, then the model file does the rest ({rest}).
- Use from Python: `import predict; b = predict.Bundle(); {api}`.
- Checked at export: {parity.summary()}. See parity.json; `sample/expected.json` is the
  expected output for the sample image.
- Needs Python 3.10+, onnxruntime, numpy and pillow (requirements.txt); no PyTorch.
  Threads: all cores by default; set INSPECTOR_THREADS to use fewer.
"""


def _measure_speed(folder: Path, size: int) -> tuple[float, float]:
    """(first call seconds: loading the model + one image, images/s at batch SPEED_BATCH)."""
    from .parity import load_bundle_module

    rng = np.random.default_rng(0)
    module = load_bundle_module(folder)
    start = time.perf_counter()
    bundle = module.Bundle(folder)
    bundle.run(rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8))
    first = time.perf_counter() - start
    batch = rng.integers(0, 256, (SPEED_BATCH, size, size, 3), dtype=np.uint8)
    bundle.run(batch)  # warm-up at this batch size
    start = time.perf_counter()
    bundle.run(batch)
    return first, round(SPEED_BATCH / (time.perf_counter() - start), 1)


def _parity_images(run_dir: Path, extra: Sequence[str | os.PathLike]) -> tuple[list[tuple[str, bytes]], dict]:
    from ..data import is_image_path

    files: list[Path] = []
    for item in extra:
        path = Path(item)
        files += sorted(p for p in path.rglob("*") if p.is_file() and is_image_path(p)) if path.is_dir() else [path]
    own = run_images(run_dir)
    images = [(str(p), p.read_bytes()) for p in [*files, *own] if p.is_file()]
    probes = probe_images()
    return images + probes, {"given": len(files), "run": len(own), "generated": len(probes)}


def export_bundle(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, fmt: str = "onnx", *,
                  ok_classes: Sequence[str] = (), threshold: float = 0.5,
                  parity_images: Sequence[str | os.PathLike] = (), max_diff: float | None = None,
                  predictor: Any = None,
                  progress: Callable[[str], None] | None = None) -> ExportResult:
    """Export a run to a checked, self-contained bundle folder (see the module docstring).

    Anomaly runs keep the OK classes and threshold they were trained with (`ok_classes` must be empty).
    `max_diff`: the parity limit, by default the task's (parity.COMPARISONS).

    Raises:
        InspectorError: unknown format or OK class, a model ONNX cannot express, a failed parity
            check (nothing is written then), or a folder that cannot be written.
    """
    say = progress or (lambda message: None)
    if fmt not in FORMATS:
        raise InspectorError(f"Unknown export format '{fmt}'; use one of {', '.join(FORMATS)}.")
    if fmt == "openvino":
        try:
            import openvino  # noqa: F401
        except ImportError:
            raise InspectorError("OpenVINO export needs the openvino package: pip install openvino "
                                 "(or use --format onnx).") from None
    run_dir = Path(run_dir)
    task = task_of_run(run_dir)
    create_exporter(task)  # an unknown task fails here, before anything is loaded
    predictor = predictor or load_run_predictor(run_dir)
    if task == "anomaly" and ok_classes:
        raise InspectorError("An anomaly run keeps the good classes it was trained with "
                             f"({', '.join(predictor.ok_classes)}); leave out the OK classes.")
    unknown = [c for c in ok_classes if c not in predictor.classes]
    if unknown:
        raise InspectorError(f"OK classes not in the model: {', '.join(unknown)}. "
                             f"The model knows: {', '.join(predictor.classes)}.")
    out = Path(out) if out is not None else default_out_dir(run_dir, fmt)
    _check_target(out)
    staging = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        with storage_errors(out.parent, "create the export folder in"):
            out.parent.mkdir(parents=True, exist_ok=True)
            staging.mkdir()
        result = _build(run_dir, staging, predictor, task, fmt, list(ok_classes), threshold, parity_images,
                        max_diff, say)
        with storage_errors(out, "write the export to"):
            _swap_into_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return replace(result, path=out)


def _build(run_dir: Path, folder: Path, predictor: Any, task: str, fmt: str, ok_classes: list[str],
           threshold: float, parity_images: Sequence[str | os.PathLike], max_diff: float | None,
           say: Callable[[str], None]) -> ExportResult:
    say(f"converting the {task} model to ONNX")
    graph = create_exporter(task)(predictor, folder / "model.onnx")
    prep = predictor.preprocessing
    preprocessing = {**prep.to_dict(), "pad_value": list(prep.pad_value), "channel_order": "RGB",
                     "model_input": "uint8 (batch, size, size, 3), resized; normalisation is inside model.onnx",
                     "resize": "OpenCV cv2.resize semantics (area to shrink when antialias, else interpolation)"}
    labels = {"task": task, "classes": predictor.classes, "ok_classes": ok_classes, "threshold": threshold,
              "output": graph.output_names[0]}
    if task == "anomaly":
        labels.update(_anomaly_labels(predictor), outputs=graph.output_names)
    _write_json(folder / "preprocessing.json", preprocessing)
    _write_json(folder / "labels.json", labels)
    (folder / "predict.py").write_text(render_predict_script(), encoding="utf-8")
    (folder / "requirements.txt").write_text(REQUIREMENTS[fmt], encoding="utf-8")
    if fmt == "openvino":  # OpenVINO's own converter; the bundle then carries model.xml/.bin only
        import openvino as ov

        say("converting to OpenVINO IR")
        # save_model halves the weights to fp16 unless told not to: that alone moved probabilities by 2e-2.
        ov.save_model(ov.convert_model(str(folder / "model.onnx")), str(folder / "model.xml"), compress_to_fp16=False)
        (folder / "model.onnx").unlink()

    images, sources = _parity_images(run_dir, parity_images)
    say(f"checking parity with the PyTorch model on {len(images)} images")
    parity = replace(check_parity(folder, predictor, images, max_diff, task), sources=sources)
    _write_json(folder / "parity.json", parity.to_dict())
    require_parity(parity)

    sample_name, sample_bytes = images[0]
    sample = folder / "sample" / ("sample" + Path(sample_name).suffix.lower())
    sample.parent.mkdir()
    sample.write_bytes(sample_bytes)
    module_result = _predict_sample(folder, sample)
    _write_json(folder / "sample" / "expected.json", module_result)

    say("measuring speed")
    first, rate = _measure_speed(folder, prep.image_size)
    (folder / "README.md").write_text(_readme(Path(run_dir).name, labels, preprocessing,
                                              graph.details.get("views", 1), parity)
                                      .replace("{image}", sample.name), encoding="utf-8")
    _write_json(folder / "bundle.json", _manifest(run_dir, fmt, graph, first, rate))
    return ExportResult(folder, fmt, parity, graph.seconds, rate, first)


def _anomaly_labels(predictor: Any) -> dict[str, Any]:
    """What predict.py needs for an anomaly run's score and verdict: the threshold and scale at the
    trained false-reject target, and the good parts' out-of-sample raw scores to move it."""
    return {"ok_classes": list(predictor.ok_classes), "threshold": predictor.threshold,
            "score_scale": predictor.scale.to_dict(), "target_frr": predictor.target_frr,
            "calibration_scores": [float(v) for v in predictor.model.calibration_scores_],
            "score": "0.5 * (1 + tanh((raw_score - threshold) / (2 * scale))); verdict NG when raw_score > threshold"}


def _predict_sample(folder: Path, sample: Path) -> dict[str, Any]:
    from .parity import load_bundle_module

    module = load_bundle_module(folder)
    result = module.predict_paths(module.Bundle(folder), [sample])
    for row in result["predictions"]:
        row["path"] = f"sample/{sample.name}"
    result["bundle"] = "."
    return result


def _manifest(run_dir: Path, fmt: str, graph: Any, first: float, rate: float) -> dict[str, Any]:
    import onnx
    import onnxruntime
    import torch

    from .. import __version__

    return {"format": fmt, "run_id": Path(run_dir).name, "source_run": str(Path(run_dir).resolve()),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "inspector_version": __version__,
            "torch_version": torch.__version__, "onnx_version": onnx.__version__,
            "onnxruntime_version": onnxruntime.__version__, "graph": graph.details,
            "export_seconds": round(graph.seconds, 2), "first_call_seconds": round(first, 3),
            "images_per_second": rate, "speed_settings": f"batch {SPEED_BATCH}, {os.cpu_count()} cores, "
            f"{platform.processor() or platform.machine()}, measured once at export (machine load included)"}


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _check_target(out: Path) -> None:
    """`out` may be absent, empty or an older bundle; anything else is someone's folder."""
    if out.exists() and not out.is_dir():
        raise InspectorError(f"{out} is a file; choose a folder for the export.")
    if out.is_dir() and not (out / "bundle.json").is_file() and any(out.iterdir()):
        raise InspectorError(f"{out} exists and is not an exported bundle; choose another --out folder.")


def _swap_into_place(staging: Path, out: Path) -> None:
    """Rename the finished folder to `out`; an older bundle there is replaced, never merged."""
    _check_target(out)
    if not out.exists() or not any(out.iterdir()):
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)
