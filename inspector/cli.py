"""The `inspector` command: a thin argparse front end over the library.

Each sub-command is a module of inspector/commands/ (see its docstring for the contract); this
module holds main(), the options every command shares and the one table printer.

Progress goes to stderr; with --json the last stdout line is one JSON object. A user's mistake
prints one `error:` line and exits with status 2; nothing prints a traceback unless
INSPECTOR_DEBUG=1 is set.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from .errors import InspectorError

EXIT_USER_ERROR, EXIT_BUG, EXIT_INTERRUPTED = 2, 1, 130


def emit_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, default=str))


def print_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> None:
    """Left-aligned columns under a header and a dashed rule (every command's tables)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print("\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))]
                    + [fmt.format(*map(str, r)) for r in rows]))


def class_list(text: str | None) -> tuple[str, ...] | None:
    """A comma-separated --ok-classes value as names (None when it names none)."""
    names = tuple(name.strip() for name in text.split(",") if name.strip()) if text else ()
    return names or None


def common_options() -> dict[str, dict[str, Any]]:
    """The argument settings every command spells the same way (`common` of add_parser)."""
    from .runs import default_runs_dir

    return {"runs_dir": dict(default=default_runs_dir(), type=Path,
                             help="folder holding the runs (default: %(default)s)"),
            "device": dict(default="auto", choices=["auto", "cpu", "cuda", "mps"],
                           help="where to compute (default: auto)"),
            "as_json": dict(action="store_true", help="print one JSON object as the last line of stdout"),
            "max_megapixels": dict(default=None, metavar="N",
                                   help="refuse images of more than N megapixels per image (default: "
                                        "$INSPECTOR_MAX_MEGAPIXELS, else 80; raise it for line-scan images)")}


def build_parser() -> argparse.ArgumentParser:
    from .commands import command_modules

    parser = argparse.ArgumentParser(prog="inspector", description="Train and use defect-inspection models "
                                     "from a handful of labeled images.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = common_options()
    for module in command_modules():
        module.add_parser(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .runtime.images import pixel_limit

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        # --max-megapixels becomes INSPECTOR_MAX_MEGAPIXELS for the command (torchrun ranks and the
        # service inherit it); a .zip is extracted into a scratch folder removed when the command ends.
        with pixel_limit(getattr(args, "max_megapixels", None)), \
                tempfile.TemporaryDirectory(prefix="inspector-") as scratch:
            args.scratch = Path(scratch)
            code = args.func(args)
    except InspectorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - one line for the user; details on request
        if os.environ.get("INSPECTOR_DEBUG"):
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (set INSPECTOR_DEBUG=1 for details)", file=sys.stderr)
        return EXIT_BUG
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
