"""`inspector evaluate RUN DATA`: measure a trained run on labeled data (the run's task evaluates)."""
from __future__ import annotations

import argparse
import sys

from ..cli import class_list, emit_json, print_table


def add_parser(sub: argparse._SubParsersAction, common: dict) -> None:
    p = sub.add_parser("evaluate", help="measure a trained run on labeled data")
    p.add_argument("run_dir", help="a run folder (see 'inspector runs')")
    p.add_argument("data", help="folder with one sub-folder per class, or a .zip; a folder split into train/ and "
                                "test/ (MVTec-style) is evaluated on test/ (else val/), with its ground_truth/ masks")
    p.add_argument("--ok-classes", default=None,
                   help="anomaly runs: comma-separated test classes that are good parts (default: those named "
                        "like the run's good classes); every other class is a defect")
    p.add_argument("--device", **common["device"])
    p.add_argument("--max-megapixels", **common["max_megapixels"])
    p.add_argument("--json", **common["as_json"])
    p.set_defaults(func=run)


def evaluation_warnings(report: dict, dataset, predictor) -> list[str]:
    """Every warning of an evaluation, the same in plain and JSON mode: classes with no image in the
    data (not scored), an accuracy interval too wide to trust, the run's false-reject guarantee."""
    from ..evaluation import absent_classes, interval_warning

    found = [f"class folder '{name}' has no usable images: it is absent from this evaluation, not scored"
             for name in dataset.empty_classes]
    absent = [c for c in absent_classes(report.get("per_class", {})) if c not in dataset.empty_classes]
    if absent:
        found.append(f"no test image of {', '.join(absent)}: absent from this evaluation, not scored")
    found.append(interval_warning(report.get("accuracy_ci")))
    found.append(getattr(predictor, "frr_warning", None))  # an anomaly run's false-reject guarantee
    return [w for w in dict.fromkeys(found) if w]


def run(args: argparse.Namespace) -> None:
    from ..data import discover_dataset
    from ..inference import load_predictor
    from ..tasks.base import PredictOptions, create_task

    predictor = load_predictor(args.run_dir, device=args.device)
    task = create_task(predictor.task)
    dataset = discover_dataset(args.data, extract_dir=args.scratch, split="test")
    options = PredictOptions(ok_classes=class_list(args.ok_classes) or ())
    report = task.evaluate_predictor(predictor, dataset, options, source=args.data)
    report["skipped"] = [{"path": s.path, "reason": s.reason} for s in dataset.skipped]
    report["warnings"] = evaluation_warnings(report, dataset, predictor)
    report["notes"] = dataset.notes
    for note in dataset.notes:  # a split layout: which folder is evaluated
        print(f"note: {note}", file=sys.stderr)
    for item in dataset.skipped:  # in both modes, as train and predict do
        print(f"skipped {item.path}: {item.reason}", file=sys.stderr)
    for message in report["warnings"]:
        print(f"warning: {message}", file=sys.stderr)
    if args.json:
        emit_json(report)
        return
    for line in task.evaluation_lines(report):
        print(line)
    table = task.evaluation_table(report)
    if table is not None:
        header, rows = table
        print_table(rows, header)
