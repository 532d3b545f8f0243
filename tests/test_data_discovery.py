"""discover_dataset: folders, zips and uploaded pairs -> verified samples or plain skip reasons."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from image_factories import image_bytes, jpeg_with_orientation, make_class_tree, make_zip, noise_image, write_image

from inspector.data import LabeledDataset, Sample, Skipped, discover_dataset
from inspector.errors import InspectorError

MAGNETIC_TILE = Path(__file__).resolve().parents[2] / "shared/datasets/magnetic-tile"


def test_class_folders_become_classes_with_verified_samples(tmp_path):
    make_class_tree(tmp_path / "data", {"scratch": 2, "ok": 3})
    ds = discover_dataset(tmp_path / "data")
    assert ds.classes == ["ok", "scratch"]
    assert ds.counts() == {"ok": 3, "scratch": 2}
    assert ds.labels == [0, 0, 0, 1, 1]
    assert len(ds) == 5 and ds.skipped == [] and ds.empty_classes == []
    assert ds.root == tmp_path / "data"
    first = ds.samples[0]
    assert first.path == tmp_path / "data/ok/img0.png"
    assert first.sha256 == hashlib.sha256(first.path.read_bytes()).hexdigest()
    assert (first.width, first.height) == (48, 48)
    assert ds.paths == [s.path for s in ds.samples]


def test_sample_order_is_natural_and_deterministic(tmp_path):
    for i in (10, 2, 1):
        write_image(tmp_path / "d/a" / f"img{i}.png", noise_image(i))
    write_image(tmp_path / "d/b/x.png", noise_image(99))
    names = [p.name for p in discover_dataset(tmp_path / "d").paths]
    assert names == ["img1.png", "img2.png", "img10.png", "x.png"]


def test_images_in_deeper_folders_count_for_the_first_level_class(tmp_path):
    write_image(tmp_path / "d/ok/day1/cam2/a.png", noise_image(1))
    write_image(tmp_path / "d/nok/b.png", noise_image(2))
    ds = discover_dataset(tmp_path / "d")
    assert [(s.path.name, s.label) for s in ds.samples] == [("b.png", "nok"), ("a.png", "ok")]


def test_single_wrapping_folder_is_looked_through(tmp_path):
    make_class_tree(tmp_path / "upload/dataset", {"ok": 2, "nok": 2})
    (tmp_path / "upload/README.txt").write_text("hi")
    ds = discover_dataset(tmp_path / "upload")
    assert ds.classes == ["nok", "ok"]
    assert ds.root == tmp_path / "upload/dataset"
    assert ds.skipped == [Skipped("README.txt", "not an image file (.txt)")]


def test_single_class_folder_is_kept_as_one_class(tmp_path):
    make_class_tree(tmp_path / "d", {"ok": 3})
    ds = discover_dataset(tmp_path / "d")
    assert ds.classes == ["ok"] and len(ds) == 3


def test_images_without_class_folders_raise_a_helpful_error(tmp_path):
    write_image(tmp_path / "d/a.png")
    with pytest.raises(InspectorError, match="one sub-folder per class"):
        discover_dataset(tmp_path / "d")


def test_loose_images_next_to_class_folders_are_skipped(tmp_path):
    make_class_tree(tmp_path / "d", {"ok": 1, "nok": 1})
    write_image(tmp_path / "d/loose.png")
    ds = discover_dataset(tmp_path / "d")
    assert ds.skipped == [Skipped("loose.png", "not in a class folder")]


@pytest.mark.parametrize("make", ["missing", "text-file"])
def test_bad_source_paths(tmp_path, make):
    path = tmp_path / "x.txt"
    if make == "text-file":
        path.write_text("x")
    with pytest.raises(InspectorError, match="does not exist" if make == "missing" else "not a folder or a .zip"):
        discover_dataset(path)


def test_blank_path_is_not_the_working_folder():
    with pytest.raises(InspectorError, match="No dataset folder"):
        discover_dataset("")


def test_unreadable_sub_folder_is_reported_not_dropped(tmp_path, monkeypatch):
    make_class_tree(tmp_path / "d", {"ok": 2, "nok": 2})
    locked = tmp_path / "d/ok/locked"
    write_image(locked / "a.png")
    real_scandir = os.scandir

    def scandir(path="."):  # chmod 0 does not stop root, so simulate the permission error
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    ds = discover_dataset(tmp_path / "d")
    assert ds.skipped == [Skipped("ok/locked", "folder could not be opened (Permission denied)")]
    assert len(ds) == 4


def test_broken_and_non_image_files_are_skipped_with_reasons(tmp_path):
    make_class_tree(tmp_path / "d", {"ok": 2, "nok": 2})
    (tmp_path / "d/ok/notes.txt").write_text("hello")
    (tmp_path / "d/ok/noext").write_bytes(b"x")
    (tmp_path / "d/ok/empty.png").write_bytes(b"")
    (tmp_path / "d/nok/text.jpg").write_text("not really a jpeg")
    (tmp_path / "d/nok/cut.jpg").write_bytes(image_bytes(noise_image(5), "JPEG")[:200])
    ds = discover_dataset(tmp_path / "d")
    assert len(ds) == 4
    assert sorted(ds.skipped, key=lambda s: s.path) == [
        Skipped("nok/cut.jpg", "truncated or corrupt image data"),
        Skipped("nok/text.jpg", "not an image (or an unsupported format)"),
        Skipped("ok/empty.png", "empty file"),
        Skipped("ok/noext", "not an image file (no extension)"),
        Skipped("ok/notes.txt", "not an image file (.txt)"),
    ]


def test_os_litter_and_hidden_files_are_ignored_silently(tmp_path):
    make_class_tree(tmp_path / "d", {"ok": 1, "nok": 1})
    for name in ("ok/.DS_Store", "ok/Thumbs.db", "desktop.ini", "ok/._img0.png", "__MACOSX/ok/._a.png",
                 ".git/config", "nok/.hidden/x.png"):
        (tmp_path / "d" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "d" / name).write_bytes(b"junk")
    ds = discover_dataset(tmp_path / "d")
    assert ds.classes == ["nok", "ok"] and len(ds) == 2 and ds.skipped == []


def test_empty_class_folder_is_recorded(tmp_path):
    make_class_tree(tmp_path / "d", {"ok": 2, "nok": 2})
    (tmp_path / "d/dent").mkdir()
    (tmp_path / "d/crack").mkdir()
    (tmp_path / "d/crack/broken.png").write_bytes(b"")
    ds = discover_dataset(tmp_path / "d")
    assert ds.classes == ["nok", "ok"]
    assert ds.empty_classes == ["crack", "dent"]


def test_nothing_usable_raises(tmp_path):
    (tmp_path / "d/ok").mkdir(parents=True)
    (tmp_path / "d/ok/a.png").write_bytes(b"")
    with pytest.raises(InspectorError, match="No usable images.*empty file"):
        discover_dataset(tmp_path / "d")


def test_uppercase_extensions_non_ascii_names_and_exif(tmp_path):
    write_image(tmp_path / "d/ok/PHOTO.JPG", noise_image(1))
    write_image(tmp_path / "d/Kratzer_äöü/Kratzer_äöü_日本.png", noise_image(2))
    (tmp_path / "d/ok/phone.jpg").write_bytes(jpeg_with_orientation(60, 20, 6))
    ds = discover_dataset(tmp_path / "d")
    assert ds.classes == ["Kratzer_äöü", "ok"]
    phone = next(s for s in ds.samples if s.path.name == "phone.jpg")
    assert (phone.width, phone.height) == (20, 60)  # size as the model will see it


def test_zip_source_is_extracted_and_discovered(tmp_path):
    png = image_bytes(noise_image(1), "PNG")
    zpath = make_zip(tmp_path / "d.zip", {
        "dataset\\ok\\a.png": png, "dataset\\nok\\b.png": image_bytes(noise_image(2), "PNG"),
        "../evil.png": png, "__MACOSX/dataset/._a.png": b"x", "dataset/nok/readme.md": b"x",
    })
    ds = discover_dataset(zpath, extract_dir=tmp_path / "x")
    assert ds.classes == ["nok", "ok"]
    assert ds.root == tmp_path / "x/dataset"
    assert all(s.path.is_relative_to(tmp_path / "x") for s in ds.samples)
    assert [s.path for s in ds.skipped] == ["../evil.png", "nok/readme.md"]


def test_zip_source_without_extract_dir_uses_a_temp_folder(tmp_path):
    make_class_tree(tmp_path / "src", {"ok": 1, "nok": 1})
    entries = {p.relative_to(tmp_path / "src").as_posix(): p.read_bytes()
               for p in (tmp_path / "src").rglob("*.png")}
    ds = discover_dataset(str(make_zip(tmp_path / "d.zip", entries)))
    assert ds.classes == ["nok", "ok"] and all(p.exists() for p in ds.paths)


def test_uploaded_pairs(tmp_path):
    a = write_image(tmp_path / "u/a.png", noise_image(1))
    b = write_image(tmp_path / "u/b.png", noise_image(2))
    (tmp_path / "u/c.txt").write_text("x")
    bad = tmp_path / "u/bad.png"
    bad.write_bytes(b"")
    ds = discover_dataset([(a, "ok"), (str(b), "scratch"), (tmp_path / "u/c.txt", "ok"), (bad, "dent"),
                           (tmp_path / "u/missing.png", "ok")])
    assert ds.root is None
    assert ds.classes == ["ok", "scratch"] and ds.labels == [0, 1]
    assert ds.empty_classes == ["dent"]
    assert {s.reason for s in ds.skipped} == {"not an image file (.txt)", "empty file", "file not found"}


def test_subset_keeps_classes_so_labels_keep_their_meaning(tmp_path):
    make_class_tree(tmp_path / "d", {"a": 2, "b": 2})
    ds = discover_dataset(tmp_path / "d")
    sub = ds.subset([3, 2])
    assert isinstance(sub, LabeledDataset) and len(sub) == 2
    assert sub.classes == ["a", "b"] and sub.labels == [1, 1]
    assert sub.counts() == {"a": 0, "b": 2}
    assert sub.samples == [ds.samples[3], ds.samples[2]]


def test_sample_is_frozen(tmp_path):
    s = Sample(Path("a.png"), "ok", "0" * 64, 1, 1)
    with pytest.raises(AttributeError):
        s.label = "nok"  # type: ignore[misc]


@pytest.mark.skipif(not MAGNETIC_TILE.is_dir(), reason=f"shared dataset not present at {MAGNETIC_TILE}")
def test_magnetic_tile_dataset_is_discovered_completely():
    ds = discover_dataset(MAGNETIC_TILE)
    assert ds.classes == ["Blowhole", "Break", "Crack", "Fray", "Free", "Uneven"]
    assert len(ds) == sum(1 for p in MAGNETIC_TILE.rglob("*.jpg"))
    assert 1300 <= len(ds) <= 1400
    assert ds.skipped == [] and ds.empty_classes == []
