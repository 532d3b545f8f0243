"""`inspector sweep DATA --backbones a,b --strategies x,y --seeds 0,1,2`: many trainings at once (issue 14).

On a Ray cluster (`--ray-address`), or a local one sized to this machine, when Ray is installed;
otherwise the trials race on this machine's background runner (the Train page's race), `--parallel`
at a time. Every trial is an ordinary run in the run store. With --json the
last stdout line lists every trial with its run_dir and accuracy, best first.
"""
from __future__ import annotations

import argparse
import sys

from ..cli import emit_json


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _seeds(text: str) -> list[int]:
    try:
        return [int(part) for part in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be whole numbers separated by commas, got {text!r}") from None


def add_parser(sub: argparse._SubParsersAction, common: dict) -> None:
    p = sub.add_parser("sweep", help="train every combination of backbones, strategies and seeds (on Ray if installed)")
    p.add_argument("data", help="folder with one sub-folder per class, or a .zip of such folders (on a folder every "
                                "worker can read)")
    p.add_argument("--backbones", type=_names, default=["tf_efficientnet_lite0"], help="comma-separated timm names")
    p.add_argument("--strategies", type=_names, default=["auto"], help="comma-separated strategies (default: auto)")
    p.add_argument("--seeds", type=_seeds, default=[0], help="comma-separated seeds (default: 0)")
    p.add_argument("--ray-address", default=None,
                   help="a running Ray cluster (e.g. ray://head:10001 or auto); default: a local cluster on this "
                        "machine")
    p.add_argument("--gpus-per-trial", type=float, default=0, help="GPUs each trial reserves on Ray (default: 0)")
    p.add_argument("--cpus-per-trial", type=int, default=1, help="CPU cores each trial reserves on Ray (default: 1)")
    p.add_argument("--parallel", type=int, default=None,
                   help="without Ray: how many trials train at the same time on this machine (default: as many as "
                        "the device has room for; each in a process of its own, the cores shared out)")
    p.add_argument("--epochs", type=int, default=None, help="epochs for the fine-tuning strategies")
    p.add_argument("--image-size", type=int, default=None, help="input size in pixels (default: the backbone's)")
    p.add_argument("--no-cv", action="store_true", help="skip the cross-validated accuracy estimate (faster)")
    p.add_argument("--runs-dir", **common["runs_dir"])
    p.add_argument("--device", **common["device"])
    p.add_argument("--max-megapixels", **common["max_megapixels"])
    p.add_argument("--json", **common["as_json"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from ..config import TrainConfig
    from ..sweep import plan_trials, ray_available, run_sweep

    trials = plan_trials(args.backbones, args.strategies, args.seeds)
    base = TrainConfig(epochs=args.epochs, image_size=args.image_size, device=args.device,
                       cross_validate=not args.no_cv)
    engine = "Ray" if ray_available() else "this machine (Ray is not installed)"
    print(f"sweep: {len(trials)} trials on {engine}, runs in {args.runs_dir}", file=sys.stderr)

    def report(row: dict) -> None:
        figure = f"accuracy {row['accuracy']:.3f}" if row["accuracy"] is not None else (row["error"] or "no figure")
        print(f"  {row['backbone']} {row['strategy']} seed {row['seed']}: {row['status']}, {figure}", file=sys.stderr)

    result = run_sweep(args.data, trials, base, args.runs_dir, ray_address=args.ray_address,
                       gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial,
                       parallel=args.parallel, on_trial=report)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    summary = result.to_dict()
    print(f"sweep done in {summary['wall_seconds']:.1f} s ({summary['sum_train_seconds']:.1f} s of training), "
          f"{summary['n_completed']} of {summary['n_trials']} trials completed", file=sys.stderr)
    if args.json:
        emit_json(summary)
