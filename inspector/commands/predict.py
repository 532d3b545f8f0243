"""`inspector predict RUN IMAGE_OR_FOLDER...`: classify new images, or score them with an anomaly run
(the run's task applies the options and builds the result rows)."""
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
    # None: the task's own default (0.5), so that a run which takes no threshold can refuse one given.
    p.add_argument("--threshold", type=float, default=None, help="NG when P(defect) >= this (default: 0.5)")
    # None: this line's classifier, so that a run of another task can refuse a head given.
    p.add_argument("--head", default=None, choices=("target", "source"),
                   help="multi-task runs: 'source' predicts with the other line's classifier (default: target, "
                        "this line's)")
    p.add_argument("--classifier", default=None, metavar="RUN",
                   help="anomaly runs: a classification run that names the defect type of each NG part")
    p.add_argument("--target-frr", type=float, default=None,
                   help="anomaly runs: move the threshold to this false-reject rate (no retraining)")
    p.add_argument("--csv", default=None, help="also write the results to this CSV file")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model first: ~1 min once, then faster (for hundreds of images)")
    p.add_argument("--device", **common["device"])
    p.add_argument("--max-megapixels", **common["max_megapixels"])
    p.add_argument("--json", **common["as_json"])
    p.set_defaults(func=run)


def read_images(inputs: Sequence[str], bit_depth: int | None = None) -> tuple[list[Path], list, list[dict[str, str]]]:
    """(readable paths, their RGB arrays, skipped rows); an error when none is readable. 16-bit images
    are decoded with the run's camera `bit_depth`."""
    # The runtime's own file finder and decoder: the bundle's predict.py reads folders the same way.
    from ..runtime.bundle import collect_images
    from ..runtime.bundle import read_images as decode

    paths, skipped = collect_images(inputs)
    images, kept, unreadable = decode(paths, bit_depth)
    skipped += unreadable
    if not kept:
        raise InspectorError("No readable image to predict. " + "; ".join(f"{s['path']}: {s['reason']}" for s in skipped))
    return kept, images, skipped


def run(args: argparse.Namespace) -> None:
    from ..inference import Predictor, load_predictor
    from ..reports import save_csv
    from ..tasks.base import PredictOptions, bit_depth_of, create_task

    predictor = load_predictor(args.run_dir, device=args.device, compile=args.compile)
    task = create_task(predictor.task)
    options = PredictOptions(ok_classes=class_list(args.ok_classes) or (), threshold=args.threshold,
                             target_frr=args.target_frr, head=args.head,
                             classifier=Predictor.from_run(args.classifier, device=args.device)
                             if args.classifier else None)
    predictor = task.configure(predictor, options)  # refuses the options of other tasks in plain words
    kept, images, skipped = read_images(args.images, bit_depth_of(predictor))
    results = [{"path": str(path), **row} for path, row in zip(kept, task.result_rows(predictor, images, options))]
    # Warnings in plain and JSON mode alike: e.g. an anomaly run whose false-reject target is below
    # what its good images can guarantee (after --target-frr moved it).
    warnings = [w for w in (getattr(predictor, "frr_warning", None),) if w]
    for item in skipped:
        print(f"skipped {item['path']}: {item['reason']}", file=sys.stderr)
    for message in warnings:
        print(f"warning: {message}", file=sys.stderr)
    if args.csv:
        save_csv(args.csv, results)
    if args.json:
        emit_json({"run_dir": str(predictor.run_dir), **task.result_header(predictor), "predictions": results,
                   "skipped": skipped, "warnings": warnings})
    else:
        for row in results:
            print(f"{row['path']}\t{task.describe_row(row)}")
