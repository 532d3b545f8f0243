"""`inspector export RUN`: a self-contained, parity-checked bundle for the line (see inspector.deploy)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli import class_list, emit_json


def add_parser(sub: argparse._SubParsersAction, common: dict) -> None:
    p = sub.add_parser("export", help="export a run for the line: model.onnx + predict.py, checked against the app")
    p.add_argument("run_dir", help="a run folder (see 'inspector runs')")
    p.add_argument("--format", default="onnx", choices=["onnx", "openvino"], help="(default: %(default)s)")
    p.add_argument("--out", default=None, type=Path, help="bundle folder (default: RUN/export-FORMAT); "
                   "an older bundle there is replaced")
    p.add_argument("--ok-classes", default=None,
                   help="classifiers: comma-separated classes that count as OK: predict.py then adds an OK/NG verdict "
                        "(anomaly runs keep their own good classes and threshold)")
    p.add_argument("--threshold", type=float, default=0.5, help="NG when P(defect) >= this (default: 0.5)")
    p.add_argument("--parity-images", nargs="*", default=[], metavar="IMAGE_OR_FOLDER",
                   help="more images for the parity check (the run's own images and generated probes are "
                        "always used)")
    p.add_argument("--max-diff", type=float, default=None,
                   help="largest difference the parity check accepts: the logits' relative to the image's "
                        "largest logit for classifiers, the relative raw score for anomaly runs (default: 1e-4)")
    p.add_argument("--json", **common["as_json"])
    p.add_argument("--max-megapixels", **common["max_megapixels"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from ..deploy.bundle import export_bundle

    ok_classes = list(class_list(args.ok_classes) or ())
    result = export_bundle(args.run_dir, args.out, args.format, ok_classes=ok_classes, threshold=args.threshold,
                           parity_images=args.parity_images, max_diff=args.max_diff,
                           progress=lambda message: print(message, file=sys.stderr, flush=True))
    print(result.parity.summary(), file=sys.stderr)
    print(f"Bundle written to {result.path} (export {result.export_seconds:.1f} s, "
          f"{result.images_per_second:.1f} images/s at batch 32 here)", file=sys.stderr)
    if args.json:
        emit_json(result.to_dict())
