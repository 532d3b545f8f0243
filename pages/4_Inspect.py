"""Inspect: try a trained model on new parts. The run's task decides what is shown: its prediction
options become the controls (OK classes and threshold for a classifier; the false-reject target and a
defect-type classifier for an anomaly model), its result rows the verdicts, its heatmap the overlay."""
from __future__ import annotations

from collections import Counter

import streamlit as st

from inspector import InspectorError
from inspector.data import IMAGE_EXTENSIONS
from inspector.reports import csv_text
from inspector.runs import best_run
from inspector.tasks.base import create_task
from ui import charts
from ui.data import rgb
from inspector.heatmap import fit_within
from ui.models import DISPLAY_SIDE, Decision, HeatView, configured, heat_view, result_row
from ui.state import BEST_HELP, page_setup, predictor, run_label, runs, show_flashes, user_errors, workspace

MAX_IMAGES = 60
MAX_HEATMAPS = 12
ZOOM_FROM = 1024  # an image with a side this long or longer also shows its worst tiles at full resolution
ZOOM_TILES = 3
UNREADABLE = "unreadable"
BADGE_COLOURS = {"OK": "green", "NG": "red", "UNSURE": "orange"}
OK_NAMES = ("ok", "good", "pass", "normal", "gut", "i.o.", "io")
page_setup("Inspect", ":material/search:")
ws = workspace()
st.title("Inspect new parts")
show_flashes()
models = [info for info in runs(ws) if info.has_model]
if not models:
    st.info("No trained model yet. Train one on the **Train** page first.")
    st.stop()
by_id = {m.run_id: m for m in models}
classifiers = [m.run_id for m in models if create_task(m.task).predicts_classes]

# -- model and decision rule: the controls are the prediction options the run's task accepts ------
a, b = st.columns(2)
run_a = a.selectbox("Model", list(by_id), key="model_a", index=list(by_id).index(best_run(models).run_id),
                     format_func=lambda r: run_label(by_id[r]), help=BEST_HELP)
task = create_task(by_id[run_a].task)
chosen = [by_id[run_a]]
typer = None
if "classifier" in task.accepts:
    typer = b.selectbox("Name the defect type with (optional)", [None, *classifiers], key="model_type",
                        format_func=lambda r: "no classifier" if r is None else run_label(by_id[r]),
                        help="The anomaly model decides OK or NG; a classifier says what an NG part looks like.")
elif task.predicts_classes:
    compare = b.checkbox("Compare with a second model", key="compare", disabled=len(classifiers) < 2)
    run_b = (b.selectbox("Second model", [r for r in classifiers if r != run_a], key="model_b",
                         format_func=lambda r: run_label(by_id[r])) if compare and len(classifiers) > 1 else None)
    chosen += [by_id[run_b]] if run_b else []

loaded = None
with user_errors("Loading the model"):
    loaded = predictor(by_id[run_a])
if loaded is None:
    st.stop()
c, d = st.columns(2)
ok_classes, threshold, target_frr = (), None, None
if "target_frr" in task.accepts:
    target_frr = c.slider("Reject at most this share of good parts", 0.01, 0.20,
                          float(round(loaded.target_frr, 2)), 0.01, key=f"frr_{run_a}", format="%.2f",
                          help="Moves the threshold using the good images' stored scores: no retraining.")
if "ok_classes" in task.accepts:
    classes = loaded.classes
    default_ok = [k for k in classes if k.lower() in OK_NAMES] or classes[:1]
    ok_classes = tuple(c.multiselect("Classes that count as OK", classes, default=default_ok, key=f"ok_{run_a}",
                                     help="Every other class is a defect."))
if "threshold" in task.accepts:
    threshold = d.slider("NG when the defect probability is at least", 0.05, 0.95, 0.5, 0.05, key="threshold",
                         help="Lower it to catch more defects (more false alarms); raise it for fewer false alarms.")
decision = Decision(ok_classes, threshold, target_frr, str(by_id[typer].path) if typer else None)
if target_frr is not None:
    tuned = configured(by_id[run_a], decision, with_classifier=False)[1]
    d.caption(f"Threshold from {tuned.n_good} good images: raw distance {tuned.threshold:.3g}. "
              "A score above 0.5 is NG.")
    if tuned.frr_warning:
        d.warning(tuned.frr_warning)

# -- images ------------------------------------------------------------------------------------
uploads = st.file_uploader("Drag and drop photos of new parts", accept_multiple_files=True, key="inspect_upload",
                           type=sorted(ext.lstrip(".") for ext in IMAGE_EXTENSIONS))
u1, u2, u3 = st.columns([1, 1, 2])
if u1.button("Use the sample new parts", key="use_samples"):
    st.session_state["inspect_samples"] = True
if st.session_state.get("inspect_samples") and u2.button("Clear the samples", key="clear_samples"):
    st.session_state["inspect_samples"] = False
    st.rerun()
show_heatmaps = u3.checkbox(f"Show heatmaps (first {MAX_HEATMAPS} images)", value=True, key="heatmaps")

images: list[tuple[str, bytes]] = [(f.name, f.getvalue()) for f in uploads or []]
if st.session_state.get("inspect_samples"):
    with user_errors("Loading the sample images"):
        folder = ws.new_parts_dir()
        images += [(p.name, p.read_bytes()) for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS]
if not images:
    st.caption("Drop images above (or use the sample new parts) to see the model's verdict.")
    st.stop()
if len(images) > MAX_IMAGES:
    st.warning(f"Showing the first {MAX_IMAGES} of {len(images)} images.")
    images = images[:MAX_IMAGES]


def table_row(name: str, model: str, row: dict) -> dict:
    """A result row flattened for the table and the CSV: one column per class probability."""
    flat = {k: round(v, 5) if isinstance(v, float) else v for k, v in row.items() if k != "probabilities"}
    flat.update({f"p({k})": round(p, 4) for k, p in row.get("probabilities", {}).items()})
    return {"image": name, "model": model, **flat}


def inspect_one(n: int, name: str, data: bytes) -> list[dict]:
    """Each chosen model's verdict and figures for one image, drawn by the run's task hooks."""
    rows = []
    for info in chosen:
        with user_errors(f"Predicting {name}"):
            row = result_row(info, data, decision)
            task_of_run = create_task(info.task)
            who = f"{info.name}: " if len(chosen) > 1 else ""
            badge = ""
            if row.get("verdict"):  # OK / NG / UNSURE (a frame with nothing to inspect: its reason follows)
                badge = f":{BADGE_COLOURS[row['verdict']]}-background[**{row['verdict']}**] "
            st.markdown(f"{who}{badge}{task_of_run.row_words(row)}")
            if task_of_run.predicts_classes:
                st.plotly_chart(charts.probabilities(row["probabilities"], set(ok_classes)),
                                key=f"p_{n}_{info.run_id}", config={"displayModeBar": False})
            elif "score" in row:
                st.progress(min(1.0, row["score"]), text=f"anomaly score {row['score']:.2f} (0.5 = threshold)")
            rows.append(table_row(name, info.name, row))
    return rows


def show_worst(view: HeatView) -> None:
    """The image's worst tiles side by side, each at full resolution, with its peak and where it is."""
    height, width = view.size
    st.caption(f"Zoom: the {len(view.worst)} worst tiles of this {width} x {height} px image, at full resolution.")
    for col, (crop, w) in zip(st.columns(ZOOM_TILES), view.worst):
        col.image(crop, caption=f"peak {w.peak:.2f} · x {w.left}-{w.left + w.side}, y {w.top}-{w.top + w.side}")


# -- results -----------------------------------------------------------------------------------
results: list[dict] = []
for n, (name, data) in enumerate(images):
    with st.container(border=True):
        try:
            image = rgb(data)
        except InspectorError as exc:  # a bad upload is reported (never counted as OK); the rest go on
            st.error(f"{name}: cannot be read ({exc}).")
            results += [{"image": name, "model": info.name, "verdict": UNREADABLE, "error": str(exc)} for info in chosen]
            continue
        large = max(image.shape[:2]) >= ZOOM_FROM  # its map is shown across the page, then its worst tiles
        cols = st.columns([1, 1, 2] if show_heatmaps and not large else [1, 2])
        cols[0].image(fit_within(image, DISPLAY_SIDE), caption=name, width="stretch")
        with cols[-1]:
            results += inspect_one(n, name, data)
        view = None
        if show_heatmaps:
            with st.container() if large else cols[1]:
                if n < MAX_HEATMAPS:
                    with user_errors("The heatmap"):
                        view = heat_view(chosen[0], data, decision, worst=ZOOM_TILES if large else 0)
                        st.image(view.overlay, width="stretch", caption=task.heatmap_caption)
                else:
                    st.caption("Heatmap shown for the first images only.")
        if view is not None and view.worst:
            show_worst(view)

if results:
    st.header("Results")
    verdicts = Counter(r["verdict"] for r in results if r["model"] == chosen[0].name)
    unreadable = f", **{verdicts[UNREADABLE]} unreadable** (not inspected)" if verdicts[UNREADABLE] else ""
    rule = (f"at most {target_frr:.0%} false rejects" if target_frr is not None
            else f"threshold {threshold:.0%}" if threshold is not None else "no OK/NG rule")
    unsure = f", **{verdicts['UNSURE']} UNSURE** (check by eye)" if verdicts["UNSURE"] else ""
    st.write(f"{len(images)} images: **{verdicts['NG']} NG**, {verdicts['OK']} OK{unsure}{unreadable} "
             f"(model {chosen[0].name}, {rule}).")
    st.dataframe(results, hide_index=True)
    st.download_button("Download CSV", csv_text(results), file_name="inspection_results.csv", mime="text/csv",
                       icon=":material/download:", key="download_csv")
