"""Words for counts on the pages: "1 image", "2 images", never "1 images" or "image(s)"."""
from __future__ import annotations

__all__ = ["count", "listing"]

_IRREGULAR = {"class": "classes", "copy": "copies", "entry": "entries", "this": "these", "is": "are",
              "was": "were", "photo": "photos"}


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun in agreement: count(1, "image") -> "1 image", count(3, "class") -> "3 classes".

    Large numbers get thousands separators ("1,200 images"); `plural` overrides the usual form.
    """
    if n == 1:
        return f"1 {noun}"
    return f"{n:,} {plural or _plural(noun)}"


def _plural(noun: str) -> str:
    head, _, last = noun.rpartition(" ")  # "exact copy" -> "exact copies"
    word = _IRREGULAR.get(last) or (last[:-1] + "ies" if last.endswith("y") and last[-2:-1] not in "aeiou"
                                    else last + "es" if last.endswith(("s", "x", "ch", "sh")) else last + "s")
    return f"{head} {word}" if head else word


def listing(names, limit: int = 5) -> str:
    """'a', 'a and b', 'a, b and c', or 'a, b, c, d, e and 3 more' (names quoted)."""
    quoted = [f"'{n}'" for n in names]
    if len(quoted) > limit:
        quoted = [*quoted[:limit], f"{len(quoted) - limit} more"]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1] if quoted else ""
