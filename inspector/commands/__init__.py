"""Sub-commands of the `inspector` CLI beyond the core ones in cli.py, one module each.

A module here defines `add_parser(sub, common)`: it adds its sub-parser to `sub` (argparse's
sub-parsers) and sets `func=` to a function taking the parsed arguments. `common` holds the
shared argument settings (`runs_dir`, `device`, `as_json`). cli.py finds the modules by listing
this package, so adding a command means adding one file.
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def command_modules() -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{info.name}")
            for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name) if not info.name.startswith("_")]
