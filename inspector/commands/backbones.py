"""`inspector backbones`: the curated backbones and where their weights come from; `--rank DATA`
is another spelling of `inspector rank-backbones DATA` (commands/rank.py)."""
from __future__ import annotations

import argparse

from ..cli import emit_json, print_table


def add_parser(sub: argparse._SubParsersAction, common: dict) -> None:
    p = sub.add_parser("backbones", help="list the curated backbones and where their weights come from")
    p.add_argument("--offline", action="store_true", help="only those that work without internet")
    p.add_argument("--rank", default=None, metavar="DATA",
                   help="rank the offline backbones on these images (a folder of class sub-folders or a .zip) "
                        "by a transferability estimate (LogME), in seconds, before any training")
    p.add_argument("--device", **common["device"])
    p.add_argument("--max-megapixels", **common["max_megapixels"])
    p.add_argument("--json", **common["as_json"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from ..backbones import list_backbones

    if args.rank:
        from .rank import rank_and_report

        rank_and_report(args.rank, device=args.device, as_json=args.json, extract_dir=args.scratch)
        return
    entries = [b for b in list_backbones() if b.available_offline or not args.offline]
    if args.json:
        emit_json({"backbones": [b.to_dict() for b in entries]})
        return
    rows = [[b.spec.name, f"{b.spec.params_m:.1f}M", b.input_size, b.weights, b.spec.summary] for b in entries]
    print_table(rows, ["backbone", "params", "input", "weights", "notes"])
    print("\nbundled/cached: works offline. download: needs internet once. Any other timm model name works too.")
