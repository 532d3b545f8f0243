"""`inspector train DATA`: train a model on a folder of class sub-folders or a .zip (`--nproc N`: under torchrun)."""
from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Iterator, Sequence

from ..cli import class_list, emit_json
from ..errors import InspectorError


class _TaskNames:
    """--task's choices, read from the task registry when argparse first needs them: listing the
    tasks imports them (and torch), which `inspector runs` and `inspector --help` should not pay."""

    def __iter__(self) -> Iterator[str]:
        from ..tasks.base import list_tasks

        return iter(list_tasks())

    def __contains__(self, name: object) -> bool:
        return name in list(self)


def add_parser(sub: argparse._SubParsersAction, common: dict) -> None:
    from ..tasks.base import DEFAULT_TASK

    p = sub.add_parser("train", help="train a model on a folder of class sub-folders or a .zip")
    p.add_argument("data", nargs="?", default=None,
                   help="folder with one sub-folder per class, or a .zip of such folders (may be left out with "
                        "--source: then no labelled image of this line is used)")
    p.add_argument("--source", default=None, metavar="FOLDER",
                   help="another line's labelled dataset (class folders, folder or .zip) to carry over to this "
                        "line: domain adaptation (strategy auto measures every transfer method against this "
                        "line's own images)")
    p.add_argument("--unlabeled", default=None, metavar="FOLDER",
                   help="unlabelled images from this line (folder or .zip, any layout: folder names are not read "
                        "as labels), used with --source")
    task = p.add_argument("--task", default=DEFAULT_TASK,
                          help="classification: learn each defect class; anomaly: learn good parts only and flag "
                               "anything unusual (default: %(default)s)")
    task.choices = _TaskNames()  # set after add_argument, which would list them at once
    p.add_argument("--ok-classes", default=None,
                   help="anomaly: comma-separated classes of good parts (default: the class named good, ok, "
                        "normal, nominal, free or pass, or the only class)")
    p.add_argument("--target-frr", type=float, default=0.05,
                   help="anomaly: reject at most this share of good parts (default: %(default)s)")
    p.add_argument("--symmetric-bank", action="store_true",
                   help="anomaly: also remember the 8 flips and quarter turns of every good image (parts that "
                        "lie any way round; 8x the fitting work)")
    p.add_argument("--backbone", default="tf_efficientnet_lite0", help="timm model name (default: %(default)s)")
    p.add_argument("--strategy", default="auto", help="auto, linear_probe, fine_tune, ... (default: auto)")
    p.add_argument("--epochs", type=int, default=None,
                   help="training epochs for the fine-tuning strategies (the linear probe fits in one step)")
    p.add_argument("--image-size", type=int, default=None, help="input size in pixels (default: the backbone's)")
    p.add_argument("--resize", default="stretch", choices=["stretch", "letterbox", "crop"],
                   help="how non-square images fit the square input: stretch (default, measured best), "
                        "letterbox (keeps the aspect ratio, pads) or crop (keeps it, cuts the edges)")
    p.add_argument("--defect-size", type=float, default=None, metavar="PIXELS",
                   help="the smallest defect to find, in camera pixels: the images are tiled at the scale where "
                        "such a defect spans a feature cell, aspect ratio kept (anomaly runs: one bank of tile "
                        "patches; classifiers: linear_probe on the tiles' features, averaged per image; default: "
                        "whole images near the input size, large ones tiled at their own resolution)")
    p.add_argument("--roi-mask", default=None, metavar="IMAGE",
                   help="a black and white image: only its white part is inspected (stretched over every photo)")
    p.add_argument("--ignore-mask", default=None, metavar="IMAGE",
                   help="a black and white image: its white part is never scored (a serial number, a fixture)")
    p.add_argument("--regions", default=None, metavar="JSON",
                   help="a regions.json (rectangles and polygons to inspect and to ignore, as fractions of the "
                        "image; the app draws one)")
    p.add_argument("--bit-depth", type=int, default=None, choices=(8, 10, 12, 14, 16), metavar="BITS",
                   help="the camera's bit depth for 16-bit grey images (10, 12, 14 or 16): one brightness mapping "
                        "for all images, stored with the model (default: inferred once from the whole dataset)")
    p.add_argument("--augment", default="industrial", help="none, light or industrial (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-folds", type=int, default=5,
                   help="cross-validation folds at most, used when there are too few images for a hold-out "
                        "split (default: %(default)s)")
    p.add_argument("--orientation-matters", action="store_true",
                   help="the part's orientation is meaningful (e.g. upside down is a defect): do not average "
                        "the frozen features over flips and quarter turns")
    p.add_argument("--no-cv", action="store_true",
                   help="with too few images for a hold-out split, skip the cross-validated accuracy estimate "
                        "(one fit instead of k+1: faster, but no accuracy figure)")
    p.add_argument("--nproc", type=int, default=1,
                   help="train one model over this many processes on this machine (data-parallel, via "
                        "torchrun: one per GPU, or CPU processes); for several machines run torchrun "
                        "yourself (README: Scaling out) (default: %(default)s)")
    p.add_argument("--weights", default=None, help="local weights file (.safetensors or .pth) for the backbone")
    p.add_argument("--name", default=None, help="a display name for the run")
    p.add_argument("--runs-dir", **common["runs_dir"])
    p.add_argument("--device", **common["device"])
    p.add_argument("--max-megapixels", **common["max_megapixels"])
    p.add_argument("--json", **common["as_json"])
    p.set_defaults(func=run)


def without_option(argv: Sequence[str], option: str) -> list[str]:
    """argv without `option VALUE` / `option=VALUE`."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == option:
            skip = True
        elif not item.startswith(option + "="):
            out.append(item)
    return out


def _launch_ranks(args: argparse.Namespace) -> int:
    """`train --nproc N`: the same command under torchrun, N processes on this machine."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
               "-m", "inspector", *without_option(args.argv, "--nproc")]
    print(f"starting {args.nproc} training processes: {' '.join(command[1:])}", file=sys.stderr)
    return subprocess.run(command, check=False).returncode


def _regions(args: argparse.Namespace) -> dict | None:
    """The regions of --regions / --roi-mask / --ignore-mask as TrainConfig.regions (None: none given)."""
    from ..runtime.regions import Regions

    if not (args.regions or args.roi_mask or args.ignore_mask):
        return None
    return Regions.read(args.regions, roi_mask=args.roi_mask, ignore_mask=args.ignore_mask).to_dict()


def run(args: argparse.Namespace) -> int | None:
    from ..config import TrainConfig
    from ..data import discover_dataset, discover_images, validate_dataset
    from ..engine import ConsoleProgress
    from ..engine.distributed import ranks_from_environment
    from ..training import train

    ranks = ranks_from_environment()
    if args.nproc < 1:
        raise InspectorError(f"--nproc must be at least 1, got {args.nproc}.")
    if args.nproc > 1 and not ranks.active:
        return _launch_ranks(args)

    config = TrainConfig(task=args.task, ok_classes=class_list(args.ok_classes), target_frr=args.target_frr,
                         symmetric_bank=args.symmetric_bank,
                         backbone=args.backbone, strategy=args.strategy, epochs=args.epochs,
                         image_size=args.image_size, augment=args.augment, seed=args.seed, device=args.device,
                         batch_size=args.batch_size, weights_path=args.weights, name=args.name,
                         resize_mode=args.resize, max_folds=args.max_folds, cross_validate=not args.no_cv,
                         any_orientation=not args.orientation_matters, bit_depth=args.bit_depth,
                         defect_size=args.defect_size, regions=_regions(args))
    if args.data is None and args.source is None:
        raise InspectorError("Give the dataset folder (or .zip) to train on, or another line's dataset with --source.")
    if args.unlabeled is not None and args.source is None:
        raise InspectorError("--unlabeled goes with --source: unlabelled images from this line adapt another "
                             "line's model to it.")
    dataset = discover_dataset(args.data, extract_dir=args.scratch) if args.data is not None else None
    source = discover_dataset(args.source, extract_dir=args.scratch) if args.source is not None else None
    unlabeled = discover_images(args.unlabeled, extract_dir=args.scratch) if args.unlabeled is not None else None
    if source is not None:
        config = config.replace(source=args.source, unlabeled=args.unlabeled)
    data_warnings: list[str] = []
    if ranks.is_main:  # under torchrun the other ranks train quietly: one report, one JSON line
        for given in (d for d in (dataset, source, unlabeled) if d is not None):
            for note in given.notes:  # a split layout: which folder is trained on, what the others are for
                print(f"note: {note}", file=sys.stderr)
            for item in given.skipped:
                print(f"skipped {item.path}: {item.reason}", file=sys.stderr)
        if dataset is not None:  # empty class, copies
            data_warnings = [finding.message for finding in validate_dataset(dataset).warnings]
        if dataset is not None and source is not None:
            foreign = [c for c in source.classes if c not in dataset.classes]
            if foreign:
                data_warnings.append(f"the other line's classes {', '.join(foreign)} are not among this line's "
                                     f"({', '.join(dataset.classes)}): their images are left out")
        for message in data_warnings:
            print(f"warning: {message}", file=sys.stderr)
    result = train(dataset, config, source=source, unlabeled=unlabeled, runs_dir=args.runs_dir,
                   callbacks=[ConsoleProgress()])
    if not ranks.is_main:
        return None
    print(f"Run saved to {result.run_dir}", file=sys.stderr)
    if result.summary.metrics.get("scale_reason"):
        print(f"Inputs: {result.summary.metrics['scale_reason']}", file=sys.stderr)
    # Every warning of the run (the accuracy interval's, the false-reject guarantee's, ...) on stderr in
    # plain and JSON mode alike; the JSON keeps its own keys (val_accuracy_warning, frr_warning) and
    # lists them all under "warnings".
    run_warnings = result.summary.warnings
    for message in run_warnings:
        print(f"warning: {message}", file=sys.stderr)
    if args.json:
        emit_json({**result.to_dict(), "warnings": [*data_warnings, *run_warnings],
                   "notes": dataset.notes if dataset is not None else []})
    return None
