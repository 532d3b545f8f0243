"""Issue 5, bad input: one battery of awkward files goes through the library, the CLI and the web
app's upload path (Workspace, what pages/1_Data.py calls). Unusual images are accepted and
converted; broken ones are skipped with a reason; nothing crashes and nothing lands outside the
workspace. Also: the upload limits and the server settings in .streamlit/config.toml."""
from __future__ import annotations

import dataclasses
import errno
import io
import json
import re
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from image_factories import (
    animated_gif,
    image_bytes,
    jpeg_with_orientation,
    make_zip,
    noise_image,
    png_with_claimed_size,
    ramp_16bit,
)
from reliability_tools import single_threaded

from inspector import workspace as workspace_module
from inspector._io import atomic_write_bytes
from inspector.cli import main
from inspector.data import discover_dataset, load_image
from inspector.errors import InspectorError, UnsafeArchiveError
from inspector.runs import RunStore, clean_name
from inspector.workspace import Workspace, safe_class_name, safe_file_name

REPO = Path(__file__).resolve().parents[1]
LONG_NAME = "Kratzer_äöü_日本_" + "x" * 150 + ".png"  # 176 bytes: fits a disk, not a short-name tool


def battery() -> dict[str, tuple[bytes, str | None]]:
    """File name -> (bytes, None when it must be accepted, else words of the skip reason)."""
    return {
        "PHOTO_UPPER.JPG": (image_bytes(noise_image(101), "JPEG"), None),
        "camera_16bit.tif": (image_bytes(ramp_16bit(4095, 64, 48), "TIFF"), None),
        "printer_cmyk.jpg": (image_bytes(noise_image(102).convert("CMYK"), "JPEG"), None),
        "cutout_rgba.png": (image_bytes(noise_image(103).convert("RGBA"), "PNG"), None),
        "palette.png": (image_bytes(noise_image(104).convert("P"), "PNG", transparency=0), None),
        "animated.gif": (animated_gif([(250, 0, 0), (0, 0, 250), (0, 250, 0)], (48, 48)), None),
        "phone_exif.jpg": (jpeg_with_orientation(64, 40, 6), None),
        LONG_NAME: (image_bytes(noise_image(105), "PNG"), None),
        "empty.jpg": (b"", "empty file"),
        "text_renamed.jpg": (b"this is a text file renamed to .jpg\n", "not an image"),
        "truncated.jpg": (image_bytes(noise_image(106), "JPEG")[:300], "truncated or corrupt"),
        "bomb.png": (png_with_claimed_size(40000, 40000), "image too large: 40000 x 40000"),
        "notes.txt": (b"operator notes", "not an image file (.txt)"),
    }


ACCEPTED = sorted(name for name, (_, reason) in battery().items() if reason is None)
REJECTED = {name: reason for name, (_, reason) in battery().items() if reason is not None}
UNSAFE = {"../evil.png": "unsafe path", "/abs/evil.png": "unsafe path"}


def battery_zip(path: Path) -> Path:
    """A dataset zip as Windows and macOS users make them, with every battery file inside."""
    good = image_bytes(noise_image(1), "PNG")
    entries: dict[str, bytes | None] = {f"parts/ok/ok{i}.png": image_bytes(noise_image(10 + i), "PNG")
                                        for i in range(4)}
    entries.update({f"parts/nok/nok{i}.png": image_bytes(noise_image(20 + i), "PNG") for i in range(3)})
    entries["parts\\nok\\from_windows.png"] = image_bytes(noise_image(30), "PNG")
    entries.update({f"parts/nok/{name}": data for name, (data, _) in battery().items()})
    entries["parts/empty_class/"] = None  # a class folder with no images
    entries.update({"__MACOSX/parts/ok/._ok0.png": b"litter", "parts/ok/Thumbs.db": b"litter"})
    entries.update({name: good for name in UNSAFE})
    return make_zip(path, entries)


def reasons_by_name(skipped) -> dict[str, str]:
    """File name -> skip reason, from Skipped records or the CLI's JSON dicts."""
    rows = [s if isinstance(s, dict) else dataclasses.asdict(s) for s in skipped]
    return {Path(row["path"]).name: row["reason"] for row in rows}


def assert_battery_skips(found: dict[str, str], expected: dict[str, str]) -> None:
    assert set(found) == {Path(name).name for name in expected}, found
    for name, words in expected.items():
        assert words in found[Path(name).name], (name, found[Path(name).name])


def everything_under(root: Path) -> list[Path]:
    return list(root.rglob("*"))


# -- the battery, three ways -------------------------------------------------------------
def test_battery_through_the_library(tmp_path):
    dataset = discover_dataset(battery_zip(tmp_path / "parts.zip"), extract_dir=tmp_path / "x")
    assert dataset.classes == ["nok", "ok"] and dataset.empty_classes == ["empty_class"]
    assert sorted(s.path.name for s in dataset.samples if s.label == "nok" and not s.path.name.startswith("nok")
                  and s.path.name != "from_windows.png") == ACCEPTED
    assert all(load_image(s.path).mode == "RGB" for s in dataset.samples)
    assert_battery_skips(reasons_by_name(dataset.skipped), {**REJECTED, **UNSAFE})


def test_battery_through_the_cli_train_json(tmp_path, capsys):
    archive = battery_zip(tmp_path / "parts.zip")
    with single_threaded():
        code = main(["train", str(archive), "--strategy", "linear_probe", "--image-size", "64", "--max-folds", "2",
                     "--runs-dir", str(tmp_path / "runs"), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == "completed"
    assert_battery_skips(reasons_by_name(result["skipped"]), {**REJECTED, **UNSAFE})
    assert "empty_class" in err and "warning:" in err  # the empty class folder is reported
    assert "Traceback" not in err
    summary = RunStore(tmp_path / "runs").list_runs()[0].summary
    assert summary.n_images == 4 + 4 + len(ACCEPTED) and summary.classes == ["nok", "ok"]


def test_battery_through_the_upload_path(tmp_path):
    ws = Workspace(tmp_path / "ws")
    files = [(name, data) for name, (data, _) in battery().items()]
    files.append(("日本語の長い名前" * 30 + ".PNG", image_bytes(noise_image(107), "PNG")))  # 722 bytes long
    saved, skipped = ws.add_images("nok", files)
    assert_battery_skips(reasons_by_name(skipped), REJECTED)
    assert len(saved) == len(ACCEPTED) + 1 and len(set(saved)) == len(saved)
    assert all(len(name.encode()) <= workspace_module.MAX_NAME_BYTES + 1 for name in saved)
    assert sorted(p.name for p in ws.images("nok")) == sorted(saved)
    assert all(load_image(p).mode == "RGB" for p in ws.images("nok"))
    assert all(p.resolve().is_relative_to(ws.root.resolve()) for p in everything_under(tmp_path))


def test_battery_zip_through_the_upload_path(tmp_path):
    ws = Workspace(tmp_path / "ws")
    counts, skipped = ws.add_zip(battery_zip(tmp_path / "parts.zip").read_bytes())
    assert counts == {"ok": 4, "nok": 4 + len(ACCEPTED)}
    assert_battery_skips(reasons_by_name(skipped), {**REJECTED, **UNSAFE})
    assert set(ws.classes()) == {"ok", "nok"}  # no empty_class, no __MACOSX
    assert not [p for p in everything_under(tmp_path) if p.name == "evil.png"]


def _zip_bomb(path: Path) -> Path:
    return make_zip(path, {"ok/a.png": image_bytes(noise_image(1), "PNG"), "ok/zeros.bmp": bytes(20 * 2**20)})


def _half_copied(path: Path) -> Path:
    data = battery_zip(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


BAD_ZIPS = {
    "zero-byte zip": (lambda p: (p.write_bytes(b""), p)[1], "empty (0 bytes)"),
    "zip bomb": (_zip_bomb, "zip bomb"),
    "half-copied zip": (_half_copied, "damaged"),
}


@pytest.mark.parametrize("case", sorted(BAD_ZIPS))
def test_bad_zips_give_one_clear_error_on_every_path(case, tmp_path, capsys):
    make, words = BAD_ZIPS[case]
    archive = make(tmp_path / "upload.zip")
    with pytest.raises(InspectorError, match=re.escape(words)):
        discover_dataset(archive, extract_dir=tmp_path / "lib")
    assert main(["train", str(archive), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and words in err[-1] and "Traceback" not in "\n".join(err)
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(InspectorError, match=re.escape(words)):
        ws.add_zip(archive.read_bytes())
    assert ws.classes() == {} and not (tmp_path / "runs").exists()


# -- upload limits -------------------------------------------------------------------------
def test_server_settings_limit_uploads_keep_xsrf_and_listen_on_localhost(monkeypatch):
    from streamlit import config

    monkeypatch.chdir(REPO)  # read .streamlit/config.toml the way `streamlit run app.py` does
    config.get_config_options(force_reparse=True)
    assert config.get_where_defined("server.maxUploadSize") == str(REPO / ".streamlit" / "config.toml")
    assert config.get_option("server.address") == "localhost"
    assert config.get_option("server.enableXsrfProtection") is True
    assert config.get_option("server.maxUploadSize") == workspace_module.MAX_UPLOAD_MB  # enforced twice


def png(seed: int) -> bytes:
    return image_bytes(noise_image(seed), "PNG")


def test_too_many_files_in_one_upload_are_refused_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(workspace_module, "MAX_FILES_PER_UPLOAD", 3)
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(InspectorError, match="4 files in one upload; the limit is 3"):
        ws.add_images("ok", [(f"{i}.png", png(i)) for i in range(4)])
    assert ws.classes() == {}
    assert ws.add_images("ok", [(f"{i}.png", png(i)) for i in range(3)])[0] == ["0.png", "1.png", "2.png"]


def test_too_many_bytes_in_one_upload_are_refused_before_writing(tmp_path, monkeypatch):
    files = [(f"{i}.png", png(i)) for i in range(3)]
    monkeypatch.setattr(workspace_module, "MAX_UPLOAD_TOTAL_BYTES", sum(len(d) for _, d in files) - 1)
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(InspectorError, match="the limit is"):
        ws.add_images("ok", files)
    assert ws.classes() == {}


def test_one_file_over_the_size_limit_is_skipped_the_rest_saved(tmp_path, monkeypatch):
    small, big = png(1), image_bytes(noise_image(2, size=256), "PNG")
    monkeypatch.setattr(workspace_module, "MAX_UPLOAD_BYTES", len(small) + 10)
    saved, skipped = Workspace(tmp_path / "ws").add_images("ok", [("small.png", small), ("big.png", big)])
    assert saved == ["small.png"]
    assert [s.path for s in skipped] == ["big.png"] and "file too large" in skipped[0].reason


def test_zip_over_the_size_or_file_count_limit_is_refused(tmp_path, monkeypatch):
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as zf:
        for i in range(4):
            zf.writestr(f"ok/{i}.png", png(i))
    ws = Workspace(tmp_path / "ws")
    monkeypatch.setattr(workspace_module, "MAX_FILES_PER_UPLOAD", 3)
    with pytest.raises(UnsafeArchiveError, match="4 files; the limit is 3"):
        ws.add_zip(data.getvalue())
    monkeypatch.setattr(workspace_module, "MAX_UPLOAD_BYTES", 100)
    with pytest.raises(InspectorError, match="The zip is .* the limit is"):
        ws.add_zip(data.getvalue())
    assert ws.classes() == {}


def test_pixel_limit_applies_to_uploads(tmp_path):
    saved, skipped = Workspace(tmp_path / "ws").add_images("ok", [("huge.png", png_with_claimed_size(10000, 8100))])
    assert saved == [] and skipped[0].reason == "image too large: 10000 x 8100 pixels (limit 80 MP; raise it with --max-megapixels or INSPECTOR_MAX_MEGAPIXELS)"


# -- names from users never become paths outside the workspace ---------------------------------
EVIL_NAMES = ["..", "../../outside", "/etc/passwd", "a/../../b", "..\\..\\win", "nul\x00byte", "CON", "NUL",
              "com1", "LPT1", "con.png", " ../ ", "😀" * 80, "x" * 300, "C:\\Windows\\System32"]
WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def _is_safe_component(name: str) -> bool:
    return (name not in ("", ".", "..") and not name.startswith(".") and not set(name) & set("/\\\x00:")
            and name.split(".")[0].strip().upper() not in WINDOWS_DEVICES and len(name.encode()) <= 255)


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=300))
def test_any_class_or_file_name_becomes_one_safe_folder_entry(name):
    assert _is_safe_component(safe_file_name(name))
    try:
        cleaned = safe_class_name(name)
    except InspectorError as exc:
        assert "cannot be used as a class name" in str(exc)
    else:
        assert _is_safe_component(cleaned)


def _try(action, *args):
    """The action's result, or None when it refused the name (refusing is fine; escaping is not)."""
    try:
        return action(*args)
    except InspectorError:
        return None


def test_class_operations_with_hostile_names_stay_inside_the_workspace(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.add_images("ok", [("a.png", png(1)), ("b.png", png(2))])
    for evil in EVIL_NAMES:
        _try(ws.create_class, evil)
        _try(ws.add_images, evil, [(evil + ".png", png(3))])
        moved = _try(ws.move_image, "ok", "a.png", evil)
        if moved:
            ws.move_image(safe_class_name(evil), moved, "ok")
        renamed = _try(ws.rename_class, "ok", evil)
        if renamed:
            ws.rename_class(renamed, "ok")
        _try(ws.merge_classes, [], evil)
    made = set(everything_under(tmp_path)) - {ws.root, ws.data_dir}
    assert [p for p in made if not p.resolve().is_relative_to(ws.data_dir.resolve())] == []
    assert all(_is_safe_component(p.name) for p in everything_under(ws.data_dir))
    assert ws.n_images() >= 2  # nothing was lost on the way


def test_run_names_and_ids_from_users_never_become_paths(tmp_path):
    store = RunStore(tmp_path / "runs")
    run = store.create({}, backbone="../../evil\\CON", strategy="a/b\x00", name="../../etc/passwd")
    assert run.path.parent == store.root and _is_safe_component(run.run_id)
    for evil in EVIL_NAMES:
        store.rename(run.run_id, evil)
        assert store.list_runs()[0].name == clean_name(evil)  # display text in run.json only
    assert [p.name for p in store.root.iterdir()] == [run.run_id]  # renaming never touches folders
    assert sorted(p.name for p in run.path.iterdir()) == ["config.json", "run.json"]
    for evil in ["..", "../runs", "a/b", "a\\b", "x\x00", "", ".hidden"]:
        with pytest.raises(InspectorError, match="not a valid run id"):
            store.get(evil)
    assert list(tmp_path.iterdir()) == [store.root]


def test_a_name_too_long_for_the_disk_is_a_plain_error_not_a_crash(tmp_path):
    with pytest.raises(InspectorError, match="too long") as err:
        atomic_write_bytes(tmp_path / ("ä" * 200), b"x")
    assert err.value.errno == errno.ENAMETOOLONG and list(tmp_path.iterdir()) == []
