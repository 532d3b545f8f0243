"""Anomaly runs on the line: the exported bundle (parity recorded, predict.py without torch, the
same JSON as `inspector predict`) and the REST service."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_anomaly_task import anomaly_run, parts  # noqa: F401 - the anomaly task's own trained run
from test_deploy_export import BUNDLE_FILES, NO_TORCH, _json_tail

from inspector.cli import main
from inspector.errors import InspectorError


@pytest.fixture(scope="module")
def anomaly_bundle(anomaly_run, parts, tmp_path_factory):  # noqa: F811
    from inspector.deploy.bundle import export_bundle

    new_goods = sorted((parts / "good_parts" / "ok").iterdir())[20:]  # good parts the bank never saw
    out = tmp_path_factory.mktemp("export") / "bundle"
    return export_bundle(anomaly_run.run_dir, out, parity_images=new_goods)


def test_a_failed_anomaly_parity_check_is_a_plain_error():
    from inspector.deploy.parity import ParityReport, require_parity

    with pytest.raises(InspectorError, match="different verdict on 2 of 10"):
        require_parity(ParityReport(10, 8, 0.0, 0.0, 1e-4, "a.png", 1.0, task="anomaly"))
    with pytest.raises(InspectorError, match="raw scores differ by up to 3.0e-03 .relative"):
        require_parity(ParityReport(10, 10, 3e-3, 1e-3, 1e-4, "a.png", 1.0, task="anomaly"))


@pytest.mark.slow
def test_anomaly_bundle_records_parity_and_the_calibration(anomaly_bundle, anomaly_run):
    from inspector.inference import load_predictor

    folder = anomaly_bundle.path
    assert [name for name in BUNDLE_FILES if not (folder / name).is_file()] == []
    parity = json.loads((folder / "parity.json").read_text())
    assert parity["task"] == "anomaly" and parity["passed"]
    assert parity["verdicts_agree"] == parity["n_images"] >= 20
    assert parity["max_rel_raw_score_diff"] <= 1e-4 and parity["tolerance"] == 1e-4
    assert parity["sources"] == {"given": 10, "run": 16, "generated": 15}  # new good parts, the run's defects, probes
    print(anomaly_bundle.parity.summary())
    predictor = load_predictor(anomaly_run.run_dir, device="cpu")
    labels = json.loads((folder / "labels.json").read_text())
    assert labels["task"] == "anomaly" and labels["ok_classes"] == ["ok"] and labels["target_frr"] == 0.05
    assert labels["threshold"] == predictor.threshold and labels["score_scale"] == predictor.scale.to_dict()
    assert len(labels["calibration_scores"]) == 24 and labels["outputs"] == ["raw_score", "patch_distances", "embedding"]
    assert labels["runtime_outputs"] == "anomaly_score"
    assert "--target-frr" in (folder / "README.md").read_text()
    assert "verdicts agree" in anomaly_bundle.parity.summary()


@pytest.mark.slow
def test_anomaly_predict_py_runs_without_torch_and_matches_the_cli(anomaly_bundle, anomaly_run, parts,  # noqa: F811
                                                                    tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    images = [str(p) for p in sorted((parts / "new_parts").iterdir())]
    goods = [str(p) for p in sorted((parts / "good_parts" / "ok").iterdir())[24:]]
    for extra in ([], ["--target-frr", "0.3"]):  # the threshold moves without re-export
        args = [*images, *goods, str(broken), "--json", *extra]
        out = subprocess.run([sys.executable, "-c", NO_TORCH, *args], cwd=anomaly_bundle.path, capture_output=True,
                             text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "INSPECTOR_THREADS": "2"})
        assert out.returncode == 0, out.stderr
        ours = _json_tail(out.stdout)
        assert main(["predict", str(anomaly_run.run_dir), *args]) == 0
        theirs = _json_tail(capsys.readouterr().out)
        assert ours["task"] == theirs["task"] == "anomaly"
        assert ours["threshold"] == theirs["threshold"] and ours["target_frr"] == theirs["target_frr"]
        assert ours["skipped"][0]["path"] == theirs["skipped"][0]["path"] == str(broken)
        assert [p["path"] for p in ours["predictions"]] == [p["path"] for p in theirs["predictions"]]
        for a, b in zip(ours["predictions"], theirs["predictions"]):
            assert list(a) == list(b)
            assert set(a) == {"path", "score", "raw_score", "verdict", "familiarity", "label", "reason"}
            assert a["verdict"] == b["verdict"]
            assert abs(a["raw_score"] - b["raw_score"]) <= 1e-4 * abs(b["raw_score"])
            assert a["score"] == pytest.approx(b["score"], abs=1e-4)
    assert {"OK", "NG"} <= {p["verdict"] for p in ours["predictions"]}  # both sides of the threshold covered


@pytest.mark.slow
def test_anomaly_export_keeps_the_runs_own_good_classes(anomaly_run, tmp_path):  # noqa: F811
    from inspector.deploy.bundle import export_bundle

    with pytest.raises(InspectorError, match="keeps the good classes it was trained with"):
        export_bundle(anomaly_run.run_dir, tmp_path / "b", ok_classes=["crack"])
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_inspector_serve_starts_on_an_anomaly_run(anomaly_run, monkeypatch):  # noqa: F811
    """`inspector serve RUN` as a user types it: --threshold (a classifier's) must not be set behind their back."""
    import inspector.deploy.service as service
    from inspector.cli import build_parser

    served = []
    monkeypatch.setattr(service, "serve", lambda app, host, port: served.append(app))
    args = build_parser().parse_args(["serve", str(anomaly_run.run_dir)])
    args.func(args)
    assert len(served) == 1


def test_service_scores_an_anomaly_run(anomaly_run, parts):  # noqa: F811
    from fastapi.testclient import TestClient

    from inspector.deploy.service import ServiceConfig, create_app
    from inspector.inference import load_predictor

    predictor = load_predictor(anomaly_run.run_dir, device="cpu")
    paths = sorted((parts / "new_parts").iterdir())[:3]
    with TestClient(create_app(anomaly_run.run_dir, ServiceConfig())) as client:  # loaded like `inspector serve`
        model = client.get("/model").json()
        assert model["task"] == "anomaly" and model["threshold"] == predictor.threshold
        assert model["ok_classes"] == ["ok"] and model["target_frr"] == 0.05
        response = client.post("/predict", files=[("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths])
        assert response.status_code == 200, response.text
        rows = response.json()["predictions"]
        for row, expected in zip(rows, predictor.predict_batch([str(p) for p in paths])):
            assert set(row) == {"filename", "score", "raw_score", "verdict", "label", "reason", "familiarity"}
            assert row["verdict"] == expected.to_dict()["verdict"]  # with the familiarity guard's UNSURE
            assert row["raw_score"] == pytest.approx(expected.raw_score, rel=1e-6)
        bad = client.post("/predict", files={"files": ("bad.jpg", b"nope", "image/jpeg")})
        assert bad.status_code == 400 and bad.json()["detail"].startswith("bad.jpg:")
    looser = create_app(None, ServiceConfig(target_frr=0.3), predictor=predictor)
    with TestClient(looser) as client:
        assert client.get("/model").json()["threshold"] == predictor.with_target_frr(0.3).threshold
        assert client.get("/model").json()["warnings"] == []
    stricter = create_app(None, ServiceConfig(target_frr=0.01), predictor=predictor)  # 24 good images guarantee 4 %
    with TestClient(stricter) as client:
        model = client.get("/model").json()
        assert model["warnings"] == [predictor.with_target_frr(0.01).frr_warning] and model["frr_warning"]
    with pytest.raises(InspectorError, match="keeps the good classes"):
        create_app(None, ServiceConfig(ok_classes=("ok",)), predictor=predictor)


def test_the_bundle_runtime_scores_an_anomaly_run_like_pytorch(anomaly_bundle, anomaly_run, parts):  # noqa: F811
    """`serve --runtime onnx` on an anomaly run: BundlePredictor gives the PyTorch predictor's verdicts and
    scores, and moves its threshold with the target false-reject rate as the service asks."""
    from inspector.data import load_image, to_rgb_array
    from inspector.deploy.runtime import BundlePredictor
    from inspector.inference import load_predictor

    images = [to_rgb_array(load_image(p)) for p in sorted((parts / "new_parts").iterdir())]
    fast, torch_predictor = BundlePredictor(anomaly_bundle.path), load_predictor(anomaly_run.run_dir, device="cpu")
    assert fast.task == "anomaly" and fast.threshold == pytest.approx(torch_predictor.threshold)
    for a, b in zip(fast.predict_batch(images), torch_predictor.predict_batch(images)):
        a, b = a.to_dict(), b.to_dict()
        assert a["verdict"] == b["verdict"] and abs(a["raw_score"] - b["raw_score"]) <= 1e-4 * abs(b["raw_score"])
    looser = fast.with_target_frr(0.3)
    assert looser.target_frr == 0.3 and looser.threshold < fast.threshold


def _export_panel(run_dir: str, classes: list) -> None:
    """The Compare page's export section for one run (an AppTest script: imports inside)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path.cwd()))
    from ui.deploy import render_export

    render_export(run_dir, classes)


@pytest.mark.slow
def test_the_export_panel_shows_each_tasks_parity_figures(anomaly_run, tiny_run, monkeypatch):  # noqa: F811
    """The app's export panel names the parity figures by the task's rule and offers OK classes only
    to a task that takes them."""
    from streamlit.testing.v1 import AppTest

    from inspector.deploy.bundle import default_out_dir, export_bundle

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    shown = {}
    for run in (tiny_run, anomaly_run):
        export_bundle(run.run_dir, default_out_dir(run.run_dir))
        at = AppTest.from_function(_export_panel, args=(str(run.run_dir), list(run.summary.classes)),
                                   default_timeout=60).run()
        assert not at.exception, [e.value for e in at.exception]
        shown[run.summary.task] = ({m.label for m in at.metric}, len(at.multiselect))
    assert "Labels agree" in shown["classification"][0] and "Max relative logit difference" in shown["classification"][0]
    assert "Verdicts agree" in shown["anomaly"][0] and "Max relative raw-score difference" in shown["anomaly"][0]
    assert shown["classification"][1] == 1 and shown["anomaly"][1] == 0, "OK classes only where the task takes them"
