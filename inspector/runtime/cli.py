"""The command line of a bundle's predict.py: `python predict.py IMAGE_OR_FOLDER... [--json] ...`.

    classifier: [--ok-classes ok,good] [--threshold 0.5]    anomaly model: [--target-frr 0.05]
    any model: [--max-megapixels N] (default: $INSPECTOR_MAX_MEGAPIXELS, else 80)

With --json the last stdout line is one JSON object shaped like `inspector predict RUN --json`
(see bundle.predict_paths); otherwise one line per image. Unreadable files are reported on stderr
as `skipped PATH: reason`. Exit status 0, or 2 with `error: ...` on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from .bundle import Bundle, predict_paths
from .errors import InspectorError
from .images import pixel_limit
from .rows import describe

_OPTIONS = ("ok_classes", "threshold", "target_frr")  # as Outputs.options names them


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Classify images, or score them for anomalies, with this "
                                     "exported model.")
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
    parser.add_argument("--ok-classes", default=None,
                        help="comma-separated classes that count as OK (default: those in labels.json)")
    parser.add_argument("--threshold", type=float, default=None, help="NG when P(defect) >= this")
    parser.add_argument("--target-frr", type=float, default=None,
                        help="anomaly models: reject at most this share of good parts (default: as trained)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-megapixels", default=None, metavar="N",
                        help="refuse images of more than N megapixels per image (default: "
                             "$INSPECTOR_MAX_MEGAPIXELS, else 80; raise it for line-scan images)")
    return parser


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None, folder: str | os.PathLike = ".") -> int:
    """Run predict.py's command line on the bundle in `folder`; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        with pixel_limit(args.max_megapixels):  # the same limit and variable as `inspector predict`
            return _run(args, folder)
    except InspectorError as exc:  # a bad --max-megapixels or INSPECTOR_MAX_MEGAPIXELS
        return _fail(str(exc))


def _run(args: argparse.Namespace, folder: str | os.PathLike) -> int:
    try:
        bundle = Bundle(folder, target_frr=args.target_frr)
    except InspectorError as exc:  # a target false-reject rate outside (0, 1), a folder that is no bundle
        return _fail(str(exc))
    given = {key for key in _OPTIONS if getattr(args, key) is not None}
    if given - bundle.outputs.options:
        return _fail(bundle.outputs.refusal)
    ok_classes = args.ok_classes.split(",") if args.ok_classes else None
    unknown = [c for c in ok_classes or [] if c not in bundle.classes]
    if unknown:
        return _fail(f"--ok-classes names unknown classes: {', '.join(unknown)}. "
                     f"The model knows: {', '.join(bundle.classes)}.")
    result = predict_paths(bundle, args.images, ok_classes, args.threshold, args.batch_size)
    for item in result["skipped"]:
        print(f"skipped {item['path']}: {item['reason']}", file=sys.stderr)
    if not result["predictions"]:
        reasons = "; ".join(f"{item['path']}: {item['reason']}" for item in result["skipped"][:3])
        return _fail(f"no readable image to predict ({reasons or 'no image given'}; paths are relative to "
                     f"{os.getcwd()}).")
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        for row in result["predictions"]:
            print(f"{row['path']}\t{describe(row)}")
    return 0
