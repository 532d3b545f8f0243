"""`inspector compare RUN_A RUN_B [DATA]`: is A really better than B? (issue 15)

Without DATA, the runs' stored per-image validation predictions (evaluation.json) are paired; with
DATA, both runs predict every image of that labeled folder. McNemar's exact test on the images
where they disagree gives the verdict, a bootstrap the interval of the difference. Runs scored on
different images are refused. With --json the last stdout line holds accuracy_a, accuracy_b,
difference (a minus b), difference_ci, p_value, n_images and verdict.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub, common: dict) -> None:
    p = sub.add_parser("compare", help="paired significance test between two runs on the same images")
    p.add_argument("run_a", help="a run folder or run id (see 'inspector runs')")
    p.add_argument("run_b", help="a run folder or run id")
    p.add_argument("data", nargs="?", default=None,
                   help="optional labeled folder or .zip to score both runs on, with images neither run was "
                        "trained on (default: the runs' own out-of-fold validation predictions)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default: %(default)s)")
    p.add_argument("--runs-dir", **common["runs_dir"])
    p.add_argument("--device", **common["device"])
    p.add_argument("--json", **common["as_json"])
    p.set_defaults(func=run)


def open_run(name: str, runs_dir: Path):
    """A run from a folder path or an id under runs_dir (a plain error when neither exists)."""
    from ..runs import Run, RunStore

    if Path(name).is_dir():
        run = Run(name)
        run.record()
        return run
    return RunStore(runs_dir).get(name)


def stored_predictions(run) -> list[dict]:
    from ..errors import InspectorError

    evaluation = run.evaluation() or {}
    predictions = evaluation.get("predictions")
    if not predictions:
        raise InspectorError(f"Run {run.run_id} has no stored per-image validation predictions (trained without a "
                             "validation estimate, or by an older version). Compare on an evaluation folder instead: "
                             "inspector compare RUN_A RUN_B DATA")
    return predictions


def predictions_on(run, dataset, device: str) -> list[dict]:
    """Each image of `dataset` predicted by `run`: rows of path, true label, predicted label."""
    from ..errors import InspectorError
    from ..inference import Predictor

    predictor = Predictor.from_run(run.path, device=device)
    unknown = sorted(set(dataset.classes) - set(predictor.classes))
    if unknown:
        raise InspectorError(f"The data has classes run {run.run_id} was not trained on: {', '.join(unknown)}.")
    probabilities = predictor.predict_proba(dataset.paths)
    return [{"path": str(s.path), "label": s.label, "predicted": predictor.classes[int(row.argmax())]}
            for s, row in zip(dataset.samples, probabilities)]


def compare_runs(run_a: str, run_b: str, data: str | None = None, *, runs_dir: Path, device: str = "auto",
                 alpha: float = 0.05, extract_dir: Path | None = None) -> dict:
    """The comparison as the CLI prints it (also usable by the Compare page)."""
    from ..data import discover_dataset
    from ..errors import InspectorError
    from ..evidence.paired import compare_predictions, negative_transfer_note

    a, b = open_run(run_a, runs_dir), open_run(run_b, runs_dir)
    if a.path.resolve() == b.path.resolve():
        raise InspectorError("RUN_A and RUN_B are the same run.")
    info_a, info_b = a.info(), b.info()
    if data is None:
        preds_a, preds_b, source = stored_predictions(a), stored_predictions(b), "the runs' validation predictions"
    else:
        dataset = discover_dataset(data, extract_dir=extract_dir)
        if not len(dataset):
            raise InspectorError(f"No usable image in {data}.")
        preds_a, preds_b, source = predictions_on(a, dataset, device), predictions_on(b, dataset, device), str(data)
    result = compare_predictions(preds_a, preds_b, name_a=f"A ({info_a.name})", name_b=f"B ({info_b.name})",
                                 alpha=alpha)
    note = negative_transfer_note(info_a, info_b, result)
    return {**result.to_dict(), "run_a": str(a.path), "run_b": str(b.path), "scored_on": source,
            "negative_transfer": note, "inference_ms_a": info_a.summary.get("inference_ms_per_image"),
            "inference_ms_b": info_b.summary.get("inference_ms_per_image")}


def run(args: argparse.Namespace) -> None:
    result = compare_runs(args.run_a, args.run_b, args.data, runs_dir=args.runs_dir, device=args.device,
                          alpha=args.alpha, extract_dir=getattr(args, "scratch", None))
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return
    print(f"accuracy A {result['accuracy_a']:.3f}, B {result['accuracy_b']:.3f} on {result['n_images']} images "
          f"({result['scored_on']})")
    print(result["sentence"])
    if result["negative_transfer"]:
        print(result["negative_transfer"])
    print(f"verdict: {result['verdict']}", file=sys.stderr)
