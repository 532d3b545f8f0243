"""Train: pick a backbone and a strategy, start a background training, watch it live."""
from __future__ import annotations

import contextlib
import itertools
import os
import socket

import streamlit as st

from inspector import AUGMENT_PRESETS, InspectorError, Run, TrainConfig, create_task, list_backbones, list_tasks
from inspector.jobs import TRAINING, JobHandle
from inspector.tasks.anomaly import good_classes, min_guaranteed_frr
from inspector.engine import TrainEnd, TrainStart
from inspector.evaluation import DetectionEvaluation
from inspector.backbones import hub_reachable, offline_backbones
from inspector.engine.features import default_feature_cache_dir
from inspector.evidence.transferability import BackboneRank, rank_backbones
from ui.evidence import render_ranking
from inspector.config import RESIZE_MODES
from inspector.tasks.classification.strategies import is_transfer
from ui import charts, live, words
from ui.data import checked_dataset, dataset_summary
from ui.regions import describe as describe_regions
from ui.state import (page_setup, runner, runs, show_flashes, show_work, user_errors,
                      workspace)
from ui.transfer import checked_source, transfer_choices

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
source_data = source_report = None  # another line's labelled images (Data page), for transfer
if ws.n_source():
    with user_errors("Reading the other line's images"):
        source_data, source_report = checked_source(ws)
if dataset is None and source_data is None:
    st.info("There are no images to train on yet. Add images on the **Data** page, "
            "or load the sample data on the **Home** page.")
elif dataset is None:
    st.info(f"No labelled images from this line: a classifier can still be trained from the other line's "
            f"images, with the other line's classes ({', '.join(source_data.classes)}). Its accuracy on this "
            "line cannot be measured until you label a few images per class on the **Data** page.",
            icon=":material/info:")
else:
    st.caption(f"Dataset: {dataset_summary(dataset)}")

active = jobs.active(TRAINING)
if active:  # the board is under the Train buttons, where eyes are after a click; say so up here
    st.info(f"{words.count(len(active), 'training')} in progress: [watch {'them' if len(active) > 1 else 'it'} "
            "on the board below](#trainings).", icon=":material/model_training:")

# -- task ---------------------------------------------------------------------------------------
tasks = list(list_tasks())
def caption_of(name: str) -> str:
    """The task's description without its choice repeated ("I have labelled defects: learn..." -> "Learn...")."""
    choice, text = create_task(name).choice, list_tasks()[name]
    rest = text.removeprefix(f"{choice}:").strip() if choice else text
    return rest[:1].upper() + rest[1:]


task = st.radio("What do you have?", tasks, format_func=lambda name: create_task(name).choice or name, key="task",
                horizontal=True, captions=[caption_of(name) for name in tasks])
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
all_strategies = chosen_task.strategies()
# Transfer methods need another line's images: offered below only when the Data page has some.
strategies = {name: text for name, text in all_strategies.items() if not is_transfer(name)}
strategy_options = strategies  # what the race may vary
transfer_possible = source_data is not None and any(is_transfer(name) for name in all_strategies)
use_source = False  # learn from the other line's images (and this line's unlabelled ones)
source_problem = None
if source_data is not None and not transfer_possible:
    st.caption(f"The other line's images on the Data page are used by classification only; this "
               f"{chosen_task.name} training leaves them out.")
if transfer_possible:
    st.header("2. Transfer from the other line")
    n_unlabeled = ws.n_unlabeled()
    st.caption(f"The other line: {dataset_summary(source_data)} This line: "
               f"{words.count(len(dataset) if dataset is not None else 0, 'labelled image')} and "
               f"{words.count(n_unlabeled, 'unlabelled image')}.")
    use_source = dataset is None or st.toggle("Learn from the other line's images too", value=True, key="use_source",
                                              help="Off: train on this line's labelled images only, as without "
                                                   "the other line.")
    if use_source:
        if source_report is not None and not source_report.ok:
            source_problem = " ".join(f.message for f in source_report.errors)
            st.error(f"The other line's images need fixing before training: {source_problem}")
        elif dataset is not None and not set(dataset.classes) & set(source_data.classes):
            source_problem = "no class of the other line has the name of one of this line's classes"
            st.error(f"The other line's classes ({', '.join(source_data.classes)}) share none with this line's "
                     f"({', '.join(dataset.classes)}): name the class folders alike on the Data page.")
        strategy_options = transfer_choices(all_strategies)
        strategy = st.radio("Transfer method", list(strategy_options), key="transfer_strategy",
                            captions=list(strategy_options.values()))
        if dataset is None:
            st.caption("Without labelled images from this line the guard cannot measure accuracy here: it ranks "
                       "the methods by reverse validation instead, which is not this line's accuracy.")
        cost_area = st.empty()
if not use_source and len(strategies) > 1:  # a task with one strategy has nothing to choose
    st.header("2. Strategy")
    if dataset is not None and task_problem is None:
        with user_errors("Recommending a strategy"):
            auto_pick, why = chosen_task.choose_strategy(TrainConfig(task=task), dataset, device())
            st.caption(f"Recommended for your data: **auto**, which would run **{auto_pick.name}**: {why}.")
    strategy = st.radio("Strategy", list(strategies), key="strategy", captions=list(strategies.values()),
                        horizontal=False)
    cost_area = st.empty()  # filled below, once the image size and the views are chosen

# -- scale and regions -------------------------------------------------------------------------------
def task_reads(task_obj, data, **setting) -> bool:
    """True when the task reads this setting (a defect size, regions): its scale() refuses it otherwise."""
    if data is None or not hasattr(task_obj, "scale"):
        return False
    try:
        task_obj.scale(TrainConfig(task=task, ok_classes=ok_classes, **setting), data)
    except InspectorError:
        return False
    return True


st.header("3. Defect size and where to look")
scale_read = task_reads(chosen_task, dataset, defect_size=8.0)
s1, s2 = st.columns([1, 2])
defect_size = s1.number_input(
    "Smallest defect to find (camera pixels)", min_value=0.5, max_value=10000.0, value=None, step=1.0,
    key="defect_size", placeholder="auto", disabled=not scale_read,
    help="Across, in the camera's own pixels. Empty (auto): images near the model's input size stay whole and "
         "larger ones are tiled at their own resolution; with a size, the images are tiled at the scale where "
         "such a defect still covers a feature cell, instead of squeezed into one small square.")
stored_regions = None
with user_errors("Reading the regions"):
    stored_regions = ws.regions()
scale_area = s2.empty()  # filled below, once the image size is chosen
has_regions = stored_regions is not None and not stored_regions.empty
regions_read = has_regions and task_reads(chosen_task, dataset, regions=stored_regions.to_dict())
regions_arg = stored_regions.to_dict() if regions_read else None
defect_size_arg = float(defect_size) if scale_read and defect_size else None

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
    views = 8 if any_orientation else 1
    views_cost_area = st.empty()
    bit_depth = None  # inferred from the dataset; offered only where 16-bit images make it matter
    if dataset is not None and dataset.bit_depth is not None:
        inferred = f"inferred: {dataset.bit_depth}-bit"
        choice = st.selectbox("Camera bit depth of the 16-bit images", [inferred, 10, 12, 14, 16], key="bit_depth",
                              help="One brightness mapping for every image (value x 255 / (2^bits - 1)), stored "
                                   "with the model. The inferred depth is the fewest bits that hold the dataset's "
                                   "brightest value; choose the camera's own if you know it.")
        bit_depth = None if choice == inferred else int(choice)

if scale_read:
    with user_errors("Choosing the scale"):
        choice = chosen_task.scale(TrainConfig(task=task, ok_classes=ok_classes, image_size=int(image_size) or None,
                                               defect_size=defect_size_arg, regions=regions_arg), dataset)
        where = (describe_regions(stored_regions) if regions_read
                 else f"not used by {task} runs (anomaly runs only, for now)" if has_regions
                 else "No regions: the whole image is inspected")
        scale_area.caption(f"Scale: {choice.reason}.  \nWhere to look (drawn on the **Data** page): {where}")
else:
    scale_area.caption(f"The defect size and the regions drawn on the Data page are not read by {task} runs: "
                       f"they look at the whole image, resized to the model's input.")

can_train = (dataset is not None or use_source) and task_problem is None and source_problem is None and startable
source_arg = ws.source_path() if use_source else None
unlabeled_arg = ws.unlabeled_path() if use_source else None


@st.cache_data(show_spinner="Measuring what the choices cost on this computer...", max_entries=32)
def choice_cost(backbone_name: str, size: int):
    from inspector.engine.cost import measure_choice_cost

    return measure_choice_cost(backbone_name, size)


def about(seconds: float) -> str:
    return "under 1 s" if seconds < 1 else f"about {live.duration(seconds)}"


if dataset is not None and startable:  # the cost of a choice, shown where it is made
    size = int(image_size) or int(chosen["input_size"])
    with user_errors("Measuring the cost"):
        cost = choice_cost(backbone, size)
        n = len(dataset)
        views_cost_area.caption(
            f"Predicting one image on this computer ({cost.device.upper()}, {size} px): about "
            f"{cost.predict_ms(1):.0f} ms with one view, {cost.predict_ms(8):.0f} ms with the 8 views "
            "(measured now, one forward pass of the backbone).")
        if len(strategies) > 1:
            cost_area.caption(
                f"On this computer, for your {words.count(n, 'image')} at {size} px: the linear probe needs "
                f"{about(cost.linear_probe_s(n, views))} of feature extraction ({words.count(views, 'view')}); "
                f"fine-tuning {about(cost.epoch_s(n))} per epoch, plus the same again per "
                "cross-validation fold. Rough figures from one measured forward pass.")


def config_for(backbone_name: str, strategy_name: str, name: str | None) -> TrainConfig:
    """The page's settings for one training (a race varies the backbone and the strategy only)."""
    return TrainConfig(task=task, ok_classes=ok_classes, target_frr=float(target_frr), backbone=backbone_name,
                       strategy=strategy_name, epochs=int(epochs) or None, image_size=int(image_size) or None,
                       augment=augment, resize_mode=resize, batch_size=int(batch_size), lr=float(lr) or None,
                       seed=int(seed), any_orientation=any_orientation, name=name, bit_depth=bit_depth,
                       source=source_arg, unlabeled=unlabeled_arg, defect_size=defect_size_arg, regions=regions_arg)


def start(configs: list[TrainConfig]) -> None:
    # The dataset this page just verified: the workers neither discover nor check the images again.
    for config in configs:
        jobs.submit_training(dataset, config, ws.runs_dir)
    st.toast(f"{words.count(len(configs), 'training')} started: watch {'them' if len(configs) > 1 else 'it'} "
             "below. They run in the background: you can leave this page.", icon=":material/play_arrow:")


if st.button("Train", type="primary", icon=":material/play_arrow:", disabled=not can_train, key="train"):
    with user_errors("Starting the training"):
        start([config_for(backbone, strategy, run_name.strip() or None)])

with st.expander("Race several models at the same time", icon=":material/sports_score:"):
    # The race is the run chosen above plus the others picked here (keyed by the choice above, so a
    # changed choice never leaves a stale pick behind).
    offline = [r["name"] for r in rows if r["available_offline"] and r["name"] != backbone]
    r1, r2 = st.columns(2)
    race_backbones = [backbone] + r1.multiselect(f"Also race these backbones (besides {backbone})", offline,
                                                 key=f"race_backbones_{backbone}")
    race_strategies = [strategy] + (r2.multiselect(f"Also race these strategies (besides {strategy})",
                                                   [s for s in strategy_options if s != strategy],
                                                   key=f"race_strategies_{strategy}") if len(strategy_options) > 1
                                                   else [])
    entrants = list(itertools.product(race_backbones, race_strategies))
    slots = jobs.slots
    st.caption(f"{words.count(len(entrants), 'training')} with the settings above; this computer "
               f"({device().type.upper()}) runs {words.count(slots, 'training')} at the same time, each in a process "
               f"of its own ({'the cores shared out' if device().type == 'cpu' else 'as many as its memory holds'}); "
               "the others wait their turn. Every run draws its curves on one board below.")
    if st.button(f"Start the race ({words.count(len(entrants), 'training')})", icon=":material/sports_score:",
                 disabled=not can_train or len(entrants) < 2, key="race",
                 help=None if len(entrants) >= 2 else "Pick at least one more backbone or strategy to race."):
        with user_errors("Starting the race"):
            prefix = run_name.strip()
            start([config_for(b, s, f"{prefix} {b} / {s}" if prefix else None) for b, s in entrants])


# -- live view: the race board -----------------------------------------------------------------------
def job_title(job: JobHandle, events: list) -> str:
    """The run's name as every page shows it (resolved strategy, e.g. 'lite0 / linear_probe')."""
    started = next((e for e in events if isinstance(e, TrainStart)), None)
    if job.config.name:
        return job.config.name
    if started is not None and job.run_dir is not None:
        with contextlib.suppress(InspectorError):
            return Run(job.run_dir).record().get("name") or f"{started.backbone} / {started.strategy}"
    kind = job.config.strategy if len(create_task(job.config.task).strategies()) > 1 else job.config.task
    return f"{job.config.backbone} / {kind}"


def lane(job: JobHandle, events: list) -> None:
    """One run's lane: name, phase with progress and ETA, its task's live figures, its button."""
    title = job_title(job, events)
    name_col, bar_col, figures_col, button_col = st.columns([3, 5, 2.5, 1.5], vertical_alignment="center")
    name_col.markdown(f"**{title}**")
    job_task = create_task(job.config.task)
    if job.status == "queued":
        ahead = sum(1 for j in jobs.active(TRAINING) if j.status == "queued" and j.seq < job.seq)
        bar_col.caption(f"Queued: starts when a running training ends ({words.count(jobs.slots, 'training')} run "
                        "at the same time here)" + (f", after {words.count(ahead, 'other')} in the queue." if ahead
                                                    else "; it is next."))
        if button_col.button("Cancel", key=f"cancel_{job.id}", icon=":material/close:"):
            job.stop()
            st.rerun(scope="fragment")
        return
    if job.finished:
        end = live.final_event(events)
        if job.status == "failed":
            bar_col.error(f"Failed: {job.error or getattr(end, 'message', 'unknown error')}")
        elif isinstance(end, TrainEnd):
            summary = end.run_summary
            bar_col.progress(1.0, text=f"{job.status.capitalize()} in {live.duration(summary.train_seconds)}: "
                                       f"{live.result_words(summary)}")
        else:
            bar_col.caption("Cancelled before it started.")
        if button_col.button("Dismiss", key=f"dismiss_{job.id}", icon=":material/close:",
                             help="Hide it here (the run stays on Compare)."):
            jobs.take(job.id)  # read: drop it from the runner
            st.rerun(scope="fragment")
        return
    progress = live.progress(events)
    eta = f" · about {live.duration(progress.eta_s)} left" if progress.eta_s is not None else " · estimating time left"
    bar_col.progress(progress.fraction, text=progress.text + eta)
    figures = [(label, value) for label, value in job_task.live_figures(events) if value != "-"]  # known ones
    if progress.images_per_s:
        figures.append(("images/s", f"{progress.images_per_s:.0f}"))
    if job.threads:
        figures.append(("CPU threads", str(job.threads)))
    figures_col.caption(" · ".join(f"{label}: {value}" for label, value in figures) or " ")
    if button_col.button("Stop", key=f"stop_{job.id}", icon=":material/stop:",
                         help="Ends within one batch; the best model so far is kept."):
        job.stop()
        st.toast("Stopping after the current batch...")


def show_result(job: JobHandle, events: list) -> None:
    """A finished run's warnings and its task's evaluation chart (its figures are in its lane)."""
    end = live.final_event(events)
    if not isinstance(end, TrainEnd):
        return
    summary, title = end.run_summary, job_title(job, events)
    if summary.warning:
        st.warning(f"{title}: {summary.warning}", icon=":material/warning:")
    if summary.metrics.get("frr_warning"):
        st.warning(f"{title}: {summary.metrics['frr_warning']}", icon=":material/warning:")
    evaluation = Run(job.run_dir).evaluation_report() if job.run_dir else None
    if isinstance(evaluation, DetectionEvaluation):
        st.plotly_chart(charts.anomaly_histogram(evaluation, f"{title}: scores"), key=f"hist_{job.id}")


def trained_here(path) -> bool:
    """True for a run this server process writes: its handle shows it, also while it prepares
    (the run folder exists before TrainStart names it)."""
    try:
        owner = Run(path).record().get("owner") or {}
    except InspectorError:
        return False
    return owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname()


def other_process_runs(known: set[str]) -> dict[str, list]:
    """Runs training in another process (the command line, torchrun, Ray): read-only lanes."""
    found = {}
    for info in runs(ws):
        if info.status == "running" and str(info.path) not in known and not trained_here(info.path):
            events = live.run_events(info.path)
            progress = live.progress(events)
            n, b = st.columns([3, 6], vertical_alignment="center")
            n.markdown(f"**{info.name}** (started elsewhere)")
            b.progress(progress.fraction, text=progress.text)
            found[info.name] = events
    return found


@st.fragment(run_every=2.0)
def race_board() -> None:
    all_jobs = jobs.handles(TRAINING)
    shown = [j for j in all_jobs if not j.finished] + [j for j in all_jobs if j.finished][-6:]
    if not shown and not any(info.status == "running" for info in runs(ws)):
        return
    st.header("Trainings")
    events = {job.id: live.handle_events(job) for job in shown}
    for job in shown:
        lane(job, events[job.id])
    curves = {job_title(j, events[j.id]): events[j.id] for j in shown
              if create_task(j.config.task).live_curves and live.epochs(events[j.id], None)}
    curves |= other_process_runs({str(j.run_dir) for j in all_jobs if j.run_dir})
    curves = {name: evs for name, evs in curves.items() if live.epochs(evs, None)}
    if curves:  # every run with epochs on one chart, each in its colour
        st.plotly_chart(charts.curves(curves), key="race_curves")
    for job in shown:
        if job.finished:
            show_result(job, events[job.id])


race_board()
