"""Compare: all runs in a table, curves overlaid (live), confusion matrices, per-class F1, paired predictions."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import streamlit as st

from inspector import Run, RunStore
from inspector.comparison import PairedPrediction, compare_runs, paired_predictions, time_per_image
from inspector.evaluation import WIDE_INTERVAL, ClassificationEvaluation, DetectionEvaluation
from inspector.tasks.base import create_task
from ui import charts, live
from ui.data import checked_dataset, thumbnail_of
from ui.deploy import render_export
from ui.evidence import render_comparison
from ui.state import (flash, page_setup, run_label, runner, runs, show_flashes, show_work, user_errors,
                      workspace)

page_setup("Compare", ":material/compare:")
ws = workspace()
st.title("Compare models")
show_flashes()
infos = runs(ws)
if not infos:
    st.info("No training runs yet. Start one on the **Train** page.")
    st.stop()
by_id = {info.run_id: info for info in infos}
speeds: dict[str, float] = st.session_state.setdefault("inference_ms", {})


shown_tasks = [create_task(name) for name in dict.fromkeys(i.task for i in infos)]
task_columns = [c for task in shown_tasks for c in task.columns]  # each task's own figures, in task order


def table_row(info) -> dict:
    s = info.run_summary  # empty figures until the run has finished
    return {"name": info.name, "task": info.task, "backbone": info.backbone,
            "strategy": info.strategy, "status": info.status,
            **{c.label: (c.text(s.value(c.key)) if c.format == "" else s.value(c.key)) for c in task_columns},
            "train time (s)": s.train_seconds or None, "parameters (M)": s.params_m,
            "inference, batch of 32 (ms/image)": s.inference_ms_per_image,
            "inference, one image at a time (ms)": speeds.get(info.run_id),
            "started": dt.datetime.fromtimestamp(info.created).strftime("%Y-%m-%d %H:%M"), "run id": info.run_id}


def column_config(column) -> object:
    """A Streamlit column for one of a task's summary figures (`tasks.base.Column`)."""
    if column.format == "percent":
        return st.column_config.ProgressColumn(column.label, format="percent", min_value=0, max_value=1,
                                               help=column.help or None)
    if column.format:
        return st.column_config.NumberColumn(format=column.format, help=column.help or None)
    return st.column_config.TextColumn(help=column.help or None)


st.caption("Click a column header to sort. Accuracy is measured on images the model did not train on.")
if any(i.summary and i.summary.warning for i in infos):
    st.warning(f"Some accuracies have a 95% interval wider than {WIDE_INTERVAL * 100:.0f} points: with this few "
               "images, differences "
               "between those models may be luck. Add images per class before choosing between them.",
               icon=":material/warning:")
st.dataframe([table_row(i) for i in infos], hide_index=True, column_config={
    **{c.label: column_config(c) for c in task_columns},
    "inference, batch of 32 (ms/image)": st.column_config.NumberColumn(
        format="%.1f", help="Measured right after training, 32 images per batch."),
    "inference, one image at a time (ms)": st.column_config.NumberColumn(
        format="%.1f", help="Measured with the button below: one image per call, as on an inspection station.")})

dataset = None
with user_errors("Reading the dataset"):
    dataset, _ = checked_dataset(ws)
with_model = [i for i in infos if i.has_model and create_task(i.task).predicts_classes]
if with_model and dataset is not None and st.button("Measure inference time", key="measure",
                                                    help="Runs each model on 8 of your images, one at a time."):
    sample = dataset.paths[:: max(1, len(dataset) // 8)][:8]
    targets = [(i.run_id, i.path) for i in with_model]

    def measure_all(report, stop) -> dict[str, float]:
        timings = {}
        for k, (run_id, path) in enumerate(targets):
            if stop.is_set():
                break
            timings[run_id] = time_per_image(path, sample)
            report((k + 1) / len(targets))
        return timings

    runner().start("inference_timing", measure_all)


@st.fragment(run_every=1.0)
def timing_progress() -> None:
    work = runner().latest("inference_timing")
    if work is None or work.status == "completed" and not speeds_pending():
        return
    if not work.finished:
        st.progress(work.fraction, text="Timing each model in the background...")
    elif work.status == "failed":
        st.error(f"Measuring failed: {work.error}")
    else:
        speeds.update(work.result)
        st.rerun()  # redraw the table with the new column


def speeds_pending() -> bool:
    work = runner().latest("inference_timing")
    return work is not None and work.status == "completed" and any(k not in speeds for k in work.result)


timing_progress()

with st.expander("Rename or delete a run"):
    a, b, c = st.columns([2, 2, 1])
    target = a.selectbox("Run", list(by_id), format_func=lambda r: run_label(by_id[r]), key="manage_run")
    new_name = b.text_input("New name", key="new_run_name")
    if c.button("Rename", key="rename_run", disabled=not new_name.strip()):
        with user_errors("Renaming"):
            RunStore(ws.runs_dir).rename(target, new_name)
            flash(f"Renamed to '{new_name.strip()}'.")
            st.rerun()
    sure = st.checkbox("Yes, delete this run and its model", key="delete_run_sure")
    if st.button("Delete run", key="delete_run", disabled=not sure):
        with user_errors("Deleting"):
            RunStore(ws.runs_dir).delete(target)
            speeds.pop(target, None)
            flash(f"Deleted run '{by_id[target].name}'.")
            st.rerun()

st.header("Side by side")
default = [i.run_id for i in infos if i.status in ("completed", "running")][:2]
picked = st.multiselect("Runs to compare", list(by_id), default=default, key="compare_runs",
                        format_func=lambda r: run_label(by_id[r]))
chosen = [by_id[r] for r in picked]
any_running = any(i.status == "running" for i in chosen)


@st.fragment(run_every=2 if any_running else None)
def overlaid_curves() -> None:
    show_folds = st.checkbox("Show cross-validation folds", key="compare_folds")
    series = {i.name: live.run_events(i.path) for i in chosen}
    st.plotly_chart(charts.curves(series, show_folds), key="compare_curves")


if chosen:
    overlaid_curves()
    evaluations = {i.name: Run(i.path).evaluation_report() for i in chosen}
    ready = {name: ev for name, ev in evaluations.items() if isinstance(ev, ClassificationEvaluation)}
    detectors = {name: ev for name, ev in evaluations.items() if isinstance(ev, DetectionEvaluation)}
    if detectors:
        cols = st.columns(2)
        for k, (name, ev) in enumerate(detectors.items()):
            with cols[k % 2]:
                st.plotly_chart(charts.anomaly_histogram(ev, name), key=f"hist_{k}")
                st.caption(ev.method)
    if ready:
        cols = st.columns(3)
        for k, (name, ev) in enumerate(ready.items()):
            with cols[k % len(cols)]:
                st.plotly_chart(charts.confusion(ev.confusion_matrix, ev.classes, name), key=f"cm_{k}")
                st.caption(ev.method)
        st.plotly_chart(charts.per_class_f1({n: {c: v.f1 for c, v in ev.per_class.items()}
                                             for n, ev in ready.items()}), key="f1_bars")
    missing = [n for n, ev in evaluations.items() if not ev]
    if missing:
        st.caption(f"No evaluation yet for: {', '.join(missing)} (still training, stopped early or failed).")

# -- export ---------------------------------------------------------------------------------------
exportable = [i for i in infos if i.has_model and create_task(i.task).parity is not None]
if exportable:
    with st.expander("Export a model for the line (ONNX bundle, checked against this app)"):
        target = st.selectbox("Model to export", [i.run_id for i in exportable], key="export_run",
                              format_func=lambda r: run_label(by_id[r]))
        render_export(by_id[target].path, by_id[target].run_summary.classes)

# -- paired comparison ---------------------------------------------------------------------------
scored = [i for i in infos if create_task(i.task).predicts_classes and i.summary and i.summary.val_accuracy is not None]
if len(scored) >= 2:
    st.header("Is model A really better than B?")
    a, b = st.columns(2)
    ids = [i.run_id for i in scored]
    sig_a = a.selectbox("Model A", ids, key="sig_a", format_func=lambda r: run_label(by_id[r]))
    sig_b = b.selectbox("Model B", ids, index=1, key="sig_b", format_func=lambda r: run_label(by_id[r]))
    if sig_a != sig_b:
        with user_errors("Comparing the two models"):
            render_comparison(compare_runs(by_id[sig_a].path, by_id[sig_b].path, runs_dir=ws.runs_dir))

st.header("Where two models disagree")
if len(with_model) < 2 or dataset is None:
    st.info("Train at least two models to compare their predictions image by image.")
    st.stop()
a, b = st.columns(2)
ids = [i.run_id for i in with_model]
run_a = a.selectbox("Model A", ids, key="pair_a", format_func=lambda r: run_label(by_id[r]))
run_b = b.selectbox("Model B", ids, index=1, key="pair_b", format_func=lambda r: run_label(by_id[r]))
st.caption("Both models see the same images: every image in the workspace (at most 300). Images a model "
           "trained on are included, so look at the disagreements rather than the totals.")
work_key = f"paired:{run_a}:{run_b}"
if st.button("Compare predictions", key="pair_go", disabled=run_a == run_b):
    samples = [(s.path, s.label) for s in dataset.samples[:: max(1, len(dataset) // 300)][:300]]
    runner().start(work_key, lambda report, stop: paired_predictions(
        by_id[run_a].path, by_id[run_b].path, samples, on_progress=report, stop_event=stop))


def show_disagreements(rows: list[PairedPrediction]) -> None:
    differ = [r for r in rows if r.disagree]
    m1, m2, m3 = st.columns(3)
    m1.metric("Images", len(rows))
    m2.metric("Models agree", f"{1 - len(differ) / max(len(rows), 1):.0%}")
    m3.metric("Disagreements", len(differ))
    if not differ:
        st.success("The two models give the same class for every image.")
    cols = st.columns(6)
    for k, r in enumerate(differ[:36]):
        with cols[k % 6]:
            thumb = thumbnail_of(Path(r.path))
            if thumb:
                st.image(thumb, width="stretch")
            mark = lambda label: "✅" if label == r.true else "❌"  # noqa: E731
            st.caption(f"**{Path(r.path).name}** (labeled {r.true})  \n"
                       f"A: {r.a} {r.pa:.0%} {mark(r.a)}  \nB: {r.b} {r.pb:.0%} {mark(r.b)}")


@st.fragment(run_every=1.0)
def disagreement_gallery() -> None:
    show_work(work_key, "Running both models on the images (in the background)...", show_disagreements,
              "Comparing failed")


disagreement_gallery()
