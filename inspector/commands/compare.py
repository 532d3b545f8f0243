"""`inspector compare RUN_A RUN_B [DATA]`: is A really better than B? (issue 15)

Without DATA, the runs' stored per-image validation predictions (evaluation.json) are paired; with
DATA, both runs predict every image of that labeled folder. McNemar's exact test on the images
where they disagree gives the verdict, a bootstrap the interval of the difference. Runs scored on
different images are refused. With --json the last stdout line holds accuracy_a, accuracy_b,
difference (a minus b), difference_ci, p_value, n_images and verdict.
"""
from __future__ import annotations

import argparse
import sys

from ..cli import emit_json


def add_parser(sub: argparse._SubParsersAction, common: dict) -> None:
    p = sub.add_parser("compare", help="paired significance test between two runs on the same images")
    p.add_argument("run_a", help="a run folder or run id (see 'inspector runs')")
    p.add_argument("run_b", help="a run folder or run id")
    p.add_argument("data", nargs="?", default=None,
                   help="optional labeled folder or .zip to score both runs on, with images neither run was "
                        "trained on (default: the runs' own out-of-fold validation predictions)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default: %(default)s)")
    p.add_argument("--runs-dir", **common["runs_dir"])
    p.add_argument("--device", **common["device"])
    p.add_argument("--max-megapixels", **common["max_megapixels"])
    p.add_argument("--json", **common["as_json"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from ..comparison import compare_runs

    result = compare_runs(args.run_a, args.run_b, args.data, runs_dir=args.runs_dir, device=args.device,
                          alpha=args.alpha, extract_dir=getattr(args, "scratch", None))
    if args.json:
        emit_json(result.to_dict())
        return
    paired = result.paired
    print(f"accuracy A {paired.accuracy_a:.3f}, B {paired.accuracy_b:.3f} on {paired.n_images} images "
          f"({result.scored_on})")
    print(paired.sentence)
    if result.negative_transfer:
        print(result.negative_transfer)
    print(f"verdict: {paired.verdict}", file=sys.stderr)
