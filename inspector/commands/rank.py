"""`inspector rank-backbones DATA`: which pretrained backbone to try first (LogME, issue 15).

The same ranking is meant for `inspector backbones --rank DATA`, which calls
inspector.evidence.transferability.rank_backbones.
"""
from __future__ import annotations

import argparse
import json
import sys

from .advise import default_feature_cache


def add_parser(sub, common: dict) -> None:
    p = sub.add_parser("rank-backbones", help="rank the offline backbones on your images by LogME, before training")
    p.add_argument("data", help="folder with one sub-folder per class, or a .zip of such folders")
    p.add_argument("--backbones", nargs="+", default=None, help="timm names (default: those usable offline)")
    p.add_argument("--image-sizes", type=int, nargs="+", default=None,
                   help="input sizes to try (default: each backbone's own)")
    p.add_argument("--symmetric", action="store_true",
                   help="average features over flips and quarter turns as the linear probe does (8x slower)")
    p.add_argument("--device", **common["device"])
    p.add_argument("--json", **common["as_json"])
    p.set_defaults(func=run)


def print_ranking(rows: list[dict]) -> None:
    header = ["rank", "backbone", "input", "LogME", "seconds"]
    table = [[str(r["rank"]), r["backbone"], f"{r['image_size']} px", f"{r['logme']:.3f}", f"{r['seconds']:.1f}"]
             for r in rows]
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    print("\nLogME (You et al., ICML 2021): higher means the frozen features fit your classes better. Train the "
          "top one first; close scores are a tie.")


def run(args: argparse.Namespace) -> None:
    from ..data import discover_dataset
    from ..evidence.transferability import rank_backbones

    dataset = discover_dataset(args.data, extract_dir=getattr(args, "scratch", None))
    rows = rank_backbones(dataset, args.backbones, args.image_sizes, symmetric=args.symmetric, device=args.device,
                          cache_dir=default_feature_cache(),
                          on_candidate=lambda row: print(f"{row['backbone']} at {row['image_size']} px: LogME "
                                                         f"{row['logme']:.3f} ({row['seconds']:.1f} s)",
                                                         file=sys.stderr))
    if args.json:
        print(json.dumps({"data": str(args.data), "ranking": rows}, ensure_ascii=False))
    else:
        print_ranking(rows)
