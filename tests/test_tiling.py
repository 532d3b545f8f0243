"""Tiles at one pixel scale, regions to inspect and ignore, and the scale chosen from the defect size
(inspector/runtime/tiling.py, inspector/runtime/regions.py, inspector/scale.py), on generated large
images with a defect a few pixels across."""
from __future__ import annotations

import numpy as np
import pytest

from inspector.errors import InspectorError
from inspector.runtime.regions import Regions, read_mask_image
from inspector.runtime.tiling import ImageMaps, model_inputs, stitch, tile_boxes
from inspector.scale import DEFECT_INPUT_PX, choose_tiling
from inspector.tasks.anomaly.detector import DetectorConfig, PatchDetector

SIDE = 384  # the generated "camera" images: SIDE x 2 SIDE, a strip


def part(seed: int, height: int = SIDE, width: int = 2 * SIDE) -> np.ndarray:
    """A woven-looking surface: a regular pattern, shifted and of a slightly different contrast on
    every part, with sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    dx, dy, amplitude = rng.uniform(0, 20), rng.uniform(0, 20), rng.uniform(34, 46)
    base = 128 + amplitude * np.sin((x + dx) / 3.0) * np.cos((y + dy) / 4.0)
    grey = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def with_spot(image: np.ndarray, top: int, left: int, side: int = 5) -> np.ndarray:
    spotted = image.copy()
    spotted[top:top + side, left:left + side] = 10
    return spotted


@pytest.fixture(scope="module")
def good() -> list[np.ndarray]:
    return [part(seed) for seed in range(4)]


def detector(tiling=None, regions=None, **settings) -> PatchDetector:
    settings = {"max_bank": 2000, **settings}
    return PatchDetector(DetectorConfig(image_size=64, tiling=tiling, regions=regions, batch_size=32, **settings),
                         pretrained=True)


def test_tile_boxes_cover_the_image_edges_and_keep_squares():
    boxes = tile_boxes(300, 1000, 128, overlap=0.25)
    assert all(side == 128 for _, _, side in boxes)
    assert {top for top, _, _ in boxes} == {0, 86, 172}  # the last tile ends on the bottom edge
    assert max(left for _, left, _ in boxes) == 1000 - 128
    covered = np.zeros((300, 1000), bool)
    for top, left, side in boxes:
        covered[top:top + side, left:left + side] = True
    assert covered.all()
    assert tile_boxes(50, 1000, 128)[0][2] == 50  # a side shorter than the tile: squares of that side
    with pytest.raises(ValueError):
        tile_boxes(100, 100, 4)


def test_model_inputs_stream_squares_at_one_scale(good):
    prep = {"image_size": 64, "resize_mode": "stretch", "interpolation": "bilinear", "antialias": True,
            "tiling": {"tile": 128, "overlap": 0.25}}
    inputs = model_inputs(good[0], prep)
    first = next(inputs)  # a generator: one tile at a time
    assert first.pixels.shape == (64, 64, 3) and first.box == (0, 0, 128)
    assert len(list(inputs)) + 1 == len(tile_boxes(SIDE, 2 * SIDE, 128))


def test_stitched_map_places_tiles_and_takes_the_maximum_of_overlaps():
    maps = [np.full((4, 4), 1.0), np.full((4, 4), 2.0)]
    canvas = stitch(maps, [(0, 0, 32), (0, 16, 32)], (32, 48))
    assert canvas.shape == (4, 6)
    assert canvas[0, 0] == 1.0 and canvas[0, 2] == 2.0 and canvas[0, 5] == 2.0


def test_a_small_defect_that_whole_image_scoring_misses_is_found_by_tiles(good):
    normal = [part(seed) for seed in (10, 11, 12)]
    defects = [with_spot(part(seed), 100 + 30 * i, 150 + 140 * i) for i, seed in enumerate((20, 21, 22))]
    whole = detector().fit(good)
    tiled = detector({"tile": 64, "overlap": 0.25}).fit(good)
    whole_good, whole_bad = whole.score(normal)[0], whole.score(defects)[0]
    tiled_good, tiled_bad = tiled.score(normal)[0], tiled.score(defects)[0]
    assert tiled_bad.min() > 1.2 * tiled_good.max(), (tiled_good, tiled_bad)  # every defect above every good part
    assert whole_bad.min() < whole_good.max() * 1.2, (whole_good, whole_bad)  # squeezed 12x, the spot is gone
    _, maps = tiled.score(defects[:1])
    peak = np.unravel_index(np.argmax(maps[0]), maps[0].shape)  # the stitched map points at the spot
    cell = SIDE * 2 / maps[0].shape[1]
    assert abs(peak[0] * cell - 102) < 3 * cell and abs(peak[1] * cell - 152) < 3 * cell


def test_an_artefact_inside_an_ignore_region_does_not_raise_the_score_outside_it_does(good):
    ignore = {"roi": [], "ignore": [{"type": "rect", "x0": 0.0, "y0": 0.0, "x1": 0.25, "y1": 0.5}]}
    fitted = detector({"tile": 64, "overlap": 0.25}, ignore).fit(good)
    plain = part(30)
    inside = with_spot(plain, 40, 40, 8)  # within x < 192, y < 192: ignored
    outside = with_spot(plain, 250, 500, 8)
    raw = fitted.score([plain, inside, outside])[0]
    assert raw[1] == pytest.approx(raw[0], rel=0.02)
    assert raw[2] > 1.2 * raw[0]


def test_ignored_pixels_never_enter_the_memory_bank(good):
    half = {"roi": [{"type": "rect", "x0": 0.5, "y0": 0.0, "x1": 1.0, "y1": 1.0}], "ignore": []}
    whole_bank = {"max_bank": 10 ** 6, "coreset_ratio": 1.0}  # no coreset: the bank is every candidate patch
    everywhere = detector({"tile": 64, "overlap": 0.25}, **whole_bank).fit(good[:2])
    right_half = detector({"tile": 64, "overlap": 0.25}, half, **whole_bank).fit(good[:2])
    share = right_half.memory_bank_.shape[0] / everywhere.memory_bank_.shape[0]
    assert 0.4 < share < 0.65, share  # the right half's tiles (and the overlap at its edge) only


def test_regions_are_relative_and_mask_images_stretch(tmp_path):
    regions = Regions(roi=({"type": "polygon", "points": [[0, 0], [1, 0], [1, 1]]},),
                      ignore=({"type": "rect", "x0": 0.9, "y0": 0.0, "x1": 1.0, "y1": 0.1},))
    small, large = regions.mask(100, 100), regions.mask(1000, 1000)
    assert small[5, 80] and not small[80, 5] and not small[2, 95]
    assert abs(small.mean() - large.mean()) < 0.02  # the same share of any image size
    from PIL import Image

    mask = np.zeros((10, 20), np.uint8)
    mask[:, 10:] = 255
    Image.fromarray(mask).save(tmp_path / "ignore.png")
    from_file = Regions.read(ignore_mask=tmp_path / "ignore.png")
    assert from_file.mask(50, 100)[:, :50].all() and not from_file.mask(50, 100)[:, 50:].any()
    assert Regions.from_dict(from_file.to_dict()).mask(50, 100).sum() == from_file.mask(50, 100).sum()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "black.png")
    with pytest.raises(InspectorError, match="all dark"):
        read_mask_image(tmp_path / "black.png")
    with pytest.raises(InspectorError, match="nothing to inspect"):
        Regions(ignore=({"type": "rect", "x0": 0, "y0": 0, "x1": 1, "y1": 1},)).mask(10, 10)
    with pytest.raises(InspectorError, match="fractions"):
        Regions(roi=({"type": "rect", "x0": 0, "y0": 0, "x1": 640, "y1": 480},))


def test_the_scale_follows_the_defect_size():
    sizes = [(250, 250)] * 5
    assert choose_tiling(sizes, 256).tiling is None  # near the input size: whole images, as before
    tiny = choose_tiling(sizes, 256, defect_size=3)
    assert tiny.tiling["tile"] == round(256 / (DEFECT_INPUT_PX / 3)) and "3 px defect" in tiny.reason
    assert choose_tiling(sizes, 256, defect_size=40).tiling is None  # large defects: the whole image suffices
    strips = choose_tiling([(3000, 16000)], 256)
    assert strips.tiling["tile"] == 256 and "own resolution" in strips.reason  # large images: tiled at scale 1


def test_image_maps_score_is_the_largest_scorable_cell():
    collected = ImageMaps([np.zeros((64, 64, 3), np.uint8)])
    from inspector.runtime.tiling import ModelInput

    valid = np.ones((64, 64), bool)
    valid[:32] = False  # the top half is ignored
    patch_map = np.zeros((8, 8), np.float32)
    patch_map[1, 1], patch_map[6, 6] = 9.0, 2.0
    collected.add(0, ModelInput(np.zeros((64, 64, 3), np.uint8), (0, 0, 0), valid), patch_map)
    raw, maps = collected.results()
    assert raw[0] == 2.0 and maps[0][1, 1] == 0.0


def test_the_eta_plan_counts_a_tiled_image_as_its_tiles():
    tiled = detector({"tile": 64, "overlap": 0.25}).plan_for((SIDE, 2 * SIDE))
    whole = detector()
    features = {w.phase: w for w in tiled.fit_work(10)}["features"]
    assert features.cost == len(tile_boxes(SIDE, 2 * SIDE, 64)) * {w.phase: w for w in whole.fit_work(10)}["features"].cost


def test_bank_candidates_are_a_bounded_sample_of_each_images_patches(good):
    import torch

    det = detector(tiling={"tile": 64, "overlap": 0.25, "input_size": 64}, max_bank=4)
    (patches,) = det._embed_for_bank(good[:1], None)
    full, limit = patches.bank_rows(), det.candidate_limit()
    capped = patches.bank_rows(limit, seed=3)
    assert limit == 80 and full.shape[0] > limit and capped.shape == (limit, full.shape[1])
    assert torch.equal(capped, patches.bank_rows(limit, seed=3))  # seeded
    assert all(bool((full == row).all(1).any()) for row in capped[:10])  # rows of the image's own patches
    assert torch.equal(patches.bank_rows(10 ** 9), full)  # under the limit: every patch
