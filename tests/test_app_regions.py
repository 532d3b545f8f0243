"""Issue 22, the app side: regions drawn on the Data page (streamlit-drawable-canvas) stored as fractions
of the image in the workspace's regions.json, the defect size and the regions passed to every training
started from the Train page, and the worst windows of a large image's heatmap on the Inspect page."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from image_factories import image_bytes, noise_image

from inspector import InspectorError
from inspector.heatmap import Window, fit_within, shade_outside, worst_crops, worst_windows
from inspector.runtime.regions import Regions
from inspector.workspace import Workspace
from e2e.test_browser import ARTIFACTS, app_url, idle, images, page  # noqa: F401 - the browser fixtures reused
from test_app_transfer import env, no_exceptions, ws  # noqa: F401 - the workspace fixtures reused
from test_app_transfer import page as script

TIMEOUT = 60
RECT = {"type": "rect", "x0": 0.1, "y0": 0.2, "x1": 0.5, "y1": 0.6}
TRIANGLE = {"type": "polygon", "points": [[0.6, 0.6], [0.9, 0.6], [0.75, 0.9]]}


def png_of(mask: np.ndarray) -> bytes:
    return image_bytes(Image.fromarray(mask.astype(np.uint8) * 255))


@pytest.fixture
def parts(env) -> Workspace:  # noqa: F811 - the fixture imported above
    """The app's workspace (test_app_transfer's env) with 6 good parts and 2 defects."""
    env.import_images("ok", [(f"ok_{i}.png", image_bytes(noise_image(i, size=64))) for i in range(6)])
    env.import_images("scratch", [(f"s_{i}.png", image_bytes(noise_image(100 + i, size=64))) for i in range(2)])
    return env


# -- the worst windows of a heatmap ---------------------------------------------------------------------

def test_worst_windows_are_the_highest_peaks_without_overlap():
    heat = np.zeros((600, 2000), np.float32)
    heat[100, 150] = 0.9
    heat[120, 170] = 0.95  # beside the first: the same window, not a second one
    heat[590, 1990] = 0.7  # at the corner: the window moves inside the map
    heat[300, 1000] = 0.8
    windows = worst_windows(heat, k=3, side=128)
    assert [w.peak for w in windows] == pytest.approx([0.95, 0.8, 0.7])
    assert all(isinstance(w, Window) and w.side == 128 for w in windows)
    first, second, third = windows
    assert first.top <= 120 < first.top + 128 and first.left <= 170 < first.left + 128
    assert (second.top, second.left) == (300 - 64, 1000 - 64)  # centred on its peak
    assert (third.top, third.left) == (600 - 128, 2000 - 128)
    for i, a in enumerate(windows):
        for b in windows[i + 1:]:
            assert (a.top + a.side <= b.top or b.top + b.side <= a.top or a.left + a.side <= b.left
                    or b.left + b.side <= a.left)


def test_worst_windows_fit_small_and_flat_maps():
    assert worst_windows(np.zeros((40, 30)), k=3, side=256) == [Window(0, 0, 30, 0.0)]  # one fits, side 30
    flat = worst_windows(np.full((100, 400), 0.2), k=3, side=100)
    assert len(flat) == 3 and all(w.peak == pytest.approx(0.2) for w in flat)
    assert worst_windows(np.zeros((0, 0)), k=3) == [] and worst_windows(np.ones((8, 8)), k=0) == []
    assert worst_windows(np.full((8, 8), np.nan), k=1, side=4)[0].peak == 0.0


def test_worst_crops_are_cut_at_full_resolution_and_a_large_image_is_shrunk_for_the_screen():
    image = np.zeros((300, 3000, 3), np.uint8)
    heat = np.zeros((150, 1500), np.float32)  # half the image's size: stretched over it
    heat[75, 1000] = 1.0
    (crop, window), = worst_crops(image, heat, k=1, side=200)
    assert crop.shape == (200, 200, 3) and window.side == 200
    assert window.left <= 2000 < window.left + 200 and window.top <= 150 < window.top + 200
    assert fit_within(image, 1600).shape == (160, 1600, 3) and fit_within(image, 4000) is image


def test_shade_outside_darkens_only_what_is_not_scored():
    image = np.full((10, 10, 3), 200, np.uint8)
    scored = np.zeros((10, 10), bool)
    scored[:5] = True
    out = shade_outside(image, scored)
    assert (out[:5] == 200).all() and (out[5:] != 200).any() and out[5:, :, 1].max() < 100
    assert shade_outside(image, None) is image


# -- regions in the workspace ---------------------------------------------------------------------------

def test_regions_are_stored_beside_the_data_and_read_back(ws):  # noqa: F811 - the fixture imported above
    assert ws.regions().empty and not ws.regions_path.exists()
    ws.save_regions(Regions((RECT,), (TRIANGLE,)))
    assert ws.regions_path == ws.root / "regions.json" and ws.regions_path.is_file()
    assert ws.regions() == Regions((RECT,), (TRIANGLE,))
    assert json.loads(ws.regions_path.read_text())["roi"] == [RECT]
    ws.save_regions(Regions())  # nothing left: no file
    assert not ws.regions_path.exists()
    ws.save_regions(Regions((RECT,)))
    ws.clear_regions()
    assert ws.regions().empty


def test_mask_images_join_the_drawn_shapes(ws):  # noqa: F811 - the fixture imported above
    ws.save_regions(Regions((RECT,)))
    ignore = np.zeros((20, 40), bool)
    ignore[:, :10] = True
    regions = ws.save_region_mask("ignore", png_of(ignore))
    assert regions.roi == (RECT,) and regions.ignore_mask is not None
    stored = ws.regions()
    assert stored.ignore_mask is not None and stored.ignore_mask[:, :10].all() and not stored.ignore_mask[:, 10:].any()
    mask = stored.mask(100, 200)
    assert not mask[30:50, :50].any() and mask[30:50, 60:90].all()  # ignored left quarter, inside the roi
    with pytest.raises(InspectorError):
        ws.save_region_mask("roi", png_of(np.zeros((8, 8), bool)))  # all dark: marks nothing
    with pytest.raises(InspectorError):
        ws.save_region_mask("roi", b"not an image")
    assert ws.save_region_mask("ignore", None).ignore_mask is None and ws.regions() == Regions((RECT,))


def test_a_broken_regions_file_is_refused_in_words(ws):  # noqa: F811 - the fixture imported above
    ws.root.mkdir(parents=True)
    ws.regions_path.write_text("{not json")
    with pytest.raises(InspectorError):
        ws.regions()


# -- the canvas's drawing <-> regions ---------------------------------------------------------------------

def test_canvas_objects_become_fractions_of_the_image():
    from ui.regions import IGNORE_COLOUR, ROI_COLOUR, regions_from_drawing

    drawing = {"objects": [
        {"type": "Rect", "left": 39, "top": 29, "width": 200, "height": 90, "scaleX": 1, "scaleY": 1,
         "originX": "left", "originY": "top", "stroke": ROI_COLOUR, "strokeWidth": 2},  # its stroke straddles
        {"type": "Rect", "left": 0, "top": 0, "width": 50, "height": 40, "scaleX": 2, "scaleY": 1.5,
         "originX": "left", "originY": "top", "stroke": IGNORE_COLOUR, "strokeWidth": 0},  # resized in edit mode
        {"type": "Path", "path": [["M", 300, 200], ["L", 380, 200], ["L", 340, 280], ["z"]],
         "left": 299, "top": 199, "width": 80, "height": 80, "originX": "left", "originY": "top",
         "stroke": IGNORE_COLOUR, "strokeWidth": 2},
        {"type": "Path", "path": [["M", 10, 10], ["Q", 11, 11, 12, 12]], "stroke": IGNORE_COLOUR},  # a scribble
        {"type": "Circle", "left": 5, "top": 5, "radius": 3, "stroke": ROI_COLOUR},
    ]}
    regions = regions_from_drawing(drawing, width=400, height=300)
    assert regions.roi == ({"type": "rect", "x0": 0.1, "y0": 0.1, "x1": 0.6, "y1": 0.4},)
    rect, triangle = regions.ignore
    assert rect == {"type": "rect", "x0": 0.0, "y0": 0.0, "x1": 0.25, "y1": 0.2}
    assert triangle["points"] == [pytest.approx([0.75, 2 / 3], abs=1e-4), pytest.approx([0.95, 2 / 3], abs=1e-4),
                                  pytest.approx([0.85, 280 / 300], abs=1e-4)]


def test_a_polygon_moved_on_the_canvas_moves_its_corners():
    from ui.regions import IGNORE_COLOUR, regions_from_drawing

    path = [["M", 100, 100], ["L", 200, 100], ["L", 150, 200], ["z"]]
    drawn = {"type": "Path", "path": path, "left": 99, "top": 99, "width": 100, "height": 100, "originX": "left",
             "originY": "top", "strokeWidth": 2, "stroke": IGNORE_COLOUR}
    moved = dict(drawn, left=149, top=49)  # dragged 50 px right and 50 px up
    before = regions_from_drawing({"objects": [drawn]}, 400, 400).ignore[0]["points"]
    after = regions_from_drawing({"objects": [moved]}, 400, 400).ignore[0]["points"]
    assert before == [[0.25, 0.25], [0.5, 0.25], [0.375, 0.5]]
    assert after == [[0.375, 0.125], [0.625, 0.125], [0.5, 0.375]]


def test_stored_regions_round_trip_through_the_canvas():
    from ui.regions import canvas_size, drawing_from_regions, regions_from_drawing

    regions = Regions((RECT,), (TRIANGLE,))
    width, height = canvas_size(3000, 16000)  # a line-scan strip keeps its aspect ratio on the canvas
    assert width == 540 and abs(height - round(540 * 3000 / 16000)) <= 1
    back = regions_from_drawing(drawing_from_regions(regions, width, height), width, height)
    assert back.roi == regions.roi
    assert np.allclose(back.ignore[0]["points"], TRIANGLE["points"], atol=1e-4)


# -- the pages (AppTest) ------------------------------------------------------------------------------------

def test_data_page_shows_the_stored_regions_and_clears_them(parts):
    parts.save_regions(Regions((RECT,), (TRIANGLE,)))
    at = script("pages/1_Data.py").run()
    no_exceptions(at)
    assert any("1 region of interest, 1 region to ignore" in m.value for m in at.markdown)
    at.button(key="clear_regions").click().run()
    no_exceptions(at)
    assert parts.regions().empty


def test_every_training_started_from_the_train_page_gets_the_defect_size_and_the_regions(parts, monkeypatch):
    from inspector.jobs import BackgroundRunner

    started = []
    monkeypatch.setattr(BackgroundRunner, "submit_training",
                        lambda self, data, config, runs_dir: started.append(config))
    parts.save_regions(Regions((RECT,), (TRIANGLE,)))
    at = script("pages/2_Train.py").run()
    no_exceptions(at)
    at.radio(key="task").set_value("anomaly").run()
    at.number_input(key="defect_size").set_value(3.0).run()
    no_exceptions(at)
    words = next(c.value for c in at.caption if c.value.startswith("Scale: "))  # the task's choice, and why
    assert "a 3 px defect" in words and "1 region of interest, 1 region to ignore" in words
    at.button(key="train").click().run()
    no_exceptions(at)
    (config,) = started
    assert config.task == "anomaly" and config.defect_size == 3.0
    assert Regions.from_dict(config.regions) == Regions((RECT,), (TRIANGLE,))
    # A classifier reads tiles (the defect size) but not the regions: only the size is passed, and the page
    # says why the regions are not.
    at.radio(key="task").set_value("classification").run()
    assert not at.number_input(key="defect_size").disabled
    words = next(c.value for c in at.caption if c.value.startswith("Scale: "))
    assert "a 3 px defect" in words and "not used by classification runs" in words
    at.button(key="train").click().run()
    no_exceptions(at)
    assert started[-1].task == "classification" and started[-1].defect_size == 3.0 and started[-1].regions is None


# -- in a real browser: draw a rectangle on the canvas ------------------------------------------------------

@pytest.mark.e2e
@pytest.mark.slow
def test_a_rectangle_dragged_on_the_canvas_is_stored_as_fractions_of_the_image(tmp_path, app_url, page):  # noqa: F811
    workspace = Workspace(tmp_path / "workspace")
    workspace.import_images("ok", [("part.png", image_bytes(noise_image(3, size=64).resize((320, 240))))])
    page.goto(f"{app_url}/Data")
    page.get_by_role("heading", name="Where to look").wait_for()
    idle(page)
    canvas = page.locator("canvas").last  # Fabric.js draws on two stacked canvases: the upper one takes the mouse
    canvas.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    box = canvas.bounding_box()
    assert box is not None and box["width"] / box["height"] == pytest.approx(320 / 240, rel=0.01)
    page.mouse.move(box["x"] + 0.2 * box["width"], box["y"] + 0.25 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + 0.6 * box["width"], box["y"] + 0.75 * box["height"], steps=10)
    page.mouse.up()
    idle(page)
    page.get_by_text("Not saved yet").wait_for()
    page.get_by_role("button", name="Save the regions").click()
    idle(page)
    for _ in range(40):
        if workspace.regions_path.is_file():
            break
        page.wait_for_timeout(250)
    (roi,) = workspace.regions().roi
    assert roi["type"] == "rect" and workspace.regions().ignore == ()
    assert [roi["x0"], roi["y0"], roi["x1"], roi["y1"]] == pytest.approx([0.2, 0.25, 0.6, 0.75], abs=0.01)
    page.reload()  # drawn back from regions.json
    page.get_by_text("1 region of interest: 20% of the image is inspected.").wait_for()
    idle(page)
    page.locator("canvas").last.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "regions_drawn.png"))


def test_without_the_drawing_component_the_page_says_so_and_offers_masks(parts, monkeypatch):
    import ui.regions

    monkeypatch.setattr(ui.regions, "st_canvas", None)
    at = script("pages/1_Data.py").run()
    no_exceptions(at)
    assert any("cannot be loaded here" in i.value for i in at.info)
    assert at.button(key="use_roi_mask") is not None
