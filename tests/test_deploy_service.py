"""`inspector serve`: the REST service with good, unreadable and oversized images, and API keys."""
from __future__ import annotations

import io
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

from inspector.cli import build_parser

KEY = "line-7-secret"


def _png(h: int = 64, w: int = 80, seed: int = 0) -> bytes:
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def predictor(tiny_run):
    from inspector import Predictor

    return Predictor.from_run(tiny_run.run_dir, device="cpu")


@pytest.fixture(scope="module")
def client(predictor):
    from fastapi.testclient import TestClient

    from inspector.deploy.service import ServiceConfig, create_app

    config = ServiceConfig(api_key=KEY, ok_classes=("ok",), max_files=3, max_file_bytes=100_000)
    with TestClient(create_app(None, config, predictor=predictor), headers={"X-API-Key": KEY}) as c:
        yield c


def test_health_model_and_docs(client, predictor):
    assert client.get("/health").json() == {"status": "ok"}
    model = client.get("/model").json()
    assert model["classes"] == predictor.classes and model["ok_classes"] == ["ok"]
    assert model["limits"]["max_files"] == 3
    assert client.get("/docs").status_code == 200
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_predict_one_and_several_images_like_the_predictor(client, predictor, tiny_data):
    paths = sorted((tiny_data / "crack").iterdir())[:2]
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]
    response = client.post("/predict", files=files)
    assert response.status_code == 200, response.text
    rows = response.json()["predictions"]
    expected = predictor.predict_batch([str(p) for p in paths])
    assert [r["filename"] for r in rows] == [p.name for p in paths]
    for row, pred in zip(rows, expected):
        assert row["label"] == pred.label and row["probabilities"] == pytest.approx(pred.probabilities, abs=1e-6)
        assert row["verdict"] in {"OK", "NG"} and row["score"] == row["defect_probability"]
        assert row["defect_probability"] == pytest.approx(1 - row["probabilities"]["ok"], abs=1e-6)
    one = client.post("/predict", files={"files": ("a.png", _png(), "image/png")})
    assert one.status_code == 200 and len(one.json()["predictions"]) == 1


@pytest.mark.parametrize("files,status,words", [
    ([("files", ("bad.jpg", b"definitely not a jpeg", "image/jpeg"))], 400, "bad.jpg: not an image"),
    ([("files", ("cut.png", _png()[:200], "image/png"))], 400, "cut.png: truncated"),
    ([("files", ("big.png", _png(400, 400), "image/png"))], 413, "big.png: file too large"),
    ([("files", (f"{i}.png", _png(seed=i), "image/png")) for i in range(4)], 413, "Too many images"),
])
def test_bad_uploads_get_a_plain_4xx(client, files, status, words):
    response = client.post("/predict", files=files)
    assert response.status_code == status
    assert words in response.json()["detail"]


def test_a_huge_body_is_refused_before_it_is_read(client):
    response = client.post("/predict", content=b"x" * 10, headers={"content-length": str(10**9),
                                                                     "content-type": "multipart/form-data; b=x"})
    assert response.status_code == 413 and "too large" in response.json()["detail"]


def test_api_key_is_required_when_set(client):
    image = {"files": ("a.png", _png(), "image/png")}
    assert client.post("/predict", files=image, headers={"X-API-Key": "wrong"}).status_code == 401
    response = client.post("/predict", files=image, headers={"X-API-Key": ""})
    assert response.status_code == 401 and "API key" in response.json()["detail"]
    assert client.get("/health", headers={"X-API-Key": ""}).status_code == 200  # liveness stays open


def test_serve_command_options_and_environment_key(monkeypatch, tiny_run):
    import inspector.deploy.service as service

    seen = {}
    monkeypatch.setattr(service, "create_app", lambda run_dir, config, device="cpu": seen.update(config=config))
    monkeypatch.setattr(service, "serve", lambda app, host, port: seen.update(host=host, port=port))
    monkeypatch.setenv("INSPECTOR_API_KEY", "from-env")
    args = build_parser().parse_args(["serve", str(tiny_run.run_dir), "--port", "8123", "--ok-classes", "ok"])
    args.func(args)
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123  # localhost unless told otherwise
    assert seen["config"].api_key == "from-env" and seen["config"].ok_classes == ("ok",)
    args = build_parser().parse_args(["serve", str(tiny_run.run_dir), "--api-key", "cli"])
    args.func(args)
    assert seen["config"].api_key == "cli"


def test_real_uvicorn_on_a_free_localhost_port(predictor):
    import httpx
    import uvicorn

    from inspector.deploy.service import ServiceConfig, create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(None, ServiceConfig(), predictor=predictor)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        assert server.started
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/health", timeout=30).json() == {"status": "ok"}
        ok = httpx.post(f"{url}/predict", files={"files": ("a.png", _png(), "image/png")}, timeout=60)
        assert ok.status_code == 200 and set(ok.json()["predictions"][0]) >= {"label", "probabilities", "score"}
        bad = httpx.post(f"{url}/predict", files={"files": ("b.png", b"nope", "image/png")}, timeout=60)
        assert bad.status_code == 400 and bad.json()["detail"].startswith("b.png:")
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_serve_runtime_onnx_answers_through_the_exported_bundle_like_pytorch(monkeypatch, tiny_run, predictor,
                                                                             tiny_data):
    """`serve --runtime onnx` exports the run (parity checked) and answers with ONNX Runtime: the same
    labels, probabilities within the export's 1e-4, and verdicts."""
    from fastapi.testclient import TestClient

    import inspector.deploy.service as service

    paths = sorted((tiny_data / "crack").iterdir())[:2] + sorted((tiny_data / "ok").iterdir())[:1]
    seen = {}

    def answer_once(app, host, port):  # instead of uvicorn: ask the app while its bundle exists
        with TestClient(app) as c:
            seen["model"] = c.get("/model").json()
            seen["rows"] = c.post("/predict", files=[("files", (p.name, p.read_bytes(), "image/jpeg"))
                                                     for p in paths]).json()["predictions"]

    monkeypatch.setattr(service, "serve", answer_once)
    args = build_parser().parse_args(["serve", str(tiny_run.run_dir), "--runtime", "onnx", "--ok-classes", "ok"])
    args.func(args)
    assert seen["model"]["device"] == "cpu (onnxruntime)" and seen["model"]["classes"] == predictor.classes
    expected = predictor.predict_batch([str(p) for p in paths])
    assert [r["label"] for r in seen["rows"]] == [p.label for p in expected]
    for row, pred in zip(seen["rows"], expected):
        assert max(abs(row["probabilities"][c] - p) for c, p in pred.probabilities.items()) <= 1e-4
        assert row["verdict"] in ("OK", "NG") and 0.0 <= row["defect_probability"] <= 1.0


@pytest.mark.parametrize("how", ["field file", "field image", "raw image/png body", "base64 JSON"])
def test_an_image_sent_any_other_way_gets_one_sentence_naming_the_files_field(client, how):
    """Not FastAPI's list of error objects: one plain sentence saying what was expected."""
    import base64

    png = _png()
    if how.startswith("field"):
        response = client.post("/predict", files={how.split()[1]: ("a.png", png, "image/png")})
    elif how.startswith("raw"):
        response = client.post("/predict", content=png, headers={"content-type": "image/png"})
    else:
        response = client.post("/predict", json={"image": base64.b64encode(png).decode()})
    assert 400 <= response.status_code < 500
    body = response.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str), body
    detail = body["detail"]
    assert "`files`" in detail and "multipart/form-data" in detail and detail.endswith(".")
    assert detail.count(". ") == 0 and "\n" not in detail  # one sentence


def test_other_request_errors_are_one_sentence_too(client):
    for response in (client.post("/predict", files={"files": (None, "just text")}),  # a text field, not a file
                     client.post("/predict", data={"files": "a.png"}),  # urlencoded form
                     client.post("/predict", content=b"garbage", headers={"content-type": "multipart/form-data; boundary=x"}),
                     client.get("/predict"), client.get("/nowhere")):
        assert 400 <= response.status_code < 500
        detail = response.json()["detail"]
        assert isinstance(detail, str) and detail.endswith(".") and "\n" not in detail, detail
        assert response.url.path != "/predict" or "`files`" in detail, detail


def test_a_batch_with_one_unreadable_image_predicts_the_others_and_lists_it_skipped(client):
    files = [("files", ("a.png", _png(seed=1), "image/png")), ("files", ("cut.png", _png()[:200], "image/png")),
             ("files", ("c.png", _png(seed=2), "image/png"))]
    response = client.post("/predict", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [row["filename"] for row in body["predictions"]] == ["a.png", "c.png"]
    assert [item["path"] for item in body["skipped"]] == ["cut.png"]
    assert "truncated" in body["skipped"][0]["reason"]
    alone = client.post("/predict", files=files[:1]).json()["predictions"][0]
    assert body["predictions"][0]["probabilities"] == pytest.approx(alone["probabilities"], abs=1e-6)


def test_a_batch_with_no_readable_image_stays_a_400(client):
    files = [("files", ("bad.jpg", b"definitely not a jpeg", "image/jpeg")),
             ("files", ("cut.png", _png()[:200], "image/png"))]
    response = client.post("/predict", files=files)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "bad.jpg: not an image" in detail and "cut.png: truncated" in detail
