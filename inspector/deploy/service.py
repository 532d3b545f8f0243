"""A small REST service for the line's software: FastAPI over one shared, thread-safe predictor of
any task (`inspector.inference.load_predictor`).

    POST /predict   multipart, field `files` (one or several images) -> one result per image:
                    every model: label (null for anomaly runs), verdict (OK / NG / UNSURE; null for
                    a classifier without OK classes), reason (why UNSURE, e.g. a blank frame; else null);
                    classifiers: confidence, probabilities, score (+ defect_probability with OK classes);
                    anomaly runs: score (0..1, 0.5 at the threshold), raw_score
    GET  /health    {"status": "ok"}
    GET  /model     what is loaded: run, task, classes, preprocessing, OK classes, threshold, limits,
                    warnings (e.g. an anomaly run with too few good images for its false-reject target)
    GET  /docs      OpenAPI documentation (machine-readable at /openapi.json)

A batch answers HTTP 200 as long as one image is readable: `predictions` for the readable ones,
`skipped: [{"path": <the upload's filename>, "reason": ...}]` for the others (the shape of
`predict --json`).

Every error is plain JSON `{"detail": "..."}`, one sentence, with a 4xx status: 400 no readable image
in the request, 401 missing or wrong API key, 404 no such endpoint, 405 wrong method, 413 too many
files or a file too large or an image of more pixels than the limit (`limits.max_pixels` of /model;
a batch with readable images lists such an image in `skipped` instead), 415 a body that is not multipart/form-data (a raw image or base64 JSON),
422 a multipart form without image files in the field `files` (e.g. under `file` or `image`).
The API key, when set, travels in the `X-API-Key` header. The service listens on localhost unless
told otherwise.
"""
# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at runtime.
import hmac
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..errors import ImageLoadError, ImageTooLargeError, InspectorError

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
    # Per image, checked from the header before decoding. None: the one limit of every entry point
    # (`inspector.runtime.images.max_pixels`: --max-megapixels / INSPECTOR_MAX_MEGAPIXELS, else 80 MP).
    max_pixels: int | None = None

    def limits(self) -> dict[str, Any]:
        from ..runtime.images import max_pixels

        return {"max_files": self.max_files, "max_file_bytes": self.max_file_bytes,
                "max_pixels": self.max_pixels or max_pixels()}


def _with_score(row: dict[str, Any]) -> dict[str, Any]:
    """`score` for the line's software, whatever the task: the row's own score (anomaly runs), else
    P(defect) when a verdict was asked for, else the predicted class's probability."""
    if "score" not in row:
        row["score"] = row["defect_probability"] if "defect_probability" in row else row["confidence"]
    return row


FILES_HINT = "send each image as a file in the multipart/form-data field `files`"
ENDPOINTS = "POST /predict, GET /health, GET /model, GET /docs"


def _refusal(status: int, detail: str) -> Exception:
    """An HTTP error worded by the endpoint itself (as opposed to FastAPI's own, from parsing the body)."""
    from fastapi import HTTPException

    error = HTTPException(status, detail)
    error.from_service = True
    return error


def _sentence(text: str) -> str:
    """`text` as one plain sentence: no line breaks, ending with a full stop."""
    text = " ".join(str(text).split()).rstrip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


async def _form_fields(request: Any) -> list[str]:
    """The field names of the request's multipart form as FastAPI read it (empty when unreadable)."""
    try:
        form = await request.form()  # cached by the request that FastAPI parsed
    except Exception:  # noqa: BLE001 - only used to word an error message
        return []
    return sorted(set(form.keys()))


async def _validation_detail(request: Any, errors: list[dict[str, Any]]) -> tuple[int, str]:
    """(status, one sentence) for a request FastAPI could not validate, saying what was expected."""
    if request.url.path.rstrip("/") == "/predict":
        media = _media_type(request.headers.get("content-type"))
        if media != "multipart/form-data":
            got = f"{'an' if media[:1] in 'aeiou' else 'a'} {media} body" if media else "a request without a content type"
            if media == "application/json":
                got += " (base64 or JSON images are not accepted)"
            elif media.startswith("image/"):
                got += " (a raw image body is not accepted)"
            return 415, f"Expected multipart/form-data with the images in the field `files` but got {got}; {FILES_HINT}."
        fields = await _form_fields(request)
        if "files" in fields:
            return 422, f"The field `files` must hold image files, not text; {FILES_HINT}."
        got = ("fields " + ", ".join(f"`{f}`" for f in fields)) if fields else "no field"
        return 422, f"No field `files` in the multipart form (got {got}); {FILES_HINT}."
    first = errors[0] if errors else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "request"
    return 422, _sentence(f"Invalid {where}: {first.get('msg', 'not understood')}")


def create_app(run_dir: Any, config: ServiceConfig = ServiceConfig(), device: str = "cpu", predictor: Any = None):
    """The FastAPI app for a run folder of any task (or an already loaded predictor, shared read-only)."""
    from fastapi import Depends, FastAPI, File, HTTPException, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from fastapi.security import APIKeyHeader
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from ..inference import load_predictor
    from ..tasks.base import PredictOptions, create_task, decode_for

    predictor = predictor or load_predictor(run_dir, device=device)
    task = create_task(predictor.task)
    options = PredictOptions(ok_classes=tuple(config.ok_classes), threshold=config.threshold,
                             target_frr=config.target_frr)
    predictor = task.configure(predictor, options)  # refuses the options of another task, in plain words
    if config.max_files < 1 or config.max_file_bytes < 1:
        raise InspectorError("The upload limits must be at least one file of one byte.")
    if config.max_pixels is not None and config.max_pixels < 1:
        raise InspectorError("The pixel limit per image must be at least one pixel.")
    config = replace(config, max_pixels=config.limits()["max_pixels"])  # the limit in use, fixed at start
    run_id = predictor.run_dir.name if predictor.run_dir else "model"
    app = FastAPI(title="Defect Inspector", version="1", summary=f"Predictions of run {run_id}",
                  description=__doc__)
    key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                              description="Required when the service was started with an API key.")

    def check_key(key: str | None = Depends(key_header)) -> None:
        if config.api_key and not (key and hmac.compare_digest(key.encode(), config.api_key.encode())):
            raise HTTPException(401, "Missing or wrong API key (header X-API-Key).")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        # FastAPI's default is a list of error objects; the service's contract is one sentence.
        status, detail = await _validation_detail(request, list(exc.errors()))
        return JSONResponse({"detail": detail}, status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            detail = f"No endpoint {request.url.path} (the service answers {ENDPOINTS})."
        elif exc.status_code == 405 and request.url.path.rstrip("/") == "/predict":
            detail = f"{request.method} is not allowed on /predict: POST the images, {FILES_HINT}."
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path} (the service answers {ENDPOINTS})."
        elif exc.status_code == 400 and request.url.path.rstrip("/") == "/predict" and not getattr(exc, "from_service", False):
            # FastAPI or Starlette could not parse the body before the endpoint ran
            detail = f"The body could not be read as multipart/form-data ({str(exc.detail).rstrip('.')}); {FILES_HINT}."
        else:
            detail = _sentence(exc.detail)
        return JSONResponse({"detail": detail}, exc.status_code, headers=getattr(exc, "headers", None))

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
        info["warnings"] = [w for w in (info.get("frr_warning"),) if w]  # e.g. too few good images for the target
        return info

    @app.post("/predict", summary="Classify or score one or several images (multipart field `files`)",
              dependencies=[Depends(check_key)])
    def predict(files: list[UploadFile] = File(..., description="image files (PNG, JPEG, BMP, TIFF, WebP, GIF)")
                ) -> dict[str, Any]:
        if len(files) > config.max_files:
            raise _refusal(413, f"Too many images: {len(files)} (limit {config.max_files} per request).")
        names = [upload.filename or f"file {i + 1}" for i, upload in enumerate(files)]
        contents = []
        for name, upload in zip(names, files):
            data = upload.file.read(config.max_file_bytes + 1)
            if len(data) > config.max_file_bytes:  # a request limit: the sender must split the file off
                raise _refusal(413, f"{name}: file too large (limit {config.max_file_bytes} bytes).")
            contents.append(data)
        images, kept, skipped, too_large = [], [], [], 0
        for name, data in zip(names, contents):  # like `predict`: skip the unreadable, predict the rest
            try:
                images.append(decode_for(predictor, data, max_pixels=config.max_pixels))  # its camera bit depth
                kept.append(name)
            except ImageLoadError as exc:
                skipped.append({"path": name, "reason": str(exc).rstrip(".")})
                too_large += isinstance(exc, ImageTooLargeError)
        if not images:
            reasons = "; ".join(f"{item['path']}: {item['reason']}" for item in skipped)
            status = 413 if too_large == len(skipped) else 400  # only too-large images: a request too large
            raise _refusal(status, reasons if len(skipped) == 1 else f"No readable image among {len(skipped)}: {reasons}")
        start = time.perf_counter()
        results = task.result_rows(predictor, images, options)  # the Predictor holds its own lock
        rows = [{"filename": name, **_with_score(row)} for name, row in zip(kept, results)]
        return {"run_id": run_id, "predictions": rows, "skipped": skipped,
                "seconds": round(time.perf_counter() - start, 4)}

    app.state.config = asdict(config) | {"api_key": bool(config.api_key)}
    return app


def serve(app: Any, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    try:
        uvicorn.run(app, host=host, port=port, log_level="info")
    except OSError as exc:
        raise InspectorError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.") from exc
