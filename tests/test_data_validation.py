"""validate_dataset: findings a quality engineer can act on."""
from __future__ import annotations

import json
from pathlib import Path

from inspector.data import Finding, LabeledDataset, Sample, Skipped, ValidationReport, validate_dataset

ROOT = Path("/data")


def _ds(counts: dict[str, int], *, size: int = 64, extra: list[Sample] = (), skipped=(), empty=()) -> LabeledDataset:
    """A dataset of distinct fake samples (validation never opens the files)."""
    samples = [
        Sample(ROOT / label / f"{i}.png", label, f"{label}-{i}", size, size)
        for label, n in counts.items()
        for i in range(n)
    ] + list(extra)
    classes = sorted({s.label for s in samples})
    return LabeledDataset(samples, classes, list(skipped), ROOT, list(empty))


def _codes(report: ValidationReport) -> dict[str, str]:
    return {f.code: f.level for f in report.findings}


def _finding(report: ValidationReport, code: str) -> Finding:
    return next(f for f in report.findings if f.code == code)


def test_balanced_dataset_is_ok_without_findings():
    report = validate_dataset(_ds({"ok": 60, "scratch": 50}))
    assert report.ok and report.findings == []
    assert report.counts == {"ok": 60, "scratch": 50}


def test_one_class_is_an_error():
    report = validate_dataset(_ds({"ok": 10}))
    assert not report.ok
    error = _finding(report, "too_few_classes")
    assert error.level == "error" and error.message.startswith("Training needs at least two classes")
    assert "'ok'" in error.message


def test_class_with_one_image_is_an_error_naming_it():
    report = validate_dataset(_ds({"ok": 10, "dent": 1}))
    error = _finding(report, "class_too_small")
    assert error.level == "error" and "'dent' has 1 image" in error.message
    assert report.errors == [error]


def test_min_images_per_class_is_configurable():
    assert validate_dataset(_ds({"ok": 30, "nok": 29}), min_images_per_class=30).errors[0].code == "class_too_small"


def test_empty_class_folder_is_a_warning():
    report = validate_dataset(_ds({"ok": 30, "nok": 30}, empty=["dent"]))
    warning = _finding(report, "empty_class")
    assert warning.level == "warning" and "'dent'" in warning.message
    assert report.ok


def test_exact_duplicates_within_a_class_are_listed():
    copy = Sample(ROOT / "ok/copy.png", "ok", "ok-0", 64, 64)
    report = validate_dataset(_ds({"ok": 30, "nok": 30}, extra=[copy]))
    warning = _finding(report, "duplicates")
    assert warning.level == "warning"
    assert set(warning.paths) == {"ok/0.png", "ok/copy.png"}
    assert "1 image" in warning.message


def test_same_image_under_two_labels_is_a_label_conflict():
    twin = Sample(ROOT / "nok/same.png", "nok", "ok-3", 64, 64)
    report = validate_dataset(_ds({"ok": 30, "nok": 30}, extra=[twin]))
    warning = _finding(report, "label_conflict")
    assert "Label conflict" in warning.message and "'nok' and 'ok'" in warning.message
    assert set(warning.paths) == {"ok/3.png", "nok/same.png"}
    assert "duplicates" not in _codes(report)


def test_strong_imbalance_is_a_warning_with_the_ratio():
    report = validate_dataset(_ds({"Free": 300, "Fray": 30, "Crack": 100}))
    warning = _finding(report, "class_imbalance")
    assert "'Free' has 300 images" in warning.message and "'Fray' only 30" in warning.message
    assert "10.0 times" in warning.message
    assert "class_imbalance" not in _codes(validate_dataset(_ds({"a": 50, "b": 10})))  # 5x is fine


def test_tiny_images_are_a_warning():
    report = validate_dataset(_ds({"ok": 30, "nok": 30}, size=16))
    warning = _finding(report, "tiny_images")
    assert len(warning.paths) == 60 and "32 pixels" in warning.message
    assert "tiny_images" not in _codes(validate_dataset(_ds({"ok": 30, "nok": 30}, size=32)))


def test_skipped_files_are_a_warning_with_reasons_and_paths():
    skipped = [Skipped("ok/a.txt", "not an image file (.txt)"), Skipped("ok/b.png", "empty file"),
               Skipped("ok/c.txt", "not an image file (.txt)")]
    warning = _finding(validate_dataset(_ds({"ok": 30, "nok": 30}, skipped=skipped)), "skipped_files")
    assert warning.message.startswith("3 files were skipped")
    assert "2 x not an image file (.txt)" in warning.message
    assert warning.paths == ("ok/a.txt", "ok/b.png", "ok/c.txt")


def test_few_images_says_cross_validation_will_be_used():
    info = _finding(validate_dataset(_ds({"ok": 6, "nok": 8})), "few_images")
    assert info.level == "info"
    assert info.message.startswith("6 images per class is few (smallest class: 'ok')")
    assert "5-fold cross-validation" in info.message and "trains on every image" in info.message
    assert "few_images" in _codes(validate_dataset(_ds({"ok": 40, "nok": 40})))  # 8 per class for a hold-out
    assert "few_images" not in _codes(validate_dataset(_ds({"ok": 50, "nok": 50})))  # 10 per class


def test_report_properties_and_json():
    report = validate_dataset(_ds({"ok": 1}, skipped=[Skipped("x.txt", "not an image file (.txt)")]))
    assert not report.ok
    assert {f.code for f in report.errors} == {"too_few_classes", "class_too_small"}
    assert [f.code for f in report.warnings] == ["skipped_files"]
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is False and data["counts"] == {"ok": 1}
    assert data["findings"][-1] == {"level": "warning", "code": "skipped_files",
                                    "message": report.warnings[0].message, "paths": ["x.txt"]}
