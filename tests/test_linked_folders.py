"""Issue 19, kind 4: folders reached through symbolic links are used, never silently dropped.

Every place that gathers images from folders (dataset discovery for `train`/`evaluate`, and
`collect_images` for `inspector predict` and the bundle's predict.py) follows links to sub-folders,
does not loop on a link back to an ancestor, uses a file reached twice once, and lists broken
links under `skipped` with a reason.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from image_factories import make_class_tree, noise_image, write_image

from inspector.cli import main
from inspector.data import discover_dataset
from inspector.runs import Run
from inspector.runtime.bundle import collect_images
from inspector.runtime.images import walk_files

if not hasattr(os, "symlink"):  # pragma: no cover
    pytest.skip("symbolic links are not available here", allow_module_level=True)


def _elsewhere(folder: Path, n: int, seed: int = 100) -> Path:
    for i in range(n):
        write_image(folder / f"linked{i}.png", noise_image(seed + i))
    return folder


@pytest.fixture
def linked_dataset(tmp_path) -> Path:
    """ok: 5 images; scratch: 5 images + sub-folder `more` linked to 3 images elsewhere (13 in all)."""
    data = make_class_tree(tmp_path / "data", {"ok": 5, "scratch": 5})
    (data / "scratch" / "more").symlink_to(_elsewhere(tmp_path / "elsewhere", 3), target_is_directory=True)
    return data


def test_discovery_follows_a_linked_sub_folder(linked_dataset):
    ds = discover_dataset(linked_dataset)
    assert len(ds) == 13 and ds.skipped == []
    assert ds.counts() == {"ok": 5, "scratch": 8}
    assert sorted(p.name for p in ds.paths if p.parent.name == "more") == ["linked0.png", "linked1.png", "linked2.png"]


def test_cli_train_uses_the_linked_images(linked_dataset, tmp_path, capsys):
    assert main(["train", str(linked_dataset), "--strategy", "linear_probe", "--image-size", "64",
                 "--max-folds", "2", "--runs-dir", str(tmp_path / "runs"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["skipped"] == []
    run = Run(summary["run_dir"])
    assert run.record()["summary"]["n_images"] == 13
    evaluation = run.evaluation()
    assert evaluation["n_images"] == 13
    assert {c: v["support"] for c, v in evaluation["per_class"].items()} == {"ok": 5, "scratch": 8}

def test_collect_images_follows_a_linked_sub_folder(tmp_path):
    folder = tmp_path / "parts"
    write_image(folder / "a.png", noise_image(1))
    write_image(folder / "b.png", noise_image(2))
    (folder / "sub").symlink_to(_elsewhere(tmp_path / "elsewhere", 3), target_is_directory=True)
    paths, skipped = collect_images([folder])
    assert len(paths) == 5 and skipped == []
    assert [p.name for p in paths if p.parent.name == "sub"] == ["linked0.png", "linked1.png", "linked2.png"]


def test_cli_predict_predicts_the_linked_images(tiny_run, tmp_path, capsys):
    folder = tmp_path / "parts"
    write_image(folder / "a.png", noise_image(1))
    write_image(folder / "b.png", noise_image(2))
    (folder / "sub").symlink_to(_elsewhere(tmp_path / "elsewhere", 3), target_is_directory=True)
    assert main(["predict", str(tiny_run.run_dir), str(folder), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(out["predictions"]) == 5 and out["skipped"] == []


def test_a_link_back_to_an_ancestor_terminates_and_uses_each_file_once(tmp_path):
    data = make_class_tree(tmp_path / "data", {"ok": 4, "scratch": 4})
    (data / "ok" / "nested").mkdir()
    write_image(data / "ok" / "nested" / "deep.png", noise_image(50))
    (data / "ok" / "nested" / "back").symlink_to(data / "ok", target_is_directory=True)  # loop to its parent
    (data / "ok" / "again.png").symlink_to(data / "ok" / "img0.png")  # the same file twice
    ds = discover_dataset(data)
    assert ds.counts() == {"ok": 5, "scratch": 4}
    assert len({p.resolve() for p in ds.paths}) == len(ds) == 9
    reasons = {s.path: s.reason for s in ds.skipped}
    assert "loop" in reasons["ok/nested/back"]
    assert "same file" in reasons["ok/again.png"]

    paths, skipped = collect_images([data / "ok"])
    assert len(paths) == 5 and len({p.resolve() for p in paths}) == 5
    assert {Path(s["path"]).name for s in skipped} == {"back", "again.png"}


def test_a_link_to_the_walked_folder_itself_terminates(tmp_path):
    folder = tmp_path / "parts"
    write_image(folder / "a.png", noise_image(1))
    (folder / "self").symlink_to(folder, target_is_directory=True)
    files, left_out = walk_files(folder)
    assert files == [folder / "a.png"]
    assert [(p.name, "loop" in reason) for p, reason in left_out] == [("self", True)]


def test_broken_links_are_skipped_with_a_reason(tmp_path, tiny_run, capsys):
    data = make_class_tree(tmp_path / "data", {"ok": 3, "scratch": 3})
    (data / "ok" / "gone").symlink_to(tmp_path / "nowhere", target_is_directory=True)
    (data / "scratch" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    ds = discover_dataset(data)
    assert len(ds) == 6
    reasons = {s.path: s.reason for s in ds.skipped}
    assert set(reasons) == {"ok/gone", "scratch/gone.png"}
    assert all(r.startswith("broken link") and "nowhere" in r for r in reasons.values())

    paths, skipped = collect_images([data / "ok", data / "scratch"])
    assert len(paths) == 6
    assert {Path(s["path"]).name: s["reason"].startswith("broken link") for s in skipped} == {"gone": True,
                                                                                               "gone.png": True}
    assert main(["predict", str(tiny_run.run_dir), str(data / "ok"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(out["predictions"]) == 3
    assert [(Path(s["path"]).name, s["reason"].startswith("broken link")) for s in out["skipped"]] == [("gone", True)]
