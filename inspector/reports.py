"""Per-image result tables as CSV: one writer for the CLI (`predict --csv`) and the Inspect page."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Iterable, TextIO

from ._io import atomic_write


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """Nested probabilities become one column per class (p_<class>), the familiarity guard's figures
    (runtime/rows.py) familiarity_distance and familiarity_limit."""
    flat = {k: v for k, v in row.items() if k not in ("probabilities", "familiarity")}
    flat.update({f"p_{name}": p for name, p in (row.get("probabilities") or {}).items()})
    flat.update({f"familiarity_{name}": value for name, value in (row.get("familiarity") or {}).items()})
    return flat


def write_csv(handle: TextIO, rows: Iterable[dict[str, Any]]) -> None:
    """Columns in first-seen order; a value a row lacks (an unreadable image's label) stays empty."""
    flat = [_flat(r) for r in rows]
    columns = list(dict.fromkeys(k for r in flat for k in r))
    writer = csv.DictWriter(handle, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(flat)


def csv_text(rows: Iterable[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    write_csv(buffer, rows)
    return buffer.getvalue()


def save_csv(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Written atomically: a crash never leaves half a results file."""
    rows = list(rows)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            write_csv(handle, rows)

    atomic_write(Path(path), write)
