"""`inspector export`: a self-contained bundle folder for the line, written atomically.

    <out>/
      model.onnx            uint8 resized RGB (batch, size, size, 3) -> probabilities (batch, classes);
                            anomaly runs: -> raw_score (batch,), patch_distances (batch, H', W')
      preprocessing.json    size, resize mode, interpolation, mean/std, channel order, padding colour
      labels.json           task, classes, runtime_outputs (how to read model.onnx's outputs), OK classes and
                            threshold (anomaly: the score scale, the target false-reject rate and the good
                            parts' calibration scores): the task's `bundle_labels`
      predict.py            python predict.py IMAGE... [--json], or `import predict` (onnxruntime, numpy,
                            pillow only): inspector/deploy/predict_entry.py, copied unchanged
      inspector_runtime/    the code predict.py runs: inspector/runtime/*.py, copied unchanged
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
from ..runtime.outputs import output_reader
from ..tasks.base import Task, create_task
from .onnx_export import create_exporter, load_run_predictor, task_of_run
from .parity import ParityReport, check_parity, probe_images, require_parity, run_images

FORMATS = ("onnx", "openvino")
RUNTIME_SOURCE = Path(__file__).resolve().parents[1] / "runtime"  # copied as <bundle>/inspector_runtime/
RUNTIME_FOLDER = "inspector_runtime"
PREDICT_ENTRY = Path(__file__).with_name("predict_entry.py")  # copied as <bundle>/predict.py
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


def copy_runtime(folder: Path) -> None:
    """predict.py and the runtime package beside the model, both copied byte for byte."""
    target = folder / RUNTIME_FOLDER
    target.mkdir()
    for module in sorted(RUNTIME_SOURCE.glob("*.py")):
        shutil.copyfile(module, target / module.name)
    shutil.copyfile(PREDICT_ENTRY, folder / "predict.py")


def _readme(run_id: str, labels: dict[str, Any], prep: dict[str, Any], details: dict[str, Any],
            parity: ParityReport) -> str:
    words = output_reader(labels).readme(details)  # the task's own words, from how its outputs are read
    return f"""# Defect Inspector model: {run_id}

```
pip install -r requirements.txt
python predict.py sample/{{image}} --json        # last line: {{"predictions": [...]}}
{words['usage']}
```

{words['what']}
- Input: any image file Pillow reads (16-bit grey images: {_bit_depth_words(prep)}); it is
  resized to {prep['image_size']} x {prep['image_size']} ({prep['resize_mode']}) by the training app's own code,
  then the model file does the rest ({words['inside']}).
- Every row has `label` (null when the model names no class), `verdict` (OK, NG or UNSURE; null for
  a classifier given no OK classes) and `reason`: a blank, saturated or flat frame (lens cap, lamp
  off, overexposed) is never a confident OK but UNSURE, and `reason` says why (null for a plain OK/NG).
- Use from Python, with this folder on sys.path:
  `import predict; bundle = predict.load_bundle(); rows = predict.predict(bundle, ["part.png"])`
  gives one dict per image (paths or RGB uint8 arrays), as `--json` does; {words['api']}.
  The code is in inspector_runtime/ (documented there); predict.py only loads it.
- Checked at export: {parity.summary()}. See parity.json; `sample/expected.json` is the
  expected output for the sample image.
- Needs Python 3.10+, onnxruntime, numpy and pillow (requirements.txt); no PyTorch.
  Threads: all cores by default; set INSPECTOR_THREADS to use fewer.
"""


def _bit_depth_words(prep: dict[str, Any]) -> str:
    bits = prep.get("bit_depth")
    if bits:
        return f"read as {bits}-bit camera data, value x 255 / {2 ** bits - 1}, as in training"
    return "each scaled by the bit depth it uses (the model was trained on 8-bit images)"


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


def _parity_images(run_dir: Path, extra: Sequence[str | os.PathLike], tiling: dict | None = None
                   ) -> tuple[list[tuple[str, bytes]], dict]:
    from ..runtime.bundle import collect_images  # folders as predict does: links followed, litter left out

    absent = [str(item) for item in extra if not Path(item).exists()]
    if absent:  # the user named them: never drop them without a word
        raise InspectorError(f"Parity images not found: {', '.join(absent[:3])}.")
    files, _ = collect_images(extra)
    own = run_images(run_dir)
    images = [(str(p), p.read_bytes()) for p in [*files, *own] if p.is_file()]
    probes = probe_images(tiling=tiling)
    return images + probes, {"given": len(files), "run": len(own), "generated": len(probes)}


def export_bundle(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, fmt: str = "onnx", *,
                  ok_classes: Sequence[str] = (), threshold: float = 0.5,
                  parity_images: Sequence[str | os.PathLike] = (), max_diff: float | None = None,
                  predictor: Any = None,
                  progress: Callable[[str], None] | None = None) -> ExportResult:
    """Export a run to a checked, self-contained bundle folder (see the module docstring).

    Anomaly runs keep the OK classes and threshold they were trained with (`ok_classes` must be empty:
    the task's `bundle_labels` refuses them). `max_diff`: the parity limit, by default the task's
    (`Task.parity`).

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
    create_exporter(task)  # a task that cannot export fails here, before anything is loaded
    hook = create_task(task)
    predictor = predictor or load_run_predictor(run_dir)
    # The task's fields of labels.json; its OK classes are checked here, before anything is written.
    task_labels = hook.bundle_labels(predictor, list(ok_classes), threshold)
    out = Path(out) if out is not None else default_out_dir(run_dir, fmt)
    _check_target(out)
    staging = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        with storage_errors(out.parent, "create the export folder in"):
            out.parent.mkdir(parents=True, exist_ok=True)
            staging.mkdir()
        result = _build(run_dir, staging, predictor, hook, task_labels, fmt, parity_images, max_diff, say)
        with storage_errors(out, "write the export to"):
            _swap_into_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return replace(result, path=out)


def _build(run_dir: Path, folder: Path, predictor: Any, hook: Task, task_labels: dict[str, Any], fmt: str,
           parity_images: Sequence[str | os.PathLike], max_diff: float | None,
           say: Callable[[str], None]) -> ExportResult:
    task = hook.name
    say(f"converting the {task} model to ONNX")
    graph = hook.export_graph(predictor, folder / "model.onnx")
    prep = predictor.preprocessing
    preprocessing = {**prep.resize_settings(), "channel_order": "RGB",
                     "model_input": "uint8 (batch, size, size, 3), resized; normalisation is inside model.onnx",
                     "resize": "inspector_runtime/resize.py: OpenCV cv2.resize semantics (area to shrink when "
                               "antialias, else interpolation), the training app's own resize"}
    labels = {"task": task, "classes": predictor.classes, "output": graph.output_names[0],
              "outputs": graph.output_names, **task_labels}
    _write_json(folder / "preprocessing.json", preprocessing)
    _write_json(folder / "labels.json", labels)
    copy_runtime(folder)
    (folder / "requirements.txt").write_text(REQUIREMENTS[fmt], encoding="utf-8")
    if fmt == "openvino":  # OpenVINO's own converter; the bundle then carries model.xml/.bin only
        import openvino as ov

        say("converting to OpenVINO IR")
        # save_model halves the weights to fp16 unless told not to: that alone moved probabilities by 2e-2.
        ov.save_model(ov.convert_model(str(folder / "model.onnx")), str(folder / "model.xml"), compress_to_fp16=False)
        (folder / "model.onnx").unlink()

    images, sources = _parity_images(run_dir, parity_images, getattr(predictor.preprocessing, "tiling", None))
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
    (folder / "README.md").write_text(_readme(Path(run_dir).name, labels, preprocessing, graph.details, parity)
                                      .replace("{image}", sample.name), encoding="utf-8")
    _write_json(folder / "bundle.json", _manifest(run_dir, fmt, graph, first, rate))
    for cache in (folder / "__pycache__", folder / RUNTIME_FOLDER / "__pycache__"):  # from loading it above
        shutil.rmtree(cache, ignore_errors=True)
    return ExportResult(folder, fmt, parity, graph.seconds, rate, first)


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
