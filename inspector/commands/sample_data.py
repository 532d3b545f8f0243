"""`inspector sample-data OUT_DIR`: (re)generate the bundled sample dataset."""
from __future__ import annotations

import argparse
import sys

from ..cli import emit_json


def add_parser(sub: argparse._SubParsersAction, common: dict) -> None:
    p = sub.add_parser("sample-data", help="(re)generate the bundled sample dataset")
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", **common["as_json"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from ..sample_data import generate_sample_data

    out = generate_sample_data(args.out_dir, seed=args.seed)
    print(f"Sample data written to {out}", file=sys.stderr)
    if args.json:
        emit_json({"out_dir": str(out)})
