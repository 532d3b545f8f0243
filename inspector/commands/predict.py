"""`inspector predict RUN IMAGE_OR_FOLDER...`: classify new images, or score them with an anomaly run."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from ..cli import class_list, emit_json
from ..errors import InspectorError


def add_parser(sub: argparse._SubParsersAction, common: dict) -> None:
    p = sub.add_parser("predict", help="classify new images, or score them with an anomaly run")
    p.add_argument("run_dir")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER")
    p.add_argument("--ok-classes", default=None, help="comma-separated classes that count as OK: adds an OK/NG verdict")
    p.add_argument("--threshold", type=float, default=0.5, help="NG when P(defect) >= this (default: 0.5)")
    p.add_argument("--classifier", default=None, metavar="RUN",
                   help="anomaly runs: a classification run that names the defect type of each NG part")
    p.add_argument("--target-frr", type=float, default=None,
                   help="anomaly runs: move the threshold to this false-reject rate (no retraining)")
    p.add_argument("--csv", default=None, help="also write the results to this CSV file")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model first: ~1 min once, then faster (for hundreds of images)")
    p.add_argument("--device", **common["device"])
    p.add_argument("--json", **common["as_json"])
    p.set_defaults(func=run)


def collect_images(inputs: Sequence[str]) -> tuple[list[Path], list[dict[str, str]]]:
    """The image files named or found under the folders named; the missing ones as skipped rows."""
    from ..data import is_image_path
    from ..data.types import is_ignored_name

    paths, skipped = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths += sorted(p for p in path.rglob("*") if p.is_file() and is_image_path(p)
                            and not any(is_ignored_name(part) for part in p.relative_to(path).parts))
        elif path.is_file():
            paths.append(path)
        else:
            skipped.append({"path": item, "reason": "file not found"})
    return paths, skipped


def read_images(inputs: Sequence[str]) -> tuple[list[Path], list, list[dict[str, str]]]:
    """(readable paths, their RGB arrays, skipped rows); an error when none is readable."""
    from ..data import load_image, to_rgb_array
    from ..errors import ImageLoadError

    paths, skipped = collect_images(inputs)
    images, kept = [], []
    for path in paths:
        try:
            images.append(to_rgb_array(load_image(path)))
            kept.append(path)
        except ImageLoadError as exc:
            skipped.append({"path": str(path), "reason": str(exc)})
    if not kept:
        raise InspectorError("No readable image to predict. " + "; ".join(f"{s['path']}: {s['reason']}" for s in skipped))
    return kept, images, skipped


def run(args: argparse.Namespace) -> None:
    from ..inference import Predictor, load_predictor
    from ..reports import save_csv

    predictor = load_predictor(args.run_dir, device=args.device, compile=args.compile)
    kept, images, skipped = read_images(args.images)
    if predictor.task == "anomaly":
        if args.target_frr is not None:
            predictor = predictor.with_target_frr(args.target_frr)
        classifier = Predictor.from_run(args.classifier, device=args.device) if args.classifier else None
        results = _predict_anomaly(predictor, classifier, kept, images)
        extra = {"task": "anomaly", "threshold": predictor.threshold, "target_frr": predictor.target_frr}
    else:
        if args.classifier or args.target_frr is not None:
            raise InspectorError("--classifier and --target-frr go with an anomaly run; this run is a classifier.")
        results = _predict_classes(predictor, kept, images, args)
        extra = {"task": "classification", "classes": predictor.classes}
    for item in skipped:
        print(f"skipped {item['path']}: {item['reason']}", file=sys.stderr)
    if args.csv:
        save_csv(args.csv, results)
    if args.json:
        emit_json({"run_dir": str(predictor.run_dir), **extra, "predictions": results, "skipped": skipped})
    else:
        for row in results:
            if "score" in row:
                from ..gate import describe

                print(f"{row['path']}\t{describe(row)}")
            else:
                extra_text = f"  {row['verdict']}" if "verdict" in row else ""
                print(f"{row['path']}\t{row['label']}\t{row['confidence']:.3f}{extra_text}")


def _predict_anomaly(predictor, classifier, paths: list[Path], images: list) -> list[dict]:
    from ..gate import gate_row

    types = classifier.predict_batch(images) if classifier is not None else [None] * len(images)
    return [{"path": str(path), **gate_row(found.to_dict(), kind)}
            for path, found, kind in zip(paths, predictor.predict_batch(images), types)]


def _predict_classes(predictor, paths: list[Path], images: list, args) -> list[dict]:
    from ..inference import verdict

    ok_classes = list(class_list(args.ok_classes) or ())
    unknown = [c for c in ok_classes if c not in predictor.classes]
    if unknown:
        raise InspectorError(f"--ok-classes names unknown classes: {', '.join(unknown)}. "
                             f"The model knows: {', '.join(predictor.classes)}.")
    results = []
    for path, pred in zip(paths, predictor.predict_batch(images)):
        row = {"path": str(path), **pred.to_dict()}
        if ok_classes:
            v = verdict(pred, ok_classes, args.threshold)
            row.update(verdict=v.label, defect_probability=v.defect_probability)
        results.append(row)
    return results
