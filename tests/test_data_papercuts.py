"""Issue 20, the Data side: what a new user met in the browser, each fixed where it was made.

1. an empty class is reported at once (the data check follows every change of the data folder);
2. a deleted class is gone at once, in every session (no stale cached check);
3. re-importing images already there skips the exact copies (or keeps them, by choice) and says so;
   the duplicates warning offers to remove the copies in one click;
4. "Load good parts only" adds what it promises, or says why not;
5. no green "Saved 0 images", and "1 image", never "1 images".
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from image_factories import image_bytes, noise_image
from inspector import validate_dataset
from inspector.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 60


def png(seed: int) -> bytes:
    return image_bytes(noise_image(seed), "PNG")


def zip_of(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


TWO_CLASSES = {f"{label}/{label}_{i:02d}.png": png(seed + i)
               for label, seed in (("crack", 100), ("dent", 200)) for i in range(3)}


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace(tmp_path / "ws")


@pytest.fixture
def sample(tmp_path) -> Path:
    """A tiny sample set shaped like the bundled one: train/ok and train/dent, plus good_parts/ok whose
    file names are the same as train/ok's but whose photos are different (as in sample_data/)."""
    root = tmp_path / "sample"
    for part, label, seed, n in (("train", "ok", 0, 3), ("train", "dent", 10, 3), ("good_parts", "ok", 50, 5)):
        (root / part / label).mkdir(parents=True)
        for i in range(n):
            (root / part / label / f"{label}_{i:02d}.png").write_bytes(png(seed + i))
    (root / "new_parts").mkdir()
    return root


@pytest.fixture
def env(tmp_path, monkeypatch, sample) -> Workspace:
    monkeypatch.setenv("INSPECTOR_WORKSPACE", str(tmp_path / "workspace"))
    monkeypatch.setenv("INSPECTOR_SAMPLE_DATA", str(sample))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.syspath_prepend(str(REPO))
    return Workspace(tmp_path / "workspace")


def page(name: str) -> AppTest:
    return AppTest.from_file(str(REPO / name), default_timeout=TIMEOUT)


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def no_exceptions(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


# -- 1 and 2: the data check follows the data folder ---------------------------------------------------

def test_fingerprint_changes_with_every_change_of_the_data_even_an_empty_class(ws):
    ws.add_images("ok", [("a.png", png(1))])
    before = ws.fingerprint()
    assert ws.fingerprint() == before  # nothing changed: the cache can be used
    ws.create_class("pit")
    with_empty = ws.fingerprint()
    assert with_empty != before
    ws.delete_class("pit")
    assert ws.fingerprint() != with_empty
    renamed = ws.fingerprint()
    ws.rename_class("ok", "good")
    assert ws.fingerprint() != renamed


def test_an_empty_class_is_reported_by_the_check(ws):
    ws.add_images("ok", [(f"{i}.png", png(i)) for i in range(2)])
    ws.add_images("dent", [(f"{i}.png", png(10 + i)) for i in range(2)])
    ws.create_class("pit")
    report = validate_dataset(ws.dataset())
    (empty,) = [f for f in report.findings if f.code == "empty_class"]
    assert empty.level == "warning" and "'pit'" in empty.message and "left out of training" in empty.message


def test_an_empty_class_shows_at_once_and_a_deleted_one_goes_at_once_in_every_session(env):
    env.add_images("ok", [(f"ok{i}.png", png(i)) for i in range(3)])
    env.add_images("dent", [(f"dent{i}.png", png(10 + i)) for i in range(3)])
    at = page("pages/1_Data.py").run()  # the check is computed (and cached) once
    assert any("Ready to train: 6 images in 2 classes" in s for s in texts(at.success))

    at.text_input(key="create_name").input("pit").run()
    at.button(key="create_class").click().run()
    no_exceptions(at)
    assert env.classes() == {"dent": 3, "ok": 3, "pit": 0}
    warnings = texts(at.warning)
    assert any("'pit'" in w and "left out of training" in w for w in warnings), warnings
    assert any("2 classes" in s and "'pit'" in s for s in texts(at.success)), texts(at.success)
    home = page("app.py").run()
    assert any("'pit'" in w and "left out of training" in w for w in texts(home.warning))

    at.selectbox(key="delete_class_name").set_value("pit").run()
    at.checkbox(key="delete_class_sure").check().run()
    at.button(key="delete_class").click().run()
    no_exceptions(at)
    assert env.classes() == {"dent": 3, "ok": 3} and not (env.data_dir / "pit").exists()
    assert not any("pit" in w for w in texts(at.warning))
    fresh = page("pages/1_Data.py").run()  # a new browser session: the process-wide cache must not bring it back
    assert not any("pit" in m for m in texts(fresh.warning) + texts(fresh.success))
    assert fresh.selectbox(key="delete_class_name").options == ["dent", "ok"]
    for name in ("app.py", "pages/2_Train.py"):
        other = page(name).run()
        no_exceptions(other)
        assert not any("pit" in m for m in texts(other.warning) + texts(other.markdown) + texts(other.caption))


# -- 3: re-importing images already there ---------------------------------------------------------------

def test_exact_copies_are_found_before_saving_and_skipped_by_default(ws):
    first = ws.import_zip(zip_of(TWO_CLASSES))
    assert first.counts() == {"crack": 3, "dent": 3} and first.n_copies == 0
    on_disk = files_under(ws.data_dir)
    again = ws.import_zip(zip_of({f"train/{name}": data for name, data in TWO_CLASSES.items()}))
    assert again.n_saved == 0 and again.copies == {"crack": 3, "dent": 3}
    assert files_under(ws.data_dir) == on_disk  # no crack_00_2.png
    # a new photo among the copies is saved; a copy inside the same upload is one copy too
    mixed = ws.import_images("crack", [("crack_00.png", TWO_CLASSES["crack/crack_00.png"]),
                                       ("new.png", png(999)), ("new_again.png", png(999))])
    assert mixed.saved == {"crack": ["new.png"]} and mixed.n_copies == 2 and mixed.n_new == 1


def test_exact_copies_can_be_kept_and_then_removed_in_one_step(ws):
    ws.import_zip(zip_of(TWO_CLASSES))
    kept = ws.import_zip(zip_of(TWO_CLASSES), duplicates="keep")
    assert kept.n_saved == 6 and kept.n_copies == 6 and kept.n_new == 0
    assert "crack/crack_00_2.png" in files_under(ws.data_dir)
    copies = ws.exact_copies()
    assert sorted(p.name for p in copies) == sorted(f"{label}_{i:02d}_2.png" for label in ("crack", "dent")
                                                    for i in range(3))
    assert ws.remove_exact_copies() == 6
    assert files_under(ws.data_dir) == set(TWO_CLASSES)  # one of each kept: the originals
    assert ws.exact_copies() == [] and ws.remove_exact_copies() == 0


def test_the_same_image_in_another_class_is_not_a_copy_to_skip(ws):
    ws.add_images("ok", [("a.png", png(1))])
    report = ws.import_images("dent", [("a.png", png(1))])
    assert report.saved == {"dent": ["a.png"]} and report.n_copies == 0  # a label conflict: the check says so


def test_unknown_duplicate_choice_is_refused(ws):
    from inspector.errors import InspectorError

    with pytest.raises(InspectorError, match="skip or keep"):
        ws.import_images("ok", [("a.png", png(1))], duplicates="maybe")


def test_data_page_importing_a_zip_twice_skips_the_copies_and_says_so(env):
    at = page("pages/1_Data.py").run()
    at.get("file_uploader")[1].set_value([("parts.zip", zip_of(TWO_CLASSES), "application/zip")]).run()
    at.button(key="import_zip").click().run()
    no_exceptions(at)
    assert any("Imported 6 images (crack 3, dent 3)" in s for s in texts(at.success)), texts(at.success)
    on_disk = files_under(env.data_dir)

    nested = zip_of({f"train/{name}": data for name, data in TWO_CLASSES.items()})
    at.get("file_uploader")[1].set_value([("parts.zip", nested, "application/zip")]).run()
    at.button(key="import_zip").click().run()
    no_exceptions(at)
    assert files_under(env.data_dir) == on_disk
    assert not any("Imported" in s for s in texts(at.success))  # nothing saved: nothing green
    assert any("Nothing new" in i and "6 images" in i and "already" in i for i in texts(at.info)), texts(at.info)
    assert not any("exact cop" in w for w in texts(at.warning))  # no copies, so no duplicates box

    at.get("file_uploader")[1].set_value([("more.zip", zip_of({**TWO_CLASSES, "crack/new.png": png(7)}),
                                           "application/zip")]).run()
    at.button(key="import_zip").click().run()
    assert any("Imported 1 new image (crack 1); 6 were skipped as already present" in s
               for s in texts(at.success)), texts(at.success)
    assert files_under(env.data_dir) == on_disk | {"crack/new.png"}


def test_data_page_keeps_copies_on_request_and_removes_them_in_one_click(env):
    env.import_zip(zip_of(TWO_CLASSES))
    at = page("pages/1_Data.py").run()
    at.radio(key="duplicates").set_value("keep").run()
    at.get("file_uploader")[1].set_value([("parts.zip", zip_of(TWO_CLASSES), "application/zip")]).run()
    at.button(key="import_zip").click().run()
    no_exceptions(at)
    assert any("Imported 6 images" in s and "6 of them are exact copies" in s for s in texts(at.success))
    assert len(env.images("crack")) == 6
    assert any("6 images are exact copies" in w for w in texts(at.warning)), texts(at.warning)
    remove = at.button(key="remove_copies")
    assert remove.label == "Remove the 6 exact copies"
    remove.click().run()
    no_exceptions(at)
    assert files_under(env.data_dir) == set(TWO_CLASSES)
    assert any("Removed 6 exact copies" in s for s in texts(at.success))
    assert not any("exact cop" in w for w in texts(at.warning))


# -- 4: the good parts ----------------------------------------------------------------------------------

def test_good_parts_with_the_same_names_as_the_labelled_sample_are_all_added(ws, sample):
    assert ws.load_sample_data(sample) == 6
    assert ws.sample_images("good_parts", sample) == {"ok": 5}
    report = ws.import_sample_data(sample, part="good_parts")
    assert report.n_saved == 5 and report.n_copies == 0  # different photos: same names are no reason to skip
    assert ws.classes() == {"dent": 3, "ok": 8}
    again = ws.import_sample_data(sample, part="good_parts")
    assert again.n_saved == 0 and again.copies == {"ok": 5}


def test_home_good_parts_add_what_the_button_promises_and_say_why_otherwise(env):
    at = page("app.py").run()
    good = at.button(key="load_good_parts")
    assert "5 photos of good parts (ok 5)" in good.help
    at.button[0].click().run()  # the labelled sample first, as the new user did
    assert any("Added 6 sample images" in s for s in texts(at.success)), texts(at.success)
    at.button(key="load_good_parts").click().run()
    no_exceptions(at)
    (message,) = texts(at.success)
    assert "Added 5 photos of good parts (ok 5)" in message
    assert "'dent'" in message and "only" in message  # which class training with good parts leaves out
    assert env.classes() == {"dent": 3, "ok": 8}
    at.button(key="load_good_parts").click().run()
    assert not at.success
    assert any("The 5 photos of good parts are already in the workspace" in i for i in texts(at.info))


# -- 5: no green zero, and words that agree with their numbers ----------------------------------------

def test_words_agree_with_their_numbers():
    from ui.words import count, listing

    assert count(1, "image") == "1 image" and count(2, "image") == "2 images" and count(0, "image") == "0 images"
    assert count(3, "class") == "3 classes" and count(2, "exact copy") == "2 exact copies"
    assert count(1, "entry") == "1 entry" and count(1200, "file") == "1,200 files"
    assert listing(["a"]) == "'a'" and listing(["a", "b", "c"]) == "'a', 'b' and 'c'"


def test_no_success_when_nothing_was_saved_and_one_image_is_one_image(env):
    at = page("pages/1_Data.py").run()
    at.text_input(key="upload_new_class").input("ok").run()
    at.get("file_uploader")[0].set_value([("broken.png", b"not an image", "image/png")]).run()
    assert at.button(key="add_images").label == "Add 1 image to 'ok'"
    at.button(key="add_images").click().run()
    no_exceptions(at)
    assert not any("Saved" in s for s in texts(at.success)), texts(at.success)
    assert any(w.startswith("1 file was not added") and "broken.png" in w for w in texts(at.warning))

    at.selectbox(key="upload_class").set_value("ok").run()
    at.get("file_uploader")[0].set_value([("a.png", png(1), "image/png")]).run()
    at.button(key="add_images").click().run()
    assert any(s.startswith("Saved 1 image into class 'ok'") for s in texts(at.success)), texts(at.success)
    at.get("file_uploader")[0].set_value([("a.png", png(1), "image/png")]).run()
    at.button(key="add_images").click().run()
    assert not at.success
    assert any("the image is already in class 'ok'" in i for i in texts(at.info)), texts(at.info)
    assert [p.name for p in env.images("ok")] == ["a.png"]


def test_validation_messages_agree_with_their_numbers(ws):
    ws.add_images("ok", [("a.png", png(1)), ("b.png", png(1)), ("c.png", png(2))])
    ws.add_images("dent", [("a.png", png(3)), ("b.png", png(4))])
    report = validate_dataset(ws.dataset())
    (dups,) = [f for f in report.findings if f.code == "duplicates"]
    assert dups.message.startswith("1 image is an exact copy of another image")
    assert not any("(s)" in f.message for f in report.findings)
