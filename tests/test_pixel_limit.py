"""Issue 19, kind 2: one pixel limit per image for every entry point (library, CLI, service, bundle),
raised or lowered with `--max-megapixels N` or INSPECTOR_MAX_MEGAPIXELS; no Pillow warning leaks."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from image_factories import png_with_claimed_size
from PIL import Image
from test_runtime import _colour, _tiny_bundle

from inspector.errors import ImageLoadError, ImageTooLargeError, InspectorError
from inspector.runtime.images import MAX_MEGAPIXELS_ENV, load_image, max_pixels

LINE_SCAN = (30000, 3000)  # 90 MP: over the default 80 MP and over Pillow's own warning threshold (89.5 MP)


@pytest.fixture(autouse=True)
def no_limit_set(monkeypatch):
    monkeypatch.setenv(MAX_MEGAPIXELS_ENV, "")
    monkeypatch.delenv(MAX_MEGAPIXELS_ENV)


def _images(folder: Path) -> tuple[Path, Path]:
    """A 20 x 20 (400 pixels) and a 100 x 80 (8000 pixels) image."""
    folder.mkdir(exist_ok=True)
    small, big = folder / "small.png", folder / "big.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(small)
    Image.fromarray(rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)).save(big)
    return small, big


def _json_tail(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


# ---------------------------------------------------------------- library
def test_the_one_limit_is_the_variable_else_80_mp(monkeypatch):
    assert max_pixels() == 80_000_000
    monkeypatch.setenv(MAX_MEGAPIXELS_ENV, "120")
    assert max_pixels() == 120_000_000
    monkeypatch.setenv(MAX_MEGAPIXELS_ENV, "0.005")
    data = _png_bytes(100, 80)
    with pytest.raises(ImageTooLargeError, match=r"image too large: 100 x 80 pixels \(limit 0.005 MP;"):
        load_image(data)
    assert issubclass(ImageTooLargeError, ImageLoadError)
    for bad in ("abc", "0", "-3", "nan"):
        monkeypatch.setenv(MAX_MEGAPIXELS_ENV, bad)
        with pytest.raises(InspectorError, match=f"{MAX_MEGAPIXELS_ENV} must be a positive number"):
            max_pixels()


def _png_bytes(w: int, h: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((h, w, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_no_pillow_warning_and_a_raised_limit_really_applies(monkeypatch):
    data = png_with_claimed_size(*LINE_SCAN)
    limit_before = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageTooLargeError, match="image too large: 30000 x 3000 pixels"):
            load_image(data)
        monkeypatch.setenv(MAX_MEGAPIXELS_ENV, "100")
        with pytest.raises(ImageLoadError) as err:  # allowed now: only its (fake) pixel data is wrong
            load_image(data)
    assert not isinstance(err.value, ImageTooLargeError) and "truncated" in str(err.value)
    assert [str(w.message) for w in caught] == []
    assert Image.MAX_IMAGE_PIXELS == limit_before


# ---------------------------------------------------------------- CLI
def test_predict_follows_the_option_and_the_variable(tiny_run, tmp_path, capsys, monkeypatch):
    from inspector.cli import main

    small, big = _images(tmp_path / "images")
    run = str(tiny_run.run_dir)

    assert main(["predict", run, str(small), str(big), "--json", "--max-megapixels", "0.005"]) == 0
    result = _json_tail(capsys.readouterr().out)
    assert [Path(p["path"]).name for p in result["predictions"]] == ["small.png"]
    assert [(Path(s["path"]).name, s["reason"]) for s in result["skipped"]] == [
        ("big.png", "image too large: 100 x 80 pixels (limit 0.005 MP; raise it with --max-megapixels or INSPECTOR_MAX_MEGAPIXELS)")]
    assert MAX_MEGAPIXELS_ENV not in os.environ  # restored after the command

    monkeypatch.setenv(MAX_MEGAPIXELS_ENV, "0.005")
    assert main(["predict", run, str(small), str(big), "--json"]) == 0
    assert [Path(s["path"]).name for s in _json_tail(capsys.readouterr().out)["skipped"]] == ["big.png"]
    assert main(["predict", run, str(small), str(big), "--json", "--max-megapixels", "1"]) == 0  # raised
    result = _json_tail(capsys.readouterr().out)
    assert len(result["predictions"]) == 2 and result["skipped"] == []

    assert main(["predict", run, str(small), "--max-megapixels", "-1"]) == 2
    assert capsys.readouterr().err.strip() == ("error: --max-megapixels must be a positive number of megapixels "
                                               "(e.g. 120), not '-1'.")


def test_dataset_discovery_follows_the_variable(tmp_path, monkeypatch):
    """Training reads its folder through discovery: the one limit applies there too."""
    from inspector.data import discover_dataset

    for name in ("ok", "nok"):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(np.full((80, 100, 3), 60 * i, np.uint8)).save(tmp_path / name / f"{i}.png")
    assert len(discover_dataset(tmp_path)) == 4
    monkeypatch.setenv(MAX_MEGAPIXELS_ENV, "0.005")  # 5000 pixels: every 100 x 80 image is over it
    with pytest.raises(InspectorError, match=r"4 x image too large: .*--max-megapixels"):
        discover_dataset(tmp_path)


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "serve", "export", "advise", "compare",
                                     "rank-backbones", "backbones", "sweep"])
def test_every_command_that_reads_images_takes_the_option(command):
    from inspector.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    assert "--max-megapixels" in sub.format_help()


def test_no_decompression_bomb_warning_reaches_the_terminal(tiny_run, tmp_path):
    small, _ = _images(tmp_path / "images")
    bomb = tmp_path / "images" / "line_scan.png"
    bomb.write_bytes(png_with_claimed_size(*LINE_SCAN))
    out = subprocess.run([sys.executable, "-m", "inspector.cli", "predict", str(tiny_run.run_dir), str(small),
                          str(bomb), "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "DecompressionBomb" not in out.stderr and "Warning" not in out.stderr
    assert "line_scan.png: image too large: 30000 x 3000 pixels (limit 80 MP; raise it with --max-megapixels or INSPECTOR_MAX_MEGAPIXELS)" in out.stderr


# ---------------------------------------------------------------- service
def test_the_service_uses_the_one_limit_and_answers_413(tiny_run, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from inspector import Predictor
    from inspector.deploy.service import ServiceConfig, create_app

    predictor = Predictor.from_run(tiny_run.run_dir, device="cpu")
    small, big = _images(tmp_path / "images")
    with TestClient(create_app(None, ServiceConfig(), predictor=predictor)) as client:
        assert client.get("/model").json()["limits"]["max_pixels"] == 80_000_000

    monkeypatch.setenv(MAX_MEGAPIXELS_ENV, "0.005")
    with TestClient(create_app(None, ServiceConfig(), predictor=predictor)) as client:
        assert client.get("/model").json()["limits"]["max_pixels"] == 5000
        alone = client.post("/predict", files={"files": ("big.png", big.read_bytes(), "image/png")})
        assert alone.status_code == 413
        assert alone.json() == {"detail": "big.png: image too large: 100 x 80 pixels (limit 0.005 MP; raise it with --max-megapixels or INSPECTOR_MAX_MEGAPIXELS)."}
        both = client.post("/predict", files=[("files", ("small.png", small.read_bytes(), "image/png")),
                                              ("files", ("big.png", big.read_bytes(), "image/png"))])
        assert both.status_code == 200
        assert [r["filename"] for r in both.json()["predictions"]] == ["small.png"]
        assert both.json()["skipped"] == [{"path": "big.png",
                                           "reason": "image too large: 100 x 80 pixels (limit 0.005 MP; raise it with --max-megapixels or INSPECTOR_MAX_MEGAPIXELS)"}]
    with TestClient(create_app(None, ServiceConfig(max_pixels=10_000), predictor=predictor)) as client:
        assert client.post("/predict", files={"files": ("big.png", big.read_bytes(), "image/png")}).status_code == 200


# ---------------------------------------------------------------- bundle (predict.py)
def test_predict_py_takes_the_option_and_the_variable(tmp_path, capsys, monkeypatch):
    from inspector.runtime.cli import main

    folder = _tiny_bundle(tmp_path / "b", "probabilities")
    Image.fromarray(_colour((250, 0, 0), 20, 20)).save(folder / "small.png")
    Image.fromarray(_colour((0, 250, 0), 80, 100)).save(folder / "big.png")
    monkeypatch.chdir(folder)  # predict.py is run from its folder

    assert main(["small.png", "big.png", "--json"], folder=folder) == 0
    assert len(_json_tail(capsys.readouterr().out)["predictions"]) == 2
    assert main(["small.png", "big.png", "--json", "--max-megapixels", "0.005"], folder=folder) == 0
    result = _json_tail(capsys.readouterr().out)
    assert [p["path"] for p in result["predictions"]] == ["small.png"]
    assert result["skipped"] == [{"path": "big.png", "reason": "image too large: 100 x 80 pixels (limit 0.005 MP; raise it with --max-megapixels or INSPECTOR_MAX_MEGAPIXELS)"}]
    monkeypatch.setenv(MAX_MEGAPIXELS_ENV, "0.005")
    assert main(["small.png", "big.png", "--json"], folder=folder) == 0
    assert [s["path"] for s in _json_tail(capsys.readouterr().out)["skipped"]] == ["big.png"]
    assert main(["small.png", "--max-megapixels", "none"], folder=folder) == 2
    assert "--max-megapixels must be a positive number" in capsys.readouterr().err
