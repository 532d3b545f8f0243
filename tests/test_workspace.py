"""The on-disk workspace: safe names, atomic uploads, class management, zip import, sample data."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from image_factories import image_bytes, noise_image
from inspector.errors import InspectorError
from inspector.workspace import Workspace, default_workspace_root, safe_class_name, safe_file_name


def png(seed: int) -> bytes:
    return image_bytes(noise_image(seed), "PNG")


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace(tmp_path / "ws")


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# -- names --------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, expected", [
    ("scratch", "scratch"),
    ("  dent  ", "dent"),
    ("../evil", "evil"),
    ("a/b\\c", "a_b_c"),
    ("nul\x00byte", "nulbyte"),
    ("CON", "_CON"),
    ("com1", "_com1"),
    ("LPT9.txt", "_LPT9.txt"),
    ("trailing. . ", "trailing"),
    ("...hidden", "hidden"),
    ("Kratzer ä", "Kratzer ä"),
])
def test_safe_class_name(raw, expected):
    assert safe_class_name(raw) == expected


@pytest.mark.parametrize("raw", ["", "  ", "..", ".", "/", "\\\\", "\x00", "...", "???"])
def test_unusable_class_names_are_refused(raw):
    with pytest.raises(InspectorError, match="class name"):
        safe_class_name(raw)


def test_long_class_name_is_cut():
    assert len(safe_class_name("x" * 500)) == 64


@pytest.mark.parametrize("raw, expected", [
    ("photo.JPG", "photo.jpg"),
    ("C:\\fakepath\\part 1.png", "part 1.png"),
    ("../../etc/passwd.png", "passwd.png"),
    ("..", "image"),
    ("aux.png", "_aux.png"),
    ("bad\x00name.png", "badname.png"),
    ("name. .png", "name.png"),
    (".png", "png"),
])
def test_safe_file_name(raw, expected):
    assert safe_file_name(raw) == expected


def test_long_file_name_keeps_its_extension():
    name = safe_file_name("y" * 1000 + ".jpeg")
    assert name.endswith(".jpeg") and len(name) <= 120


def test_workspace_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("INSPECTOR_WORKSPACE", str(tmp_path / "here"))
    assert default_workspace_root() == tmp_path / "here"
    assert Workspace().data_dir == tmp_path / "here" / "data"
    monkeypatch.delenv("INSPECTOR_WORKSPACE")
    assert default_workspace_root() == Path.home() / "DefectInspector"


# -- uploads ------------------------------------------------------------------------------
def test_empty_workspace(ws):
    assert ws.classes() == {}
    assert ws.dataset() is None
    assert not ws.root.exists()  # reading creates nothing


def test_upload_saves_valid_images_and_skips_bad_ones(ws):
    saved, skipped = ws.add_images("ok", [("a.png", png(1)), ("broken.png", b"not an image"),
                                          ("notes.txt", b"hello"), ("empty.jpg", b"")])
    assert saved == ["a.png"]
    assert {s.path for s in skipped} == {"broken.png", "notes.txt", "empty.jpg"}
    assert all(s.reason for s in skipped)
    assert files_under(ws.data_dir) == {"ok/a.png"}


def test_duplicate_names_in_one_upload_do_not_overwrite(ws):
    saved, _ = ws.add_images("ok", [("a.png", png(1)), ("a.png", png(2)), ("A.PNG", png(3))])
    assert saved == ["a.png", "a_2.png", "A_3.png"] or len(set(saved)) == 3
    assert len(ws.images("ok")) == 3
    saved, _ = ws.add_images("ok", [("a.png", png(4))])
    assert saved != ["a.png"] and len(ws.images("ok")) == 4


def test_upload_names_cannot_escape_the_workspace(ws, tmp_path):
    ws.add_images("../../outside", [("../../../escape.png", png(1))])
    ws.add_images("ok", [("/abs/path/x.png", png(2)), ("..\\..\\win.png", png(3))])
    assert not (tmp_path / "outside").exists() and not (tmp_path / "escape.png").exists()
    assert all(p.resolve().is_relative_to(ws.data_dir.resolve()) for p in ws.root.rglob("*"))
    assert files_under(ws.data_dir) == {"outside/escape.png", "ok/x.png", "ok/win.png"}


def test_uploads_leave_no_temporary_files(ws):
    ws.add_images("ok", [(f"{i}.png", png(i)) for i in range(5)])
    assert not [p for p in ws.data_dir.rglob("*") if p.name.startswith(".")]


def test_dataset_reads_the_workspace(ws):
    ws.add_images("ok", [(f"ok{i}.png", png(i)) for i in range(3)])
    ws.add_images("scratch", [(f"s{i}.png", png(10 + i)) for i in range(2)])
    ws.create_class("empty")
    assert ws.classes() == {"empty": 0, "ok": 3, "scratch": 2}
    dataset = ws.dataset()
    assert dataset.counts() == {"ok": 3, "scratch": 2}
    assert dataset.empty_classes == ["empty"]


# -- classes ------------------------------------------------------------------------------
def test_class_management(ws):
    ws.add_images("ok", [("a.png", png(1))])
    ws.add_images("scrach", [("a.png", png(2)), ("b.png", png(3))])
    assert ws.create_class("dent") == "dent"
    with pytest.raises(InspectorError, match="already exists"):
        ws.create_class("dent")
    assert ws.rename_class("scrach", "scratch") == "scratch"
    with pytest.raises(InspectorError, match="merge"):
        ws.rename_class("scratch", "ok")
    assert ws.merge_classes(["scratch", "dent"], "defect") == 2
    assert ws.classes() == {"defect": 2, "ok": 1}
    ws.delete_class("defect")
    assert ws.classes() == {"ok": 1}
    with pytest.raises(InspectorError, match="no class"):
        ws.delete_class("defect")


def test_merge_keeps_files_with_the_same_name(ws):
    ws.add_images("a", [("x.png", png(1))])
    ws.add_images("b", [("x.png", png(2))])
    ws.merge_classes(["a", "b"], "c")
    assert len(ws.images("c")) == 2


def test_move_and_delete_images(ws):
    ws.add_images("ok", [("a.png", png(1)), ("b.png", png(2))])
    ws.add_images("scratch", [("a.png", png(3))])
    new_name = ws.move_image("ok", "a.png", "scratch")
    assert new_name == "a_2.png"
    assert [p.name for p in ws.images("scratch")] == ["a.png", "a_2.png"]
    ws.delete_image("ok", "b.png")
    assert ws.classes() == {"ok": 0, "scratch": 2}
    with pytest.raises(InspectorError):
        ws.delete_image("ok", "../scratch/a.png")
    assert len(ws.images("scratch")) == 2


# -- zip and sample data --------------------------------------------------------------------
def make_zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_import(ws):
    data = make_zip({"parts/ok/1.png": png(1), "parts/ok/2.png": png(2), "parts/dent/1.png": png(3),
                     "parts/dent/bad.png": b"garbage", "parts/readme.txt": b"hi", "../evil/x.png": png(4)})
    counts, skipped = ws.add_zip(data)
    assert counts == {"ok": 2, "dent": 1}
    assert ws.classes() == {"dent": 1, "ok": 2}
    assert any("bad.png" in s.path for s in skipped)


def test_zip_that_is_not_a_zip(ws):
    with pytest.raises(InspectorError):
        ws.add_zip(b"this is no zip")


def test_load_sample_data(ws, tmp_path):
    source = tmp_path / "sample"
    for label in ("ok", "dent"):
        (source / "train" / label).mkdir(parents=True)
        for i in range(2):
            (source / "train" / label / f"{label}_{i}.png").write_bytes(png(hash(label) % 100 + i))
    (source / "new_parts").mkdir()
    assert ws.load_sample_data(source) == 4
    assert ws.classes() == {"dent": 2, "ok": 2}
    assert ws.load_sample_data(source) == 0  # idempotent
