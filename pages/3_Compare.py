"""Compare: all runs in a table, curves overlaid (live), confusion matrices, per-class F1, paired predictions."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from inspector import Run, RunStore
from inspector.runs import best_run
from inspector.comparison import PairedPrediction, compare_runs, paired_predictions, time_per_image
from inspector.evaluation import WIDE_INTERVAL, ClassificationEvaluation, DetectionEvaluation
from inspector.tasks.base import create_task
from ui import charts, live
from ui.data import checked_dataset, thumbnail_of
from ui.deploy import render_export
from ui.evidence import paired_caption, render_comparison
from ui.transfer import render_transfer_runs
from ui.state import (BEST_HELP, flash, page_setup, run_label, runner, runs, show_flashes, show_work, user_errors,
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
    """One run's row: short headers, the secondary fields (backbone and strategy are in the name,
    the run id and size in `inspector runs`) left out."""
    s = info.run_summary  # empty figures until the run has finished
    return {"run": info.name, "task": info.task, "status": info.status,
            **{c.label: (c.text(s.value(c.key)) if c.format == "" else s.value(c.key)) for c in task_columns},
            "train (s)": s.train_seconds or None, "ms/image": s.inference_ms_per_image,
            "ms, one by one": speeds.get(info.run_id)}


def column_config(column) -> object:
    """A Streamlit column for one of a task's summary figures (`tasks.base.Column`)."""
    if column.format:
        return st.column_config.NumberColumn(format=column.format, help=column.help or None, width="small")
    return st.column_config.TextColumn(help=column.help or None, width="small")


NUMBER_FORMATS = {"train (s)": "%.0f", "ms/image": "%.1f", "ms, one by one": "%.1f"}
COLUMN_HELP = {"ms/image": "Inference time per image, measured right after training with 32 images per batch.",
               "ms, one by one": "Measured with the button below: one image per call, as on an inspection station.",
               "train (s)": "Training time in seconds."}


def run_table(rows: list[dict]) -> tuple[list[dict], dict]:
    """(rows, column_config) for st.dataframe: a column empty for every run is left out, so are the task
    when all runs share one and the status when all have completed; in a column with some empty cells
    every cell becomes text and an empty one "-" (Streamlit has no blank for a missing number: it
    writes "None")."""
    texts = {c.label: c.text for c in task_columns}
    keys = [k for k in rows[0] if any(r[k] not in (None, "-") for r in rows)]
    if len({r["task"] for r in rows}) == 1:
        keys.remove("task")
    if all(r["status"] == "completed" for r in rows):
        keys.remove("status")
    formats = {**{c.label: c.format for c in task_columns}, **NUMBER_FORMATS}
    config: dict = {"run": st.column_config.TextColumn(width="medium")}
    for column in task_columns:
        config[column.label] = column_config(column)
    for key, fmt in NUMBER_FORMATS.items():
        config[key] = st.column_config.NumberColumn(format=fmt, help=COLUMN_HELP[key], width="small")
    for key in keys:
        values = [r[key] for r in rows]
        if None in values and formats.get(key):
            text = texts.get(key, lambda v, f=formats[key]: f % v)
            for r in rows:
                r[key] = "-" if r[key] is None else text(r[key])
            config[key] = st.column_config.TextColumn(help=(config.get(key) or {}).get("help"), width="small")
        elif None in values:
            for r in rows:
                r[key] = "-" if r[key] is None else r[key]
    return [{k: r[k] for k in keys} for r in rows], {k: v for k, v in config.items() if k in keys}


st.caption("Newest first; click a column header to sort. Accuracy is measured on images the model did not train "
           "on. Backbone and strategy are in the run's name; `inspector runs` lists every field.")
if any(i.summary and i.summary.warning for i in infos):
    st.warning(f"Some accuracies have a 95% interval wider than {WIDE_INTERVAL * 100:.0f} points: with this few "
               "images, differences "
               "between those models may be luck. Add images per class before choosing between them.",
               icon=":material/warning:")
table, table_columns = run_table([table_row(i) for i in infos])
st.dataframe(table, hide_index=True, column_config=table_columns)
render_transfer_runs(infos)  # runs trained with another line's images: the guard's three figures

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
            final = RunStore(ws.runs_dir).rename(target, new_name)
            flash(f"Renamed to '{final}'." + ("" if final == new_name.strip() else " (that name was taken)"))
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
    curved = [i for i in chosen if create_task(i.task).live_curves]  # tasks that train in epochs
    series = {i.name: live.run_events(i.path) for i in curved}
    one_step = [i for i in curved if charts.fitted_in_one_step(series[i.name])]
    if len(one_step) < len(curved):
        show_folds = st.checkbox("Show cross-validation folds", key="compare_folds")
        st.plotly_chart(charts.curves(series, show_folds), key="compare_curves")
        st.caption("Validation curves: the kept model's own when it was checked on held-out images; when it "
                   "trained on every image (too few for a hold-out split), the mean of the cross-validation "
                   "folds, each a model trained without the images it is scored on. The legend says which.")
    for info in one_step:
        words = create_task(info.task).result_words(info.run_summary)
        st.markdown(f"**{info.name}**: fitted in one step, so no curves: {words}.")


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
        export_ids = [i.run_id for i in exportable]
        target = st.selectbox("Model to export", export_ids, key="export_run", index=export_ids.index(
            best_run(exportable).run_id), format_func=lambda r: run_label(by_id[r]), help=BEST_HELP)
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
            st.caption(paired_caption(r))


@st.fragment(run_every=1.0)
def disagreement_gallery() -> None:
    show_work(work_key, "Running both models on the images (in the background)...", show_disagreements,
              "Comparing failed")


disagreement_gallery()
