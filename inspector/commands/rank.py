"""`inspector rank-backbones DATA`: which pretrained backbone to try first (LogME, issue 15).

`inspector backbones --rank DATA` is the same command: both call rank_and_report.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from ..cli import emit_json, print_table


def add_parser(sub: argparse._SubParsersAction, common: dict) -> None:
    p = sub.add_parser("rank-backbones", help="rank the offline backbones on your images by LogME, before training")
    p.add_argument("data", help="folder with one sub-folder per class, or a .zip of such folders")
    p.add_argument("--backbones", nargs="+", default=None, help="timm names (default: those usable offline)")
    p.add_argument("--image-sizes", type=int, nargs="+", default=None,
                   help="input sizes to try (default: each backbone's own)")
    p.add_argument("--symmetric", action="store_true",
                   help="average features over flips and quarter turns as the linear probe does (8x slower)")
    p.add_argument("--device", **common["device"])
    p.add_argument("--max-megapixels", **common["max_megapixels"])
    p.add_argument("--json", **common["as_json"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    rank_and_report(args.data, backbones=args.backbones, image_sizes=args.image_sizes, symmetric=args.symmetric,
                    device=args.device, as_json=args.json, extract_dir=getattr(args, "scratch", None))


def rank_and_report(data: str, *, backbones: Sequence[str] | None = None, image_sizes: Sequence[int] | None = None,
                    symmetric: bool = False, device: str = "auto", as_json: bool = False,
                    extract_dir: Path | None = None) -> None:
    """Rank the backbones on DATA (each one's figure on stderr as it comes), then the table or JSON."""
    from ..data import discover_dataset
    from ..engine.features import default_feature_cache_dir
    from ..evidence.transferability import rank_backbones

    dataset = discover_dataset(data, extract_dir=extract_dir)
    for note in dataset.notes:  # a split layout: ranked on train/
        print(f"note: {note}", file=sys.stderr)
    rows = rank_backbones(dataset, backbones, image_sizes, symmetric=symmetric, device=device,
                          cache_dir=default_feature_cache_dir(),
                          on_candidate=lambda row: print(f"{row.backbone} at {row.image_size} px: LogME "
                                                         f"{row.logme:.3f} ({row.seconds:.1f} s)", file=sys.stderr))
    if as_json:
        emit_json({"data": str(data), "ranking": [row.to_dict() for row in rows]})
        return
    print_table([[str(r.rank), r.backbone, f"{r.image_size} px", f"{r.logme:.3f}", f"{r.seconds:.1f}"] for r in rows],
                ["rank", "backbone", "input", "LogME", "seconds"])
    print("\nLogME (You et al., ICML 2021): higher means the frozen features fit your classes better. Train the "
          "top one first; close scores are a tie.")
