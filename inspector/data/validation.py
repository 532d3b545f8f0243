"""Dataset checks in words a quality engineer understands, before any training starts."""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from inspector.data.discovery import LabeledDataset, Sample
from inspector.data.splits import plan_validation
from inspector.data.types import display_path as _show

__all__ = ["Finding", "ValidationReport", "exact_copies", "validate_dataset"]

_MAX_NAMED = 5  # how many files a message names before saying "and N more"


@dataclass(frozen=True)
class Finding:
    """One observation: ``level`` is "error" (blocks training), "warning" or "info"."""

    level: str
    code: str
    message: str
    paths: tuple[str, ...] = ()


@dataclass
class ValidationReport:
    findings: list[Finding]
    counts: dict[str, int]

    @property
    def ok(self) -> bool:
        """True when nothing blocks training (warnings allowed)."""
        return not self.errors

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (saved with a run, shown by the CLI)."""
        return {
            "ok": self.ok,
            "counts": dict(self.counts),
            "findings": [{**asdict(f), "paths": list(f.paths)} for f in self.findings],
        }


def validate_dataset(
    ds: LabeledDataset,
    *,
    min_images_per_class: int = 2,
    imbalance_ratio: float = 5.0,
    min_side: int = 32,
) -> ValidationReport:
    """Check a discovered dataset; errors mean training cannot start."""
    counts = ds.counts()
    findings = [
        *_check_classes(counts, min_images_per_class),
        *_check_empty_classes(ds),
        *_check_duplicates(ds),
        *_check_label_conflicts(ds),
        *_check_imbalance(counts, imbalance_ratio),
        *_check_tiny(ds, min_side),
        *_check_bit_depths(ds),
        *_check_frames(ds),
        *_check_skipped(ds),
    ]
    if not any(f.level == "error" for f in findings):
        findings.extend(_check_few_images(ds))
    return ValidationReport(findings=findings, counts=counts)


def _check_classes(counts: dict[str, int], min_images: int) -> list[Finding]:
    findings = []
    if len(counts) < 2:
        found = f"only '{next(iter(counts))}' was found" if counts else "none was found"
        findings.append(Finding(
            "error", "too_few_classes",
            f"Training needs at least two classes (for example 'ok' and 'defect'), but {found}. "
            "Add a folder of images for each class.",
        ))
    for name, n in counts.items():
        if n < min_images:
            findings.append(Finding(
                "error", "class_too_small",
                f"Class '{name}' has {_images(n)}; at least {min_images} are needed per class.",
            ))
    return findings


def _check_empty_classes(ds: LabeledDataset) -> list[Finding]:
    return [
        Finding("warning", "empty_class",
                f"Class '{name}' has no usable images, so it is left out of training: the model will not know "
                f"it. Add images to '{name}', or delete the class.", (name,))
        for name in ds.empty_classes
    ]


def exact_copies(ds: LabeledDataset) -> list[Sample]:
    """Samples that are exact copies (same bytes) of another sample of the same class: all but the
    first of each group, in the dataset's (natural) order."""
    groups = _group(ds.samples, key=lambda s: (s.label, s.sha256))
    return [s for g in groups.values() for s in g[1:]]


def _check_duplicates(ds: LabeledDataset) -> list[Finding]:
    groups = _group(ds.samples, key=lambda s: (s.label, s.sha256))
    dups = [g for g in groups.values() if len(g) > 1]
    if not dups:
        return []
    extra = sum(len(g) - 1 for g in dups)
    paths = tuple(_show(s.path, ds.root) for g in dups for s in g)
    are = "is an exact copy" if extra == 1 else "are exact copies"
    return [Finding(
        "warning", "duplicates",
        f"{_images(extra)} {are} of another image in the same class "
        f"({_names(paths)}). Copies add nothing and make validation scores look better than they are.",
        paths,
    )]


def _check_label_conflicts(ds: LabeledDataset) -> list[Finding]:
    groups = _group(ds.samples, key=lambda s: s.sha256)
    conflicts = [g for g in groups.values() if len({s.label for s in g}) > 1]
    if not conflicts:
        return []
    examples = "; ".join(
        f"{_show(g[0].path, ds.root)} is in " + " and ".join(sorted({f"'{s.label}'" for s in g}))
        for g in conflicts[:_MAX_NAMED]
    )
    paths = tuple(_show(s.path, ds.root) for g in conflicts for s in g)
    return [Finding(
        "warning", "label_conflict",
        f"Label conflict: {_count(len(conflicts), 'image')} {'appears' if len(conflicts) == 1 else 'appear'} "
        f"under different classes ({examples}). "
        "Keep each image in one class only.",
        paths,
    )]


def _check_imbalance(counts: dict[str, int], max_ratio: float) -> list[Finding]:
    present = {k: v for k, v in counts.items() if v > 0}
    if len(present) < 2:
        return []
    big = max(present, key=present.__getitem__)
    small = min(present, key=present.__getitem__)
    ratio = present[big] / present[small]
    if ratio <= max_ratio:
        return []
    return [Finding(
        "warning", "class_imbalance",
        f"Classes are unbalanced: '{big}' has {_images(present[big])} but '{small}' only "
        f"{present[small]} ({ratio:.1f} times fewer). The model may favour '{big}'; "
        f"add images of '{small}' if you can.",
    )]


def _check_tiny(ds: LabeledDataset, min_side: int) -> list[Finding]:
    tiny = [s for s in ds.samples if min(s.width, s.height) < min_side]
    if not tiny:
        return []
    paths = tuple(_show(s.path, ds.root) for s in tiny)
    return [Finding(
        "warning", "tiny_images",
        f"{_images(len(tiny))} {'is' if len(tiny) == 1 else 'are'} smaller than {min_side} pixels on a side "
        f"({_names(paths)}); {'it carries' if len(tiny) == 1 else 'they carry'} little detail and will be enlarged.",
        paths,
    )]


def _check_bit_depths(ds: LabeledDataset) -> list[Finding]:
    """16-bit camera images: say which one brightness mapping they get, and warn when 8-bit and 16-bit
    files are mixed (two cameras or export settings: the same scene would not look the same)."""
    deep = [s for s in ds.samples if s.bit_depth is not None]
    if not deep:
        return []
    bits = ds.bit_depth
    findings = [Finding(
        "info", "bit_depth",
        f"{_images(len(deep))} {'is a 16-bit grey file' if len(deep) == 1 else 'are 16-bit grey files'}, read as {bits}-bit camera data (the brightest value in the "
        f"dataset needs {bits} bits): one brightness mapping for all of them and for every image the model sees "
        f"later. If the camera uses more bits, pass --bit-depth.",
    )]
    flat = [s for s in ds.samples if s.bit_depth is None]
    if flat:
        paths = tuple(_show(s.path, ds.root) for s in flat)
        findings.append(Finding(
            "warning", "mixed_bit_depths",
            f"The dataset mixes bit depths: {_images(len(flat))} {'is an 8-bit file' if len(flat) == 1 else 'are 8-bit files'} "
            f"({_names(paths)}) and {len(deep)} {'is' if len(deep) == 1 else 'are'} 16-bit. The same scene does not look the same in both (two cameras or export "
            f"settings?); save all images the same way.",
            paths,
        ))
    return findings


def _check_frames(ds: LabeledDataset) -> list[Finding]:
    """Blank, saturated or flat frames (runtime.frames) teach a class nothing about parts: say which."""
    blank = [s for s in ds.samples if s.frame]
    if not blank:
        return []
    paths = tuple(_show(s.path, ds.root) for s in blank)
    examples = "; ".join(f"{_show(s.path, ds.root)} in '{s.label}': {s.frame.split(':')[0]}" for s in blank[:_MAX_NAMED])
    more = f" and {len(blank) - _MAX_NAMED} more" if len(blank) > _MAX_NAMED else ""
    return [Finding(
        "warning", "blank_frames",
        f"{_images(len(blank))} {'shows' if len(blank) == 1 else 'show'} nothing to inspect ({examples}{more}). A model learns nothing about parts "
        f"from them, and a class that holds them may claim every blank frame; remove them unless the class is "
        f"meant for such frames. Models answer UNSURE on such frames.",
        paths,
    )]


def _check_skipped(ds: LabeledDataset) -> list[Finding]:
    if not ds.skipped:
        return []
    reasons = "; ".join(f"{n} x {r}" for r, n in Counter(s.reason for s in ds.skipped).most_common())
    return [Finding(
        "warning", "skipped_files",
        f"{_count(len(ds.skipped), 'file')} {'was' if len(ds.skipped) == 1 else 'were'} skipped and will not be "
        f"used: {reasons}.",
        tuple(s.path for s in ds.skipped),
    )]


def _check_few_images(ds: LabeledDataset) -> list[Finding]:
    """Say up front when the split will be cross-validation (only if training can start)."""
    plan = plan_validation(ds.labels)
    if plan.mode != "cross_validation":
        return []
    counts = ds.counts()
    name = min(counts, key=counts.__getitem__)
    return [Finding(
        "info", "few_images",
        f"{_images(counts[name])} per class is few (smallest class: '{name}'); "
        f"{len(plan.folds)}-fold cross-validation will be used instead of a hold-out split, "
        "so the model trains on every image.",
    )]


def _group(samples: list[Sample], key) -> dict[Any, list[Sample]]:
    groups: dict[Any, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[key(s)].append(s)
    return groups


def _names(paths: tuple[str, ...]) -> str:
    shown = ", ".join(paths[:_MAX_NAMED])
    more = len(paths) - _MAX_NAMED
    return f"{shown} and {more} more" if more > 0 else shown


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _images(n: int) -> str:
    return _count(n, "image")
