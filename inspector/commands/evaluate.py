"""`inspector evaluate RUN DATA`: measure a trained run on labeled data."""
from __future__ import annotations

import argparse

from ..cli import class_list, emit_json, print_table
from ..errors import InspectorError


def add_parser(sub: argparse._SubParsersAction, common: dict) -> None:
    p = sub.add_parser("evaluate", help="measure a trained run on labeled data")
    p.add_argument("run_dir", help="a run folder (see 'inspector runs')")
    p.add_argument("data", help="folder with one sub-folder per class, or a .zip")
    p.add_argument("--ok-classes", default=None,
                   help="anomaly runs: comma-separated test classes that are good parts (default: those named "
                        "like the run's good classes); every other class is a defect")
    p.add_argument("--device", **common["device"])
    p.add_argument("--json", **common["as_json"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from ..data import discover_dataset
    from ..inference import load_predictor

    predictor = load_predictor(args.run_dir, device=args.device)
    dataset = discover_dataset(args.data, extract_dir=args.scratch)
    if predictor.task == "anomaly":
        report = _evaluate_anomaly(predictor, dataset, args)
    else:
        report = _evaluate_classifier(predictor, dataset, args)
    report["skipped"] = [{"path": s.path, "reason": s.reason} for s in dataset.skipped]
    if args.json:
        emit_json(report)


def _evaluate_anomaly(predictor, dataset, args) -> dict:
    from ..tasks.anomaly.predictor import evaluate_detection

    # A test class named like one of the run's good classes is good, unless --ok-classes says otherwise.
    ok_classes = class_list(args.ok_classes) or [c for c in dataset.classes if c in predictor.ok_classes]
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

    from ..evaluation import evaluate_predictions

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
        print_table(rows, ["class", "precision", "recall", "f1", "images"])
    return report
