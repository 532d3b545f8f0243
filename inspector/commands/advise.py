"""`inspector advise DATA [--at N]`: do I need more images, and of which class? (issue 15)

Measures the learning curve of DATA on the linear probe's frozen features and extrapolates it to
N images per class (default: twice the smallest class). With --json the last stdout line holds
current_accuracy, predicted_accuracy, predicted_interval and per_class (recall now, predicted
recall, suggested extra images), plus the sentences and the curve for plotting.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..cli import emit_json, print_table


def add_parser(sub: argparse._SubParsersAction, common: dict) -> None:
    p = sub.add_parser("advise", help="learning curve of your data: would more images help, and of which class?")
    p.add_argument("data", help="folder with one sub-folder per class, or a .zip of such folders")
    p.add_argument("--at", type=int, default=None,
                   help="predict the accuracy at this many images per class (default: twice the smallest class)")
    p.add_argument("--backbone", default="tf_efficientnet_lite0", help="timm model name (default: %(default)s)")
    p.add_argument("--image-size", type=int, default=None, help="input size in pixels (default: the backbone's)")
    p.add_argument("--orientation-matters", action="store_true",
                   help="do not average the features over flips and quarter turns (as in training)")
    p.add_argument("--repeats", type=int, default=4, help="cross-validation repeats (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    # The default folder is resolved when the command runs: engine.features, which knows it,
    # imports torch, and building the parser must stay quick for every command.
    p.add_argument("--feature-cache", type=Path, default=None,
                   help="folder that keeps frozen features between commands (default: "
                        "$INSPECTOR_CACHE_DIR/features, else ~/.cache/inspector/features)")
    p.add_argument("--no-feature-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--device", **common["device"])
    p.add_argument("--max-megapixels", **common["max_megapixels"])
    p.add_argument("--json", **common["as_json"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from ..data import discover_dataset
    from ..engine.features import default_feature_cache_dir
    from ..evidence.features import frozen_features
    from ..evidence.learning_curve import advise_from_features

    started = time.perf_counter()
    dataset = discover_dataset(args.data, extract_dir=getattr(args, "scratch", None))
    for note in dataset.notes:  # a split layout: the curve is of train/
        print(f"note: {note}", file=sys.stderr)
    for item in dataset.skipped:
        print(f"skipped {item.path}: {item.reason}", file=sys.stderr)
    print(f"Frozen features of {len(dataset)} images ({args.backbone})...", file=sys.stderr)
    cache_dir = None if args.no_feature_cache else args.feature_cache or default_feature_cache_dir()
    feats = frozen_features(dataset, args.backbone, args.image_size, symmetric=not args.orientation_matters,
                            device=args.device, cache_dir=cache_dir)
    advice = advise_from_features(feats.features, feats.labels, feats.classes, args.at, seed=args.seed,
                                  repeats=args.repeats)
    if args.json:
        emit_json({**advice.to_dict(), "data": str(args.data), "backbone": args.backbone,
                   "image_size": feats.image_size, "n_images": len(dataset),
                   "feature_seconds": round(feats.seconds, 2), "seconds": round(time.perf_counter() - started, 2)})
        return
    print("\n".join(advice.sentences))
    rows = [[c.name, str(c.images), f"{c.recall:.2f}",
             "-" if c.predicted_recall is None else f"{c.predicted_recall:.2f}", str(c.suggested_extra_images),
             c.status] for c in advice.per_class]
    print()
    print_table(rows, ["class", "images", "recall now", f"recall at {advice.at}", "add", "curve"])
