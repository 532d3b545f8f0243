"""Issue 21, the app side: another line's images (source/) and this line's unlabelled images
(unlabeled/) in the workspace, on the Data page with the shift meter, the transfer choice on the Train
page, and a transfer run's three figures on Compare (AppTest, tiny generated images, no training)."""
from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from image_factories import image_bytes, noise_image
from inspector import InspectorError
from inspector.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 60


def png(seed: int) -> bytes:
    return image_bytes(noise_image(seed, size=24), "PNG")


def zip_of(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace(tmp_path / "ws")


@pytest.fixture
def env(tmp_path, monkeypatch) -> Workspace:
    monkeypatch.setenv("INSPECTOR_WORKSPACE", str(tmp_path / "workspace"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.syspath_prepend(str(REPO))
    return Workspace(tmp_path / "workspace")


def page(name: str) -> AppTest:
    return AppTest.from_file(str(REPO / name), default_timeout=TIMEOUT)


def no_exceptions(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def fill_source(ws: Workspace, classes=("ok", "scratch"), n: int = 4, seed: int = 500) -> None:
    for k, label in enumerate(classes):
        ws.import_source_images(label, [(f"{label}_{i}.png", png(seed + 50 * k + i)) for i in range(n)])


# -- the workspace ------------------------------------------------------------------------------------

def test_source_images_go_to_their_own_class_folders_with_the_data_checks(ws):
    report = ws.import_source_images("../scratch", [("a.png", png(1)), ("b.png", png(1)), ("c.txt", b"no"),
                                                    ("d.png", png(2))])
    assert report.n_saved == 2 and report.n_copies == 1 and [s.path for s in report.skipped] == ["c.txt"]
    assert ws.source_classes() == {"scratch": 2}
    assert (ws.source_dir / "scratch" / "a.png").is_file()
    assert ws.classes() == {} and ws.n_images() == 0  # this line's labelled data is untouched
    assert ws.n_source() == 2 and [p.name for p in ws.source_images("scratch")] == ["a.png", "d.png"]
    assert ws.source_path() == str(ws.source_dir)
    # A copy of an image in the other line's class is skipped there, but the same image is welcome here.
    assert ws.import_source_images("scratch", [("again.png", png(1))]).n_saved == 0
    assert ws.import_images("scratch", [("a.png", png(1))]).n_saved == 1


def test_a_zip_of_the_other_lines_class_folders(ws):
    report = ws.import_source_zip(zip_of({"ok/1.png": png(1), "ok/2.png": png(2), "dent/3.png": png(3),
                                          "notes.txt": b"x"}))
    assert ws.source_classes() == {"dent": 1, "ok": 2}
    assert report.counts() == {"ok": 2, "dent": 1}
    again = ws.import_source_zip(zip_of({"ok/1.png": png(1), "dent/3.png": png(3)}))
    assert again.n_saved == 0 and again.n_copies == 2  # imported twice: nothing new
    dataset = ws.source_dataset()
    assert dataset is not None and dataset.classes == ["dent", "ok"] and len(dataset) == 3


def test_unlabelled_images_are_flat_whatever_the_zips_folders(ws):
    report = ws.import_unlabeled_zip(zip_of({"2024-05-01/img.png": png(1), "2024-05-02/img.png": png(2),
                                             "shift_b/cam1/other.png": png(3), "copy.png": png(1),
                                             "readme.txt": b"x"}))
    names = sorted(p.name for p in ws.unlabeled_images())
    assert names == ["img.png", "img_2.png", "other.png"]  # folder names are not classes; same names kept
    assert report.n_saved == 3 and report.n_copies == 1
    assert not [p for p in ws.unlabeled_dir.iterdir() if p.is_dir()]
    assert ws.import_unlabeled_images([("new.png", png(4)), ("dup.png", png(2))]).n_saved == 1
    assert ws.n_unlabeled() == 4 and ws.unlabeled_path() == str(ws.unlabeled_dir)
    assert len(ws.unlabeled_dataset()) == 4
    assert ws.source_path() is None and ws.source_classes() == {}


def test_a_zip_without_any_image_is_refused_in_words(ws):
    with pytest.raises(InspectorError):
        ws.import_unlabeled_zip(zip_of({"readme.txt": b"x"}))
    assert ws.n_unlabeled() == 0


def test_removal_and_empty_accessors(ws):
    assert ws.source_path() is None and ws.unlabeled_path() is None
    assert ws.source_dataset() is None and ws.unlabeled_dataset() is None
    fill_source(ws, n=2)
    ws.import_unlabeled_images([("u.png", png(9))])
    ws.delete_source_class("scratch")
    assert ws.source_classes() == {"ok": 2}
    with pytest.raises(InspectorError):
        ws.delete_source_class("scratch")
    assert ws.clear_source() == 2 and ws.source_path() is None and not ws.source_dir.exists()
    assert ws.clear_unlabeled() == 1 and ws.unlabeled_path() is None
    assert ws.clear_unlabeled() == 0


def test_the_data_fingerprint_ignores_the_other_folders(ws):
    ws.import_images("ok", [("a.png", png(1))])
    data, source, unlabeled = ws.fingerprint(), ws.fingerprint("source"), ws.fingerprint("unlabeled")
    fill_source(ws, n=1)
    ws.import_unlabeled_images([("u.png", png(9))])
    assert ws.fingerprint() == data == ws.fingerprint("data")
    assert ws.fingerprint("source") != source and ws.fingerprint("unlabeled") != unlabeled
    with pytest.raises(InspectorError):
        ws.fingerprint("runs")


def test_the_shift_is_measured_once_per_content(ws, monkeypatch):
    from inspector.evidence import line_shift
    from inspector.tasks.classification.transfer.shift import Shift

    calls = []

    def fake(source, target=None, unlabeled=None, **kwargs):
        calls.append((len(source), len(target) if target else 0, len(unlabeled) if unlabeled else 0))
        return Shift(0.9, "the lines differ clearly", {"ok": 0.8})

    monkeypatch.setattr(line_shift, "shift_between", fake)
    assert not line_shift.shift_ready(ws)
    fill_source(ws, n=2)
    assert not line_shift.shift_ready(ws)
    ws.import_unlabeled_images([(f"u{i}.png", png(100 + i)) for i in range(3)])
    assert line_shift.shift_ready(ws) and line_shift.cached_shift(ws) is None
    entry = line_shift.measure_line_shift(ws)
    assert entry["shift"]["domain_auroc"] == 0.9 and calls == [(4, 0, 3)]
    assert line_shift.cached_shift(ws)["shift"]["per_class"] == {"ok": 0.8}
    assert line_shift.cached_shift(Workspace(ws.root))["shift"]["words"] == "the lines differ clearly"  # on disk
    ws.import_images("ok", [("a.png", png(1))])
    assert line_shift.cached_shift(ws) is None  # new content: measured again


# -- the Data page ----------------------------------------------------------------------------------------

def test_data_page_adds_the_other_lines_images_and_unlabelled_ones_and_shows_the_shift(env, monkeypatch):
    from inspector.evidence import line_shift
    from inspector.tasks.classification.transfer.shift import Shift

    monkeypatch.setattr(line_shift, "shift_between",
                        lambda source, target=None, unlabeled=None, **kw: Shift(0.87, "the lines differ clearly: adapt",
                                                                               {"ok": 0.71}))
    env.import_images("ok", [(f"ok{i}.png", png(i)) for i in range(4)])
    at = page("pages/1_Data.py").run()
    no_exceptions(at)
    headers = texts(at.header)
    assert "Images from another line (source)" in headers and "Unlabelled images from this line" in headers
    assert not at.get("metric")  # nothing to compare yet

    at.selectbox(key="source_class").set_value("ok").run()
    uploader = next(u for u in at.get("file_uploader") if u.proto.id and "source_images" in u.proto.id)
    uploader.set_value([(f"s{i}.png", png(300 + i), "image/png") for i in range(5)]).run()
    at.button(key="add_source_images").click().run()
    no_exceptions(at)
    assert env.source_classes() == {"ok": 5}
    assert any("The other line: Saved 5 images into class 'ok'" in s for s in texts(at.success))
    assert any("**5 images** in 1 class: ok 5." in m for m in texts(at.markdown))

    zipped = zip_of({f"day{i % 2}/u{i}.png": png(600 + i) for i in range(6)})
    uploader = next(u for u in at.get("file_uploader") if u.proto.id and "unlabeled_zip" in u.proto.id)
    uploader.set_value([("u.zip", zipped, "application/zip")]).run()
    at.button(key="import_unlabeled_zip").click().run()
    no_exceptions(at)
    assert env.n_unlabeled() == 6
    assert "Imported 6 unlabelled images." in texts(at.success)
    assert any("**6 unlabelled images**." in m for m in texts(at.markdown))
    assert len(at.get("image")) >= 2  # thumbnails of both sections

    deadline = time.monotonic() + 30  # the shift is measured in the background, by itself
    while not at.get("metric"):
        assert time.monotonic() < deadline, "the shift meter never showed"
        time.sleep(0.3)
        at.run()
        no_exceptions(at)
    assert at.metric[0].value == "0.87"
    assert any("The lines differ clearly: adapt" in m for m in texts(at.markdown))
    per_class = next(df.value for df in at.dataframe if "shift (AUROC)" in df.value.columns)
    assert per_class.to_dict("records") == [{"class": "ok", "shift (AUROC)": 0.71}]  # both lines label 'ok'
    at.run()  # a rerun reads the stored figure at once: nothing is measured again
    assert at.metric[0].value == "0.87" and not at.get("progress")


# -- the Train page ------------------------------------------------------------------------------------------

@pytest.fixture
def submitted(monkeypatch):
    """Trainings the page starts are recorded, not run."""
    from inspector.jobs import BackgroundRunner

    calls = []

    def fake(self, data, config, runs_dir):
        calls.append((data, config))

    monkeypatch.setattr(BackgroundRunner, "submit_training", fake)
    return calls


def test_without_a_source_the_train_page_offers_no_transfer(env, submitted):
    env.import_images("ok", [(f"ok{i}.png", png(i)) for i in range(3)])
    env.import_images("dent", [(f"d{i}.png", png(50 + i)) for i in range(3)])
    env.import_unlabeled_images([("u.png", png(99))])  # unlabelled images alone change nothing
    at = page("pages/2_Train.py").run()
    no_exceptions(at)
    assert "2. Transfer from the other line" not in texts(at.header)
    assert not [r for r in at.radio if r.key == "transfer_strategy"]
    assert "coral" not in at.radio(key="strategy").options and "linear_probe" in at.radio(key="strategy").options
    at.button(key="train").click().run()
    no_exceptions(at)
    (_, config), = submitted
    assert config.source is None and config.unlabeled is None


def test_with_a_source_the_train_page_offers_the_transfer_methods_and_passes_the_folders(env, submitted):
    from inspector.tasks.classification.strategies import STRATEGIES, is_transfer

    env.import_images("ok", [(f"ok{i}.png", png(i)) for i in range(3)])
    env.import_images("scratch", [(f"s{i}.png", png(50 + i)) for i in range(3)])
    fill_source(env)
    env.import_unlabeled_images([(f"u{i}.png", png(700 + i)) for i in range(2)])
    at = page("pages/2_Train.py").run()
    no_exceptions(at)
    assert "2. Transfer from the other line" in texts(at.header)
    choice = at.radio(key="transfer_strategy")
    methods = [name for name in STRATEGIES if is_transfer(name) and name != "auto_transfer"]
    assert choice.options == ["auto", *methods] and "coral" in methods
    assert any("8 images in 2 classes" in c and "2 unlabelled images" in c for c in texts(at.caption))
    choice.set_value("coral").run()
    at.button(key="train").click().run()
    no_exceptions(at)
    (data, config), = submitted
    assert config.strategy == "coral" and len(data) == 6
    assert config.source == str(env.source_dir) and config.unlabeled == str(env.unlabeled_dir)

    at.toggle(key="use_source").set_value(False).run()  # this line's images only: as without a source
    assert not [r for r in at.radio if r.key == "transfer_strategy"]
    at.button(key="train").click().run()
    assert submitted[-1][1].source is None and submitted[-1][1].unlabeled is None


def test_with_only_the_other_lines_images_training_still_starts(env, submitted):
    fill_source(env, classes=("ok", "dent"))
    at = page("pages/2_Train.py").run()
    no_exceptions(at)
    assert any("No labelled images from this line" in i and "(dent, ok)" in i for i in texts(at.info))
    assert not at.button(key="train").disabled
    at.button(key="train").click().run()
    no_exceptions(at)
    (data, config), = submitted
    assert data is None and config.strategy == "auto" and config.source == str(env.source_dir)
    assert config.unlabeled is None


def test_the_other_lines_classes_must_share_a_name(env, submitted):
    env.import_images("ok", [(f"ok{i}.png", png(i)) for i in range(3)])
    env.import_images("dent", [(f"d{i}.png", png(50 + i)) for i in range(3)])
    fill_source(env, classes=("good", "bad"))
    at = page("pages/2_Train.py").run()
    no_exceptions(at)
    assert any("share none with this line's" in e for e in texts(at.error))
    assert at.button(key="train").disabled


# -- the Compare page -------------------------------------------------------------------------------------------

TRANSFER = {"method": "coral", "chosen_by": "target_cv", "score_name": "balanced_accuracy",
            "source_only": 0.62, "target_only": 0.81, "adapted": 0.9,
            "intervals": {"source_only": [0.5, 0.74], "target_only": [0.7, 0.9], "adapted": [0.82, 0.96]},
            "reason": "coral beats target-only by +9.0% balanced accuracy (95 % interval of the gain +2.0% to "
                      "+15.0%) on this line's labelled images", "scores": {"coral": 0.9}}


def fake_run(ws: Workspace, name: str, metrics: dict) -> None:
    from inspector import RunStore

    run = RunStore(ws.runs_dir).create({}, backbone="tf_efficientnet_lite0", strategy="auto", name=name)
    record = json.loads((run.path / "run.json").read_text())
    record.update(status="completed", summary={"val_accuracy": 0.9, "classes": ["ok", "scratch"], **metrics})
    (run.path / "run.json").write_text(json.dumps(record))


def test_compare_shows_the_three_figures_and_the_guards_decision(env):
    fake_run(env, "plain", {})
    fake_run(env, "carried", {"source": "/x/source", "n_source": 40, "n_unlabeled": 12, "transfer": TRANSFER,
                              "shift": {"domain_auroc": 0.87, "words": "differ", "per_class": {}}})
    at = page("pages/3_Compare.py").run()
    no_exceptions(at)
    assert "Carried over from another line" in texts(at.header)
    table = next(df.value for df in at.dataframe if "adapted" in df.value.columns)
    assert list(table["run"]) == ["carried"]  # only the transfer run
    row = table.iloc[0]
    assert (row["other line only"], row["this line only"], row["adapted"]) == ("62% (50%-74%)", "81% (70%-90%)",
                                                                               "90% (82%-96%)")
    assert row["kept"] == "coral" and "balanced accuracy" in row["chosen by"] and row["shift"] == "0.87"
    assert any("**carried**: kept **coral**: coral beats target-only" in m for m in texts(at.markdown))


def test_compare_without_labels_from_this_line_shows_dashes_and_the_label_free_score(env):
    block = {**TRANSFER, "chosen_by": "label_free_score", "score_name": "reverse_validation",
             "source_only": None, "target_only": None, "adapted": None,
             "intervals": {"source_only": None, "target_only": None, "adapted": None},
             "reason": "coral scored best by reverse validation"}
    fake_run(env, "unlabelled only", {"transfer": block})
    at = page("pages/3_Compare.py").run()
    no_exceptions(at)
    row = next(df.value for df in at.dataframe if "adapted" in df.value.columns).iloc[0]
    assert (row["other line only"], row["this line only"], row["adapted"]) == ("-", "-", "-")
    assert "reverse validation" in row["chosen by"] and "no labels" in row["chosen by"]


def test_a_run_that_kept_this_lines_images_says_so_in_words(env):
    fake_run(env, "guarded", {"transfer": {**TRANSFER, "method": "target_only",
                                           "reason": "the other line does not help here"}})
    at = page("pages/3_Compare.py").run()
    no_exceptions(at)
    row = next(df.value for df in at.dataframe if "adapted" in df.value.columns).iloc[0]
    assert row["kept"] == "this line only"
    assert any("kept **this line only**: the other line does not help here." in m for m in texts(at.markdown))
