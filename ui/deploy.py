""""Export for the line" on a page: export a run in a worker thread, show parity and speed, offer a zip.

    from ui.deploy import render_export
    render_export(run_dir)          # e.g. in the Compare page, under the selected run

The export (ONNX conversion, parity check, speed) takes from a few seconds to a minute, so it runs
in a worker thread that never calls `st.*`; a fragment polls its state (per user, in
st.session_state) and redraws.
"""
from __future__ import annotations

import io
import json
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from inspector.deploy.bundle import FORMATS, default_out_dir
from inspector.errors import InspectorError

_STATE_KEY = "deploy_exports"


@dataclass
class _ExportJob:
    """One export in flight or done; the worker writes, the page reads."""

    done: threading.Event = field(default_factory=threading.Event)
    result: dict[str, Any] | None = None
    error: str | None = None
    messages: list[str] = field(default_factory=list)


def _start(run_dir: Path, fmt: str, ok_classes: list[str]) -> _ExportJob:
    from inspector.deploy.bundle import export_bundle

    job = _ExportJob()

    def work() -> None:
        try:
            job.result = export_bundle(run_dir, fmt=fmt, ok_classes=ok_classes, progress=job.messages.append).to_dict()
        except InspectorError as exc:
            job.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown in the page, not lost in a thread
            job.error = f"Unexpected {type(exc).__name__}: {exc}"
        finally:
            job.done.set()

    threading.Thread(target=work, name=f"export-{run_dir.name}", daemon=True).start()
    return job


def bundle_zip(folder: Path) -> bytes:
    """The bundle folder as a zip, files under one top folder named after it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, Path(folder.name) / path.relative_to(folder))
    return buffer.getvalue()


def _show_bundle(folder: Path) -> None:
    parity = json.loads((folder / "parity.json").read_text(encoding="utf-8"))
    manifest = json.loads((folder / "bundle.json").read_text(encoding="utf-8"))
    cols = st.columns(4)
    if parity.get("task") == "anomaly":
        agree, diff = ("Verdicts agree", parity["verdicts_agree"]), ("Max relative score difference",
                                                                     parity["max_rel_raw_score_diff"])
    else:
        agree, diff = ("Labels agree", parity["labels_agree"]), ("Max probability difference",
                                                                 parity["max_abs_probability_diff"])
    cols[0].metric(agree[0], f"{agree[1]}/{parity['n_images']}")
    cols[1].metric(diff[0], f"{diff[1]:.1e}",
                   help=f"Allowed: {parity['tolerance']:.0e}. Worst image: {parity['worst_image']}")
    cols[2].metric("Speed (images/s)", f"{manifest['images_per_second']:.1f}", help=manifest["speed_settings"])
    cols[3].metric("Export time", f"{manifest['export_seconds']:.0f} s")
    st.caption(f"Bundle in {folder}. On the line PC: `pip install -r requirements.txt` then "
               "`python predict.py IMAGE... --json` (no PyTorch needed).")
    st.download_button("Download the bundle (.zip)", bundle_zip(folder), file_name=f"{folder.parent.name}-"
                       f"{folder.name}.zip", mime="application/zip", key=f"zip-{folder}")


def render_export(run_dir: str | Path, classes: list[str] | None = None) -> None:
    """The "Export for the line" section for one run."""
    run_dir = Path(run_dir)
    st.subheader("Export for the line")
    st.caption("A self-contained folder: model.onnx, predict.py (needs only onnxruntime, numpy and pillow), "
               "a sample image with its expected output, and a parity check against this app.")
    jobs: dict[str, _ExportJob] = st.session_state.setdefault(_STATE_KEY, {})
    fmt = st.selectbox("Format", FORMATS, key=f"fmt-{run_dir}",
                       help="openvino is not implemented yet: OpenVINO can read the ONNX bundle's model.onnx.")
    ok_classes = st.multiselect("OK classes (adds an OK/NG verdict)", classes or [], key=f"ok-{run_dir}")
    key = str(run_dir)
    if st.button("Export for the line", key=f"export-{run_dir}", disabled=key in jobs and not jobs[key].done.is_set()):
        jobs[key] = _start(run_dir, fmt, ok_classes)
    _export_status(key, run_dir, fmt)


@st.fragment(run_every=1.0)
def _export_status(key: str, run_dir: Path, fmt: str) -> None:
    job: _ExportJob | None = st.session_state.get(_STATE_KEY, {}).get(key)
    if job is not None and not job.done.is_set():
        st.info((job.messages[-1] if job.messages else "starting") + "...")
        return
    if job is not None and job.error:
        st.error(job.error)
    folder = Path(job.result["path"]) if job is not None and job.result else default_out_dir(run_dir, fmt)
    if (folder / "bundle.json").is_file():
        _show_bundle(folder)
