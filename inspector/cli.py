"""The `inspector` command: a thin argparse front end over the library.

Progress goes to stderr; with --json the last stdout line is one JSON object. A user's mistake
prints one `error:` line and exits with status 2; nothing prints a traceback unless
INSPECTOR_DEBUG=1 is set.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from .errors import InspectorError

EXIT_USER_ERROR, EXIT_BUG, EXIT_INTERRUPTED = 2, 1, 130


def _emit_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, default=str))


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))]
                     + [fmt.format(*map(str, r)) for r in rows])


def _without_option(argv: Sequence[str], option: str) -> list[str]:
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
               "-m", "inspector", *_without_option(args.argv, "--nproc")]
    print(f"starting {args.nproc} training processes: {' '.join(command[1:])}", file=sys.stderr)
    return subprocess.run(command, check=False).returncode


def cmd_train(args: argparse.Namespace) -> int | None:
    from .config import TrainConfig
    from .data import discover_dataset, validate_dataset
    from .engine import ConsoleProgress
    from .engine.distributed import ranks_from_environment
    from .training import train

    ranks = ranks_from_environment()
    if args.nproc < 1:
        raise InspectorError(f"--nproc must be at least 1, got {args.nproc}.")
    if args.nproc > 1 and not ranks.active:
        return _launch_ranks(args)

    config = TrainConfig(task=args.task, ok_classes=_class_list(args.ok_classes), target_frr=args.target_frr,
                         symmetric_bank=args.symmetric_bank,
                         backbone=args.backbone, strategy=args.strategy, epochs=args.epochs,
                         image_size=args.image_size, augment=args.augment, seed=args.seed, device=args.device,
                         batch_size=args.batch_size, weights_path=args.weights, name=args.name,
                         resize_mode=args.resize, max_folds=args.max_folds, cross_validate=not args.no_cv,
                         any_orientation=not args.orientation_matters)
    dataset = discover_dataset(args.data, extract_dir=args.scratch)
    if ranks.is_main:  # under torchrun the other ranks train quietly: one report, one JSON line
        for item in dataset.skipped:
            print(f"skipped {item.path}: {item.reason}", file=sys.stderr)
        for finding in validate_dataset(dataset).warnings:  # e.g. an empty class folder, duplicates
            print(f"warning: {finding.message}", file=sys.stderr)
    result = train(dataset, config, runs_dir=args.runs_dir, callbacks=[ConsoleProgress()])
    if not ranks.is_main:
        return None
    print(f"Run saved to {result.run_dir}", file=sys.stderr)
    summary = result.to_dict()
    if summary.get("val_accuracy_warning"):
        print(f"warning: {summary['val_accuracy_warning']}", file=sys.stderr)
    if args.json:
        _emit_json(summary)


def _class_list(text: str | None) -> tuple[str, ...] | None:
    names = tuple(name.strip() for name in text.split(",") if name.strip()) if text else ()
    return names or None


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .data import discover_dataset
    from .inference import load_predictor

    predictor = load_predictor(args.run_dir, device=args.device)
    dataset = discover_dataset(args.data, extract_dir=args.scratch)
    if predictor.task == "anomaly":
        report = _evaluate_anomaly(predictor, dataset, args)
    else:
        report = _evaluate_classifier(predictor, dataset, args)
    report["skipped"] = [{"path": s.path, "reason": s.reason} for s in dataset.skipped]
    if args.json:
        _emit_json(report)


def _evaluate_anomaly(predictor, dataset, args) -> dict:
    from .tasks.anomaly.predictor import evaluate_detection

    # A test class named like one of the run's good classes is good, unless --ok-classes says otherwise.
    ok_classes = _class_list(args.ok_classes) or [c for c in dataset.classes if c in predictor.ok_classes]
    if not ok_classes:
        raise InspectorError(f"None of the test classes ({', '.join(dataset.classes)}) is one of the run's good "
                             f"classes ({', '.join(predictor.ok_classes)}): name the good ones with --ok-classes.")
    report = evaluate_detection(predictor, dataset.paths, [s.label for s in dataset.samples], ok_classes)
    if not args.json:
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"AUROC {fmt(report['auroc'])}, false-reject rate {fmt(report['false_reject_rate'])} "
              f"(target {report['target_frr']:.3f}), detection rate {fmt(report['detection_rate'])}; "
              f"{report['n_good']} good, {report['n_defect']} defect images")
        for name, rate in report["detection_rate_per_class"].items():
            print(f"  {name}: {rate:.0%} detected")
    return report


def _evaluate_classifier(predictor, dataset, args) -> dict:
    import numpy as np

    from .evaluation import evaluate_predictions

    unknown = sorted(set(dataset.classes) - set(predictor.classes))
    if unknown:
        raise InspectorError(f"The data has classes the model was not trained on: {', '.join(unknown)}. "
                             f"The model knows: {', '.join(predictor.classes)}.")
    y_true = [predictor.classes.index(s.label) for s in dataset.samples]
    y_pred = predictor.predict_proba(dataset.paths).argmax(1) if len(dataset) else np.zeros(0, int)
    report = evaluate_predictions(y_true, y_pred, predictor.classes, method=f"evaluation on {args.data}")
    if not args.json:
        low, high = report["accuracy_ci"]
        print(f"accuracy {report['accuracy']:.3f} (95% CI {low:.2f}-{high:.2f}), macro-F1 {report['macro_f1']:.3f}, "
              f"{report['n_images']} images")
        rows = [[c, f"{v['precision']:.2f}", f"{v['recall']:.2f}", f"{v['f1']:.2f}", v["support"]]
                for c, v in report["per_class"].items()]
        print(_table(rows, ["class", "precision", "recall", "f1", "images"]))
    return report


def _collect_images(inputs: Sequence[str]) -> tuple[list[Path], list[dict[str, str]]]:
    from .data import is_image_path
    from .data.types import is_ignored_name

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


def _read_images(inputs: Sequence[str]) -> tuple[list[Path], list, list[dict[str, str]]]:
    from .data import load_image, to_rgb_array
    from .errors import ImageLoadError

    paths, skipped = _collect_images(inputs)
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


def cmd_predict(args: argparse.Namespace) -> None:
    from .inference import Predictor, load_predictor
    from .reports import save_csv

    predictor = load_predictor(args.run_dir, device=args.device, compile=args.compile)
    kept, images, skipped = _read_images(args.images)
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
        _emit_json({"run_dir": str(predictor.run_dir), **extra, "predictions": results, "skipped": skipped})
    else:
        for row in results:
            if "score" in row:
                from .gate import describe

                print(f"{row['path']}\t{describe(row)}")
            else:
                extra_text = f"  {row['verdict']}" if "verdict" in row else ""
                print(f"{row['path']}\t{row['label']}\t{row['confidence']:.3f}{extra_text}")


def _predict_anomaly(predictor, classifier, paths: list[Path], images: list) -> list[dict]:
    from .gate import gate_row

    types = classifier.predict_batch(images) if classifier is not None else [None] * len(images)
    return [{"path": str(path), **gate_row(found.to_dict(), kind)}
            for path, found, kind in zip(paths, predictor.predict_batch(images), types)]


def _predict_classes(predictor, paths: list[Path], images: list, args) -> list[dict]:
    from .inference import verdict

    ok_classes = list(_class_list(args.ok_classes) or ())
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


def cmd_runs(args: argparse.Namespace) -> None:
    from .runs import RunStore

    runs = RunStore(args.runs_dir).list_runs()
    if args.json:
        _emit_json({"runs_dir": str(args.runs_dir), "runs": [r.to_dict() for r in runs]})
        return
    if not runs:
        print(f"No runs in {args.runs_dir}.")
        return
    rows = [[r.run_id, r.status, r.backbone, r.strategy,
             "-" if r.summary.get("val_accuracy") is None else f"{r.summary['val_accuracy']:.3f}"] for r in runs]
    print(_table(rows, ["run", "status", "backbone", "strategy", "val_acc"]))


def cmd_backbones(args: argparse.Namespace) -> None:
    from .backbones import list_backbones

    if args.rank:  # rank the offline backbones on the user's images before training (LogME)
        from .commands import rank

        args.data, args.backbones, args.image_sizes, args.symmetric = args.rank, None, None, False
        rank.run(args)
        return

    entries = [b for b in list_backbones() if b.available_offline or not args.offline]
    if args.json:
        _emit_json({"backbones": [b.to_dict() for b in entries]})
        return
    rows = [[b.spec.name, f"{b.spec.params_m:.1f}M", b.input_size, b.weights, b.spec.summary] for b in entries]
    print(_table(rows, ["backbone", "params", "input", "weights", "notes"]))
    print("\nbundled/cached: works offline. download: needs internet once. Any other timm model name works too.")


def cmd_sample_data(args: argparse.Namespace) -> None:
    from .sample_data import generate_sample_data

    out = generate_sample_data(args.out_dir, seed=args.seed)
    print(f"Sample data written to {out}", file=sys.stderr)
    if args.json:
        _emit_json({"out_dir": str(out)})


def build_parser() -> argparse.ArgumentParser:
    from .runs import default_runs_dir

    parser = argparse.ArgumentParser(prog="inspector", description="Train and use defect-inspection models "
                                     "from a handful of labeled images.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    runs_dir = dict(default=default_runs_dir(), type=Path, help="folder holding the runs (default: %(default)s)")
    device = dict(default="auto", choices=["auto", "cpu", "cuda", "mps"], help="where to compute (default: auto)")
    as_json = dict(action="store_true", help="print one JSON object as the last line of stdout")

    p = sub.add_parser("train", help="train a model on a folder of class sub-folders or a .zip")
    p.add_argument("data", help="folder with one sub-folder per class, or a .zip of such folders")
    p.add_argument("--task", default="classification", choices=["classification", "anomaly"],
                   help="classification: learn each defect class; anomaly: learn good parts only and flag "
                        "anything unusual (default: %(default)s)")
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
    p.add_argument("--runs-dir", **runs_dir)
    p.add_argument("--device", **device)
    p.add_argument("--json", **as_json)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="measure a trained run on labeled data")
    p.add_argument("run_dir", help="a run folder (see 'inspector runs')")
    p.add_argument("data", help="folder with one sub-folder per class, or a .zip")
    p.add_argument("--ok-classes", default=None,
                   help="anomaly runs: comma-separated test classes that are good parts (default: those named "
                        "like the run's good classes); every other class is a defect")
    p.add_argument("--device", **device)
    p.add_argument("--json", **as_json)
    p.set_defaults(func=cmd_evaluate)

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
    p.add_argument("--device", **device)
    p.add_argument("--json", **as_json)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("runs", help="list trained runs")
    p.add_argument("--runs-dir", **runs_dir)
    p.add_argument("--json", **as_json)
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("backbones", help="list the curated backbones and where their weights come from")
    p.add_argument("--offline", action="store_true", help="only those that work without internet")
    p.add_argument("--rank", default=None, metavar="DATA",
                   help="rank the offline backbones on these images (a folder of class sub-folders or a .zip) "
                        "by a transferability estimate (LogME), in seconds, before any training")
    p.add_argument("--device", **device)
    p.add_argument("--json", **as_json)
    p.set_defaults(func=cmd_backbones)

    p = sub.add_parser("sample-data", help="(re)generate the bundled sample dataset")
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", **as_json)
    p.set_defaults(func=cmd_sample_data)

    from .commands import command_modules

    common = {"runs_dir": runs_dir, "device": device, "as_json": as_json}
    for module in command_modules():
        module.add_parser(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        # A .zip is extracted into a scratch folder that is removed when the command ends.
        with tempfile.TemporaryDirectory(prefix="inspector-") as scratch:
            args.scratch = Path(scratch)
            code = args.func(args)
    except InspectorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - one line for the user; details on request
        if os.environ.get("INSPECTOR_DEBUG"):
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (set INSPECTOR_DEBUG=1 for details)", file=sys.stderr)
        return EXIT_BUG
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
