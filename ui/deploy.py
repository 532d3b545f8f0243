""""Export for the line" on a page: export a run in the background, show parity and speed, offer a zip.

    from ui.deploy import render_export
    render_export(run_dir)          # e.g. in the Compare page, under the selected run

The export (ONNX or OpenVINO conversion, parity check, speed) takes from a few seconds to a minute,
so it runs on the app's background runner (ui.state.runner), one export per run at a time; its
function never calls `st.*`. The session keeps only the handle's id; a fragment polls the handle
and redraws. A finished export is read from its bundle folder on disk.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import streamlit as st

from inspector.deploy.bundle import FORMATS, default_out_dir
from inspector.deploy.onnx_export import task_of_run
from inspector.jobs import JobHandle
from inspector.tasks.base import create_task
from ui.state import runner

_STATE_KEY = "deploy_exports"  # run folder -> id of this session's last export handle
FORMAT_HELP = ("onnx: model.onnx, run with onnxruntime anywhere. openvino: the model converted to OpenVINO's "
               "model.xml/.bin for Intel CPUs and GPUs (needs the openvino package in this app's environment "
               "and on the line PC).")


def _start(run_dir: Path, fmt: str, ok_classes: list[str]) -> JobHandle:
    """Start the export on the runner (or return the one already running for this run)."""
    def export(report, stop) -> dict:
        from inspector.deploy.bundle import export_bundle

        return export_bundle(run_dir, fmt=fmt, ok_classes=ok_classes,
                             progress=lambda message: report(text=message)).to_dict()

    return runner().start(f"export:{run_dir}", export)


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
    rule = create_task(parity["task"]).parity  # the task's own names: labels/verdicts, probability/score
    agree = (f"{rule.decision.capitalize()} agree", parity[f"{rule.decision}_agree"])
    # A bundle exported before the classifiers' rule compared logits has only the probability figure.
    key = rule.difference if rule.difference in parity else "max_abs_probability_diff"
    diff = (f"Max {rule.described if key == rule.difference else '|probability difference|'}", parity[key])
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
    st.caption("A self-contained folder: the model, predict.py (needs only onnxruntime or openvino, numpy and "
               "pillow), a sample image with its expected output, and a parity check against this app.")
    ids: dict[str, str] = st.session_state.setdefault(_STATE_KEY, {})
    fmt = st.selectbox("Format", FORMATS, key=f"fmt-{run_dir}", help=FORMAT_HELP)
    ok_classes: list[str] = []
    if "ok_classes" in create_task(task_of_run(run_dir)).accepts:  # e.g. an anomaly run keeps its own good classes
        ok_classes = st.multiselect("OK classes (adds an OK/NG verdict)", classes or [], key=f"ok-{run_dir}")
    key = str(run_dir)
    running = runner().latest(f"export:{run_dir}")
    if st.button("Export for the line", key=f"export-{run_dir}", disabled=running is not None and not running.finished):
        ids[key] = _start(run_dir, fmt, ok_classes).id
    _export_status(key, run_dir, fmt)


@st.fragment(run_every=1.0)
def _export_status(key: str, run_dir: Path, fmt: str) -> None:
    ids: dict[str, str] = st.session_state.setdefault(_STATE_KEY, {})
    handle = runner().get(ids[key]) if key in ids else None
    if handle is not None and not handle.finished:
        st.info((handle.text or "starting") + "...")
        return
    if handle is not None and handle.status == "failed":
        st.error(handle.error)  # kept until the runner's time-to-live drops it
    elif handle is not None:  # read: from now on the bundle on disk shows the result
        runner().take(ids.pop(key))
    folder = Path(handle.result["path"]) if handle is not None and handle.result else default_out_dir(run_dir, fmt)
    if (folder / "bundle.json").is_file():
        _show_bundle(folder)
