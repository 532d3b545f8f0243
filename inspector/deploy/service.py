"""A small REST service for the line's software: FastAPI over one shared, thread-safe predictor of
any task (`inspector.inference.load_predictor`).

    POST /predict   multipart, field `files` (one or several images) -> one result per image:
                    classifiers: label, confidence, probabilities, score (+ verdict with OK classes);
                    anomaly runs: score (0..1, 0.5 at the threshold), raw_score, verdict
    GET  /health    {"status": "ok"}
    GET  /model     what is loaded: run, task, classes, preprocessing, OK classes, threshold, limits
    GET  /docs      OpenAPI documentation (machine-readable at /openapi.json)

Errors are plain JSON `{"detail": "..."}` with a 4xx status: 400 unreadable image, 401 missing or
wrong API key, 413 too many files or a file too large. The API key, when set, travels in the
`X-API-Key` header. The service listens on localhost unless told otherwise.
"""
# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at runtime.
import hmac
import time
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import ImageLoadError, InspectorError

API_KEY_HEADER = "X-API-Key"


@dataclass(frozen=True)
class ServiceConfig:
    """Settings of one service; validated once in `create_app`."""

    api_key: str | None = None
    ok_classes: tuple[str, ...] = ()  # classifiers only: anomaly runs keep their own good classes
    threshold: float | None = None  # classifiers: NG when P(defect) >= this (None: the task's default)
    target_frr: float | None = None  # anomaly runs: move the threshold to this false-reject rate
    max_files: int = 32
    max_file_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000  # per image, checked from the header before decoding

    def limits(self) -> dict[str, Any]:
        return {"max_files": self.max_files, "max_file_bytes": self.max_file_bytes, "max_pixels": self.max_pixels}


def _with_score(row: dict[str, Any]) -> dict[str, Any]:
    """`score` for the line's software, whatever the task: the row's own score (anomaly runs), else
    P(defect) when a verdict was asked for, else the predicted class's probability."""
    if "score" not in row:
        row["score"] = row["defect_probability"] if "defect_probability" in row else row["confidence"]
    return row


def create_app(run_dir: Any, config: ServiceConfig = ServiceConfig(), device: str = "cpu", predictor: Any = None):
    """The FastAPI app for a run folder of any task (or an already loaded predictor, shared read-only)."""
    from fastapi import Depends, FastAPI, File, HTTPException, Request, UploadFile
    from fastapi.responses import JSONResponse
    from fastapi.security import APIKeyHeader

    from ..data import load_image, to_rgb_array
    from ..inference import load_predictor
    from ..tasks.base import PredictOptions, create_task

    predictor = predictor or load_predictor(run_dir, device=device)
    task = create_task(predictor.task)
    options = PredictOptions(ok_classes=tuple(config.ok_classes), threshold=config.threshold,
                             target_frr=config.target_frr)
    predictor = task.configure(predictor, options)  # refuses the options of another task, in plain words
    if config.max_files < 1 or config.max_file_bytes < 1:
        raise InspectorError("The upload limits must be at least one file of one byte.")
    run_id = predictor.run_dir.name if predictor.run_dir else "model"
    app = FastAPI(title="Defect Inspector", version="1", summary=f"Predictions of run {run_id}",
                  description=__doc__)
    key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                              description="Required when the service was started with an API key.")

    def check_key(key: str | None = Depends(key_header)) -> None:
        if config.api_key and not (key and hmac.compare_digest(key.encode(), config.api_key.encode())):
            raise HTTPException(401, "Missing or wrong API key (header X-API-Key).")

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        # Refuse what cannot fit before Starlette spools the multipart body to disk.
        length = request.headers.get("content-length")
        ceiling = config.max_files * config.max_file_bytes + 1024 * 1024
        if length and length.isdigit() and int(length) > ceiling:
            return JSONResponse({"detail": f"Request too large: {int(length)} bytes (limit {ceiling})."}, 413)
        return await call_next(request)

    @app.get("/health", summary="Liveness: the model is loaded and the service answers")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/model", summary="What is loaded", dependencies=[Depends(check_key)])
    def model_info() -> dict[str, Any]:
        info = {"run_id": run_id, "classes": predictor.classes, "task": predictor.task,
                "preprocessing": predictor.preprocessing.to_dict(), "limits": config.limits(),
                "device": str(predictor.device)}
        info.update(task.decision_rule(predictor, options))
        return info

    @app.post("/predict", summary="Classify or score one or several images (multipart field `files`)",
              dependencies=[Depends(check_key)])
    def predict(files: list[UploadFile] = File(..., description="image files (PNG, JPEG, BMP, TIFF, WebP, GIF)")
                ) -> dict[str, Any]:
        if len(files) > config.max_files:
            raise HTTPException(413, f"Too many images: {len(files)} (limit {config.max_files} per request).")
        images = []
        for upload in files:
            data = upload.file.read(config.max_file_bytes + 1)
            if len(data) > config.max_file_bytes:
                raise HTTPException(413, f"{upload.filename}: file too large (limit {config.max_file_bytes} bytes).")
            try:
                images.append(to_rgb_array(load_image(data, max_pixels=config.max_pixels)))
            except ImageLoadError as exc:
                raise HTTPException(400, f"{upload.filename}: {exc}") from None
        start = time.perf_counter()
        results = task.result_rows(predictor, images, options)  # the Predictor holds its own lock
        rows = [{"filename": f.filename, **_with_score(row)} for f, row in zip(files, results)]
        return {"run_id": run_id, "predictions": rows, "seconds": round(time.perf_counter() - start, 4)}

    app.state.config = asdict(config) | {"api_key": bool(config.api_key)}
    return app


def serve(app: Any, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    try:
        uvicorn.run(app, host=host, port=port, log_level="info")
    except OSError as exc:
        raise InspectorError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.") from exc
