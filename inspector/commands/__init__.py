"""The sub-commands of the `inspector` CLI, one module each; cli.py holds only main(), the shared
options and the one table printer.

The contract of a command module (`Command`):

- `add_parser(sub, common)` adds the command's sub-parser to `sub` (argparse's sub-parsers action)
  and sets `func=` to a function that takes the parsed arguments and returns None (exit status 0)
  or an exit status.
- `common` holds the argument settings every command spells the same way (`runs_dir`, `device`,
  `as_json`; see cli.common_options): `p.add_argument("--device", **common["device"])`.
- Progress goes to stderr; with --json the last stdout line is one JSON object (cli.emit_json).
  A user's mistake is an InspectorError: main() prints it as one `error:` line and exits with 2.
- main() also sets `args.argv` (the command line) and `args.scratch` (a folder removed when the
  command ends, for extracting a .zip).

COMMANDS lists the modules in the order `inspector --help` shows them: a new command is one file
and one name here.
"""
from __future__ import annotations

import argparse
import importlib
from typing import Any, Protocol

COMMANDS = ("train", "evaluate", "predict", "runs", "backbones", "sample_data",
            "advise", "compare", "export", "rank", "serve", "sweep")


class Command(Protocol):
    """What every module named in COMMANDS provides (a module satisfies a Protocol)."""

    def add_parser(self, sub: argparse._SubParsersAction, common: dict[str, dict[str, Any]]) -> None: ...


def command_modules() -> list[Command]:
    return [importlib.import_module(f"{__name__}.{name}") for name in COMMANDS]
