"""Train: pick a backbone and a strategy, start a background training, watch it live."""
from __future__ import annotations

import os
import socket

import streamlit as st

from inspector import AUGMENT_PRESETS, InspectorError, Run, TrainConfig, create_task, list_backbones, list_tasks
from inspector.jobs import TRAINING, JobHandle
from inspector.tasks.anomaly import good_classes, min_guaranteed_frr
from inspector.engine import TrainEnd
from inspector.evaluation import DetectionEvaluation
from inspector.backbones import hub_reachable, offline_backbones
from inspector.engine.features import default_feature_cache_dir
from inspector.evidence.transferability import BackboneRank, rank_backbones
from ui.evidence import render_ranking
from inspector.config import RESIZE_MODES
from ui import charts, live
from ui.data import checked_dataset
from ui.state import (flash, page_setup, runner, runs, show_flashes, show_work, user_errors,
                      workspace)

page_setup("Train", ":material/model_training:")
ws = workspace()
jobs = runner()
st.title("Train a model")
show_flashes()


@st.cache_data(ttl=60, show_spinner=False)
def backbone_rows() -> list[dict]:
    return [b.to_dict() for b in list_backbones()]


@st.cache_resource(show_spinner=False)
def device():
    """The device training would use here (auto: the GPU when there is one)."""
    from inspector.engine.device import resolve_device

    return resolve_device("auto")


WEIGHTS = {"bundled": "weights bundled (offline)", "cached": "weights cached (offline)",
           "download": "weights need a download"}

dataset = report = None
with user_errors("Reading the dataset"):
    dataset, report = checked_dataset(ws)
if dataset is None:
    st.info("There are no images to train on yet. Add images on the **Data** page, "
            "or load the sample data on the **Home** page.")
else:
    st.caption(f"Dataset: {len(dataset)} images in {len(dataset.classes)} "
               f"{'class' if len(dataset.classes) == 1 else 'classes'} "
               f"({', '.join(f'{k} {v}' for k, v in dataset.counts().items())}).")

progress_area = st.container()

# -- task ---------------------------------------------------------------------------------------
tasks = list(list_tasks())
task = st.radio("What do you have?", tasks, format_func=lambda name: create_task(name).choice or name, key="task",
                horizontal=True, captions=[list_tasks()[name] for name in tasks])
chosen_task = create_task(task)
ok_classes: tuple[str, ...] | None = None
target_frr = 0.05
if "target_frr" in chosen_task.accepts and dataset is not None:  # learns from good parts: which, and how strict
    st.header("Good parts")
    try:
        guessed = good_classes(dataset.classes)
    except InspectorError:
        guessed = []
    ok_classes = tuple(st.multiselect("Classes of good parts", dataset.classes, default=guessed, key="ok_classes",
                                      help="Only these images are learnt from; images of the other classes only "
                                           "measure how many defects are caught.")) or None
    n_good = sum(dataset.counts()[c] for c in ok_classes or ())
    target_frr = st.slider("Reject at most this share of good parts", 0.01, 0.20, 0.05, 0.01, key="target_frr",
                           format="%.2f", help="The threshold is set from your good images so that, on new good "
                                               "parts, at most this share is rejected (split-conformal guarantee).")
    best = min_guaranteed_frr(n_good)
    st.caption(f"{n_good} good images: the lowest false-reject rate they can guarantee is {best:.1%}.")
    if best > target_frr:
        st.warning(f"Too few good images for {target_frr:.0%}: add at least "
                   f"{max(0, int(round(1 / target_frr)) - 1 - n_good)} more, or accept {best:.1%}.")
task_problem = None
if dataset is not None:
    try:
        chosen_task.check_dataset(dataset, TrainConfig(task=task, ok_classes=ok_classes))
    except InspectorError as exc:
        task_problem = str(exc)
        st.error(f"The dataset needs fixing before training: {task_problem}")

# -- backbone -----------------------------------------------------------------------------------
st.header("1. Backbone")
rows = backbone_rows()
query = st.text_input("Search", placeholder="name or family, e.g. efficientnet, resnet, vit", key="bb_query")
matches = [r for r in rows if query.strip().lower() in f"{r['name']} {r['family']} {r['summary']}".lower()] or rows
if query.strip() and matches is rows:
    st.caption(f"Nothing matches '{query}'; showing all backbones.")
names = [r["name"] for r in matches]
backbone = st.selectbox("Backbone", names, key="backbone",
                        format_func=lambda n: f"{n} ({WEIGHTS[next(r for r in rows if r['name'] == n)['weights']]})")
chosen = next(r for r in rows if r["name"] == backbone)
st.caption(f"{chosen['summary']} {chosen['params_m']} M parameters, {chosen['input_size']} px input.")
with st.expander(f"Compare the {len(matches)} backbones"):
    st.dataframe([{"backbone": r["name"], "family": r["family"], "parameters (M)": r["params_m"],
                   "input size (px)": r["input_size"], "weights": WEIGHTS[r["weights"]], "notes": r["summary"]}
                  for r in matches], hide_index=True)
startable = True
if not chosen["available_offline"]:
    if hub_reachable():
        st.info(f"The pretrained weights of {backbone} will be downloaded from the Hugging Face hub when "
                "training starts.")
    else:
        startable = False
        offline = ", ".join(r["name"] for r in rows if r["available_offline"])
        st.warning(f"{backbone} needs its pretrained weights from the internet (Hugging Face hub), and the hub "
                   f"cannot be reached from this computer. Pick one that works offline: {offline}.")

@st.fragment(run_every=1.0)
def ranking_panel() -> None:
    show_work("ranking", "Ranking the offline backbones on your images...", render_ranking, "The ranking failed")


if dataset is not None and chosen_task.predicts_classes and task_problem is None:  # LogME ranks class features
    with st.expander("Which backbone should I try first?"):
        st.caption("Ranks the offline backbones on your images by LogME (You et al., 2021), a transferability "
                   "estimate computed from frozen features in seconds, before any training.")
        if st.button("Rank the backbones on my images", key="rank_backbones"):
            data_dir = ws.data_dir

            def rank(report, stop):
                candidates = offline_backbones()
                done = []

                def one_done(row: BackboneRank) -> None:
                    done.append(row)
                    report(len(done) / max(len(candidates), 1))
                return rank_backbones(data_dir, candidates, cache_dir=default_feature_cache_dir(), on_candidate=one_done)

            runner().start("ranking", rank)
        ranking_panel()

# -- strategy -----------------------------------------------------------------------------------
strategy = "auto"
strategies = chosen_task.strategies()
if len(strategies) > 1:  # a task with one strategy has nothing to choose
    st.header("2. Strategy")
    if dataset is not None and task_problem is None:
        with user_errors("Recommending a strategy"):
            auto_pick, why = chosen_task.choose_strategy(TrainConfig(task=task), dataset, device())
            st.caption(f"Recommended for your data: **auto**, which would run **{auto_pick.name}**: {why}.")
    strategy = st.radio("Strategy", list(strategies), key="strategy", captions=list(strategies.values()),
                        horizontal=False)

# -- advanced -----------------------------------------------------------------------------------
with st.expander("Advanced settings"):
    a, b, c, d = st.columns(4)
    epochs = a.number_input("Epochs (0 = strategy default)", 0, 1000, 0, key="epochs",
                            help="Fine-tuning strategies only: the linear probe fits its classifier in one closed-form step.")
    image_size = b.number_input("Image size in px (0 = backbone default)", 0, 1024, 0, step=32, key="image_size")
    augment = c.selectbox("Augmentation", list(AUGMENT_PRESETS), key="augment",
                          index=list(AUGMENT_PRESETS).index("industrial"), help="See the preview on the Data page.")
    resize = d.selectbox("Resize", RESIZE_MODES, key="resize_mode",
                         help="stretch: the whole part fills the input (measured best) | letterbox: keep the aspect ratio, pad | crop: keep it, cut the edges")
    e, f, g, h = st.columns(4)
    batch_size = e.number_input("Batch size", 1, 1024, 16, key="batch_size")
    lr = f.number_input("Learning rate (0 = default)", 0.0, 0.99, 0.0, format="%.5f", key="lr")
    seed = g.number_input("Random seed", 0, 2**31 - 1, 0, key="seed")
    run_name = h.text_input("Run name (optional)", key="run_name")
    st.caption(AUGMENT_PRESETS[augment][0])
    any_orientation = st.checkbox(
        "Parts can lie in any orientation", value=True, key="any_orientation",
        help="The frozen-feature classifier then looks at each image in its 8 flips and quarter turns: "
             "steadier with few images, slower to predict. Untick it when orientation itself is a defect "
             "(e.g. a part mounted upside down).")
    bit_depth = None  # inferred from the dataset; offered only where 16-bit images make it matter
    if dataset is not None and dataset.bit_depth is not None:
        inferred = f"inferred: {dataset.bit_depth}-bit"
        choice = st.selectbox("Camera bit depth of the 16-bit images", [inferred, 10, 12, 14, 16], key="bit_depth",
                              help="One brightness mapping for every image (value x 255 / (2^bits - 1)), stored "
                                   "with the model. The inferred depth is the fewest bits that hold the dataset's "
                                   "brightest value; choose the camera's own if you know it.")
        bit_depth = None if choice == inferred else int(choice)

can_train = dataset is not None and task_problem is None and startable
if st.button("Train", type="primary", icon=":material/play_arrow:", disabled=not can_train, key="train"):
    with user_errors("Starting the training"):
        config = TrainConfig(task=task, ok_classes=ok_classes, target_frr=float(target_frr),
                             backbone=backbone, strategy=strategy, epochs=int(epochs) or None,
                             image_size=int(image_size) or None, augment=augment, resize_mode=resize,
                             batch_size=int(batch_size), lr=float(lr) or None, seed=int(seed),
                             any_orientation=any_orientation, name=run_name.strip() or None, bit_depth=bit_depth)
        # The dataset this page just verified: the worker neither discovers nor checks the images again.
        job = jobs.submit_training(dataset, config, ws.runs_dir)
        flash(f"Training queued ({job.id}). It runs in the background: you can leave this page.")
        st.rerun()


# -- live view -----------------------------------------------------------------------------------
def job_title(job: JobHandle) -> str:
    kind = job.config.strategy if len(create_task(job.config.task).strategies()) > 1 else job.config.task
    return job.config.name or f"{job.config.backbone} / {kind}"


def show_running(job: JobHandle) -> None:
    events = live.handle_events(job)  # none until the run folder exists: progress says "Preparing"
    progress = live.progress(events)
    st.subheader(f"Training: {job_title(job)}")
    st.progress(progress.fraction, text=progress.text)
    job_task = create_task(job.config.task)  # its live panels: a best-so-far figure, curves
    memory = f", {progress.memory_mb:.0f} MB GPU memory in use" if progress.memory_mb else ""
    st.caption(f"Device: {progress.device or '-'}{memory}")
    m2, m3, m4 = st.columns(3)
    m2.metric("Images/s", f"{progress.images_per_s:.0f}" if progress.images_per_s else "-")
    m3.metric("Time left (ETA)", live.duration(progress.eta_s))
    if job_task.live_best:
        field, label = job_task.live_best
        best = max((getattr(e, field) for e in live.epochs(events) if getattr(e, field, None) is not None),
                   default=None)
        m4.metric(label, f"{best:.1%}" if best is not None else "-",
                  help="Measured after training by cross-validation when there are few images.")
    if job_task.live_curves:
        show_chart(job.id, events)
    if st.button("Stop", key=f"stop_{job.id}", icon=":material/stop:",
                 help="Ends within one batch; the best model so far is kept."):
        job.stop()
        st.toast("Stopping after the current batch...")


def show_chart(key: str, events: list) -> None:
    if not live.epochs(events, None):
        st.caption("The curves appear after the first epoch.")
        return
    show_folds = bool(live.folds(events)) and st.checkbox("Show cross-validation folds", key=f"folds_{key}")
    st.plotly_chart(charts.curves({"this run": events}, show_folds), key=f"curves_{key}")


def show_finished(job: JobHandle) -> None:
    events = live.handle_events(job)
    end = live.final_event(events)
    title = job_title(job)
    if job.status == "failed":
        st.error(f"**{title}** failed: {job.error or getattr(end, 'message', 'unknown error')}")
    elif not isinstance(end, TrainEnd):
        st.warning(f"**{title}** was cancelled before it started.")
    else:
        show_result(job, title, end, events)
    if st.button("Dismiss", key=f"dismiss_{job.id}", help="Hide this message (the run stays on Compare)."):
        jobs.take(job.id)  # read: drop it from the runner
        st.rerun(scope="fragment")


def show_result(job: JobHandle, title: str, end: TrainEnd, events: list) -> None:
    summary = end.run_summary
    text = f"**{title}** {job.status} in {live.duration(summary.train_seconds)}: {live.result_words(summary)}."
    (st.success if job.status == "completed" else st.warning)(
        text + (" The best model so far was kept." if job.status == "stopped" else "")
        + " Try it on the **Inspect** page or compare it on **Compare**.")
    if summary.warning:
        st.warning(summary.warning.capitalize(), icon=":material/warning:")
    if summary.metrics.get("frr_warning"):
        st.warning(summary.metrics["frr_warning"], icon=":material/warning:")
    evaluation = Run(job.run_dir).evaluation_report() if job.run_dir else None
    if isinstance(evaluation, DetectionEvaluation):
        st.plotly_chart(charts.anomaly_histogram(evaluation, f"{title}: scores"), key=f"hist_{job.id}")
    with st.expander("Curves", expanded=False):
        show_chart(job.id, events)


def trained_here(path) -> bool:
    """True for a run this server process writes: its handle shows it, also while it prepares
    (the run folder exists before TrainStart names it)."""
    try:
        owner = Run(path).record().get("owner") or {}
    except InspectorError:
        return False
    return owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname()


def other_process_runs(known: set[str], preparing: bool) -> None:
    """Runs training in another process (e.g. the command line, torchrun, Ray): read-only live view."""
    for info in runs(ws):
        if info.status == "running" and str(info.path) not in known and not (preparing and trained_here(info.path)):
            events = live.run_events(info.path)
            st.subheader(f"Training elsewhere: {info.name}")
            st.progress(live.progress(events).fraction, text=live.progress(events).text)
            show_chart(info.run_id, events)


@st.fragment(run_every=1.5)
def live_panel() -> None:
    all_jobs = jobs.handles(TRAINING)
    running = [j for j in all_jobs if j.status == "running"]
    queued = [j for j in all_jobs if j.status == "queued"]
    finished = [j for j in reversed(all_jobs) if j.finished][:3]
    for job in running:
        show_running(job)
    if queued:
        st.subheader("Queued")
        for job in queued:
            q1, q2 = st.columns([4, 1])
            q1.write(f"{job_title(job)}: waits for the training before it.")
            if q2.button("Cancel", key=f"cancel_{job.id}"):
                job.stop()
                st.rerun(scope="fragment")
    other_process_runs({str(j.run_dir) for j in all_jobs if j.run_dir}, any(j.run_dir is None for j in running))
    if finished:
        st.subheader("Finished")
        for job in finished:
            show_finished(job)


with progress_area:
    live_panel()
