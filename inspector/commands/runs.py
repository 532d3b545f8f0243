"""`inspector runs`: list trained runs."""
from __future__ import annotations

import argparse

from ..cli import emit_json, print_table


def add_parser(sub: argparse._SubParsersAction, common: dict) -> None:
    p = sub.add_parser("runs", help="list trained runs")
    p.add_argument("--runs-dir", **common["runs_dir"])
    p.add_argument("--json", **common["as_json"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from ..runs import RunStore

    runs = RunStore(args.runs_dir).list_runs()
    if args.json:
        emit_json({"runs_dir": str(args.runs_dir), "runs": [r.to_dict() for r in runs]})
        return
    if not runs:
        print(f"No runs in {args.runs_dir}.")
        return
    rows = [[r.run_id, r.status, r.backbone, r.strategy, _headline(r)] for r in runs]
    print_table(rows, ["run", "status", "backbone", "strategy", "result"])


def _headline(info) -> str:
    """The run's main figure as its task words it ("93%", "anomaly, AUROC 0.91"); "-" when none."""
    from ..errors import InspectorError
    from ..tasks.base import create_task

    try:
        return create_task(info.task).headline(info.run_summary) or "-"
    except InspectorError:  # a run of a task that is not installed here
        return "-"
