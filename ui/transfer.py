"""Another line's images, this line's unlabelled images and the shift meter on the Data page, and a
transfer run's figures on the Compare page (issue 21): thin, no ML. The workspace stores the images
(inspector.workspace), the library measures (inspector.evidence.line_shift)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from inspector import InspectorError
from inspector.data import IMAGE_EXTENSIONS
from inspector.workspace import ImportReport, Workspace
from ui.data import import_message, thumbnail_of
from ui.state import flash, runner, user_errors
from ui.words import count, listing

NEW_CLASS = "+ New class..."
IMAGE_TYPES = sorted(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
SHIFT_WORK = "line_shift"
THUMBNAILS = 8


# -- import messages (the page's own uploads use them too) ---------------------------------------------
def report_skipped(skipped, what: str = "file") -> None:
    if skipped:
        lines = "\n".join(f"- `{s.path}`: {s.reason}" for s in skipped[:20])
        more = f"\n- ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
        verb = "was" if len(skipped) == 1 else "were"
        flash(f"{count(len(skipped), what)} {verb} not added:\n{lines}{more}", "warning")


def report_import(report: ImportReport, verb: str, into: str | None = None, *, place: str | None = None) -> None:
    """One message for an import (new images, copies skipped or kept); nothing green when nothing was saved.
    `place` says where the images went when it is not this line's labelled data ("The other line")."""
    message = import_message(report, verb, into)
    if message is not None:
        flash(f"{place}: {message[1].replace('in the workspace', 'there')}" if place else message[1], message[0])


def report_unlabeled(report: ImportReport, verb: str) -> None:
    """report_import for the flat folder of unlabelled images (no classes to name)."""
    n, copies = report.n_saved, report.n_copies
    if n == 0 and copies:
        every = "the image is" if copies == 1 else f"all {copies:,} images are"
        flash(f"Nothing new: {every} already among the unlabelled images (exact copies), so nothing was saved.",
              "info")
    elif n:
        skipped = (f"; {copies} {'was' if copies == 1 else 'were'} skipped as already present (exact "
                   f"{'copy' if copies == 1 else 'copies'})") if copies and not report.copies_kept else ""
        flash(f"{verb} {count(n, 'unlabelled image')}{skipped}.")


def _thumbnails(paths: list[Path], captions: list[str] | None = None) -> None:
    columns = st.columns(THUMBNAILS)
    for i, path in enumerate(paths[:THUMBNAILS]):
        with columns[i]:
            thumb = thumbnail_of(path)
            if thumb is None:
                st.warning("unreadable")
            else:
                st.image(thumb, caption=captions[i] if captions else path.name, width="stretch")


def _round(key: str) -> int:
    return st.session_state.setdefault(key, 0)


def _next_round(key: str) -> None:
    st.session_state[key] = st.session_state.get(key, 0) + 1


# -- the other line (source) -------------------------------------------------------------------------------
def source_section(ws: Workspace, duplicates: str, limits: str) -> None:
    st.header("Images from another line (source)")
    st.caption("Labelled images from another production line or camera, one folder per class named like "
               "this line's classes (e.g. `ok`, `scratch`). Training can then carry what that line taught "
               "over to this one, and checks that it helps. Saved in "
               f"`{ws.source_dir}`.")
    classes = ws.source_classes()
    ours = ws.classes()
    if classes:
        st.markdown(f"**{count(sum(classes.values()), 'image')}** in {count(len(classes), 'class')}: "
                    + ", ".join(f"{k} {v}" for k, v in classes.items()) + ".")
        shared = [c for c in classes if c in ours]
        if ours and not shared:
            st.warning("None of the other line's classes has the name of one of this line's classes "
                       f"({listing(list(ours))}): name the class folders alike so that they can be matched.")
        elif ours and len(shared) < len(classes):
            st.caption(f"Only on the other line: {listing([c for c in classes if c not in ours])}.")
        sample = [path for label in classes for path in ws.source_images(label)[:2]][:THUMBNAILS]
        _thumbnails(sample, [f"{p.parent.name}: {p.name}" for p in sample])
    else:
        st.caption("None yet.")
    round_ = _round("source_round")
    tab_files, tab_zip = st.tabs(["Images into a class", "A .zip with one folder per class"], key="source_how")
    with tab_files:
        left, right = st.columns([1, 2])
        choices = [*classes, *[c for c in ours if c not in classes], NEW_CLASS]
        with left:
            target = st.selectbox("Class", choices, key="source_class")
            new_name = (st.text_input("New class of the other line", key="source_new_class", placeholder="e.g. scratch")
                        if target == NEW_CLASS else "")
        with right:
            uploads = st.file_uploader("Drag and drop the other line's images here", accept_multiple_files=True,
                                       type=IMAGE_TYPES, key=f"source_images_{round_}", help=limits)
        label = new_name.strip() if target == NEW_CLASS else target
        if st.button(f"Add {count(len(uploads or []), 'image')} to the other line's '{label or '...'}'",
                     disabled=not uploads, key="add_source_images"):
            with user_errors("Saving the other line's images"):
                if not label:
                    raise InspectorError("Type a name for the new class first.")
                result = ws.import_source_images(label, [(f.name, f.getvalue()) for f in uploads],
                                                 duplicates=duplicates)
                report_import(result, "Saved", next(iter(result.saved), label), place="The other line")
                report_skipped(result.skipped)
                _next_round("source_round")
                st.rerun()
    with tab_zip:
        archive = st.file_uploader("Drag and drop a .zip of the other line's class folders here", type=["zip"],
                                   key=f"source_zip_{round_}", help=limits)
        if st.button("Import the zip as the other line's images", disabled=archive is None, key="import_source_zip"):
            with user_errors("Importing the zip"), st.spinner("Unpacking and checking the images..."):
                result = ws.import_source_zip(archive.getvalue(), duplicates=duplicates)
                report_import(result, "Imported", place="The other line")
                report_skipped(result.skipped, "entry")
                _next_round("source_round")
                st.rerun()
    if classes:
        with st.expander("Remove the other line's images"):
            a, b = st.columns(2)
            doomed = a.selectbox("Delete one class", list(classes), index=None, placeholder="class",
                                 key="delete_source_class_name")
            if a.button("Delete the class", disabled=doomed is None, key="delete_source_class"):
                with user_errors("Deleting the class"):
                    ws.delete_source_class(doomed)
                    flash(f"Deleted the other line's class '{doomed}' and its "
                          f"{count(classes.get(doomed, 0), 'image')}.")
                    st.rerun()
            sure = b.checkbox("Yes, delete all of the other line's images", key="clear_source_sure")
            if b.button("Delete all", disabled=not sure, key="clear_source"):
                with user_errors("Deleting the images"):
                    flash(f"Deleted the other line's {count(ws.clear_source(), 'image')}.")
                    st.rerun()


# -- this line's unlabelled images ----------------------------------------------------------------------------
def unlabeled_section(ws: Workspace, duplicates: str, limits: str) -> None:
    st.header("Unlabelled images from this line")
    st.caption("Photos from this line that nobody has labelled, any names, any folders: transfer methods "
               "use them to see what this line looks like. Saved in "
               f"`{ws.unlabeled_dir}`.")
    files = ws.unlabeled_images()
    if files:
        st.markdown(f"**{count(len(files), 'unlabelled image')}**.")
        _thumbnails(files)
    else:
        st.caption("None yet.")
    round_ = _round("unlabeled_round")
    left, right = st.columns(2)
    with left:
        uploads = st.file_uploader("Drag and drop unlabelled images here", accept_multiple_files=True,
                                   type=IMAGE_TYPES, key=f"unlabeled_images_{round_}", help=limits)
        if st.button(f"Add {count(len(uploads or []), 'unlabelled image')}", disabled=not uploads,
                     key="add_unlabeled_images"):
            with user_errors("Saving the unlabelled images"):
                result = ws.import_unlabeled_images([(f.name, f.getvalue()) for f in uploads], duplicates=duplicates)
                report_unlabeled(result, "Saved")
                report_skipped(result.skipped)
                _next_round("unlabeled_round")
                st.rerun()
    with right:
        archive = st.file_uploader("...or a .zip of them (any folders inside)", type=["zip"],
                                   key=f"unlabeled_zip_{round_}", help=limits)
        if st.button("Import the zip as unlabelled images", disabled=archive is None, key="import_unlabeled_zip"):
            with user_errors("Importing the zip"), st.spinner("Unpacking and checking the images..."):
                result = ws.import_unlabeled_zip(archive.getvalue(), duplicates=duplicates)
                report_unlabeled(result, "Imported")
                report_skipped(result.skipped, "entry")
                _next_round("unlabeled_round")
                st.rerun()
    if files:
        sure = st.checkbox("Yes, delete all unlabelled images", key="clear_unlabeled_sure")
        if st.button("Delete the unlabelled images", disabled=not sure, key="clear_unlabeled"):
            with user_errors("Deleting the images"):
                flash(f"Deleted {count(ws.clear_unlabeled(), 'unlabelled image')}.")
                st.rerun()


# -- the shift meter ----------------------------------------------------------------------------------------
def shift_section(ws: Workspace, *, auto: bool = True) -> None:
    """The shift between the lines, measured in the background once per content of the folders."""
    from inspector.evidence.line_shift import cached_shift, shift_key, shift_ready

    st.subheader("How different are the two lines?")
    if not shift_ready(ws):
        st.caption("Add the other line's images and some of this line's (labelled or not) to measure how "
                   "different they look.")
        return
    key = shift_key(ws)
    entry = cached_shift(ws, key)
    if entry is not None:
        render_shift(entry["shift"])
        return
    work_key = f"{SHIFT_WORK}:{ws.root}"  # one measurement per workspace at a time
    work = runner().latest(work_key)
    idle = work is None or work.finished
    tried = st.session_state.get("shift_tried") == key  # measured this content already and it failed
    if idle and (auto and not tried or st.button("Measure the shift", key="measure_shift")):
        st.session_state["shift_tried"] = key
        _start_shift(ws, work_key)
    elif idle and work is not None and work.status == "completed":
        _start_shift(ws, work_key)  # the folders changed while it measured: measure their content now
    shift_progress(work_key)


def _start_shift(ws: Workspace, work_key: str) -> None:
    from inspector.engine.features import default_feature_cache_dir
    from inspector.evidence.line_shift import measure_line_shift

    root = ws.root

    def measure(report, stop):
        report(0.05, "extracting frozen features")
        return measure_line_shift(Workspace(root), cache_dir=default_feature_cache_dir())

    runner().start(work_key, measure)


@st.fragment(run_every=1.0)
def shift_progress(work_key: str) -> None:
    work = runner().latest(work_key)
    if work is None:
        return
    if not work.finished:
        st.progress(work.fraction, text="Measuring how different the lines look, in the background (frozen "
                                        "features of every image: seconds to minutes)...")
    elif work.status == "failed":
        st.error(f"Measuring the shift failed: {work.error}")
    else:
        st.rerun()  # the measurement is stored: the whole page shows it


def render_shift(shift: dict[str, Any] | None) -> None:
    if shift is None:
        st.info("Too few images to measure the shift: at least 4 on each line.")
        return
    left, right = st.columns([1, 3])
    left.metric("Shift (domain AUROC)", f"{shift['domain_auroc']:.2f}",
                help="How well a classifier on frozen features tells the two lines' images apart, "
                     "cross-validated: 0.5 means it cannot (alike), 1.0 that every image gives its line away.")
    right.markdown(f"**{shift['words'][:1].upper() + shift['words'][1:]}.**")
    if shift.get("per_class"):
        right.dataframe([{"class": k, "shift (AUROC)": round(v, 2)} for k, v in shift["per_class"].items()],
                        hide_index=True)
        right.caption("Per class: the same figure for the classes both lines have labelled images of.")


# -- the Train page ------------------------------------------------------------------------------------------
@st.cache_data(show_spinner="Checking the other line's images...", max_entries=4)
def _checked_source(root: str, fingerprint: str):
    from inspector import validate_dataset

    dataset = Workspace(root).source_dataset()
    return dataset, (validate_dataset(dataset) if dataset is not None else None)


def checked_source(ws: Workspace):
    """The other line's verified dataset and its validation report ((None, None) without images),
    cached by the source folder's content."""
    return _checked_source(str(ws.root), ws.fingerprint("source"))


def transfer_choices(strategies: dict[str, str]) -> dict[str, str]:
    """The choices of the Train page with another line's images: auto (the guard) and every registered
    transfer method, each with its one-line summary."""
    from inspector.tasks.classification.strategies import STRATEGIES, is_transfer

    guard = STRATEGIES.get("auto_transfer")
    auto = (f"The guard: {guard.summary[:1].lower()}{guard.summary[1:]}" if guard is not None
            else strategies.get("auto", ""))
    return {"auto": auto, **{name: text for name, text in strategies.items()
                             if is_transfer(name) and name != "auto_transfer"}}


# -- a transfer run's figures (Compare) ----------------------------------------------------------------------
FIGURES = (("source_only", "other line only"), ("target_only", "this line only"), ("adapted", "adapted"))


def _figure(value: float | None, interval: list[float] | None) -> str:
    if value is None:
        return "-"
    text = f"{value:.0%}"
    if interval:
        text += f" ({interval[0]:.0%}-{interval[1]:.0%})"
    return text


def transfer_rows(infos) -> list[dict[str, str]]:
    """One row per run with a `transfer` block in its summary: the three balanced accuracies on this
    line's labelled images with their 95% intervals, the model kept and how it was chosen."""
    rows = []
    for info in infos:
        block = info.run_summary.metrics.get("transfer")
        if not isinstance(block, dict):
            continue
        intervals = block.get("intervals") or {}
        shift = info.run_summary.metrics.get("shift") or {}
        rows.append({"run": info.name,
                     **{label: _figure(block.get(key), intervals.get(key)) for key, label in FIGURES},
                     "kept": kept(block),
                     "chosen by": _chosen_by(block),
                     "shift": f"{shift['domain_auroc']:.2f}" if shift.get("domain_auroc") is not None else "-"})
    return rows


def kept(block: dict[str, Any]) -> str:
    """The model the run kept, in the table's words ("this line only" rather than target_only)."""
    method = block.get("method") or "-"
    return dict(FIGURES).get(method, method) if method != "adapted" else method


def _chosen_by(block: dict[str, Any]) -> str:
    if block.get("chosen_by") == "target_cv":
        return f"cross-validated {str(block.get('score_name', 'score')).replace('_', ' ')} on this line"
    if block.get("chosen_by") == "label_free_score":
        return f"{str(block.get('score_name', 'score')).replace('_', ' ')} (no labels from this line)"
    return str(block.get("chosen_by") or "-")


def render_transfer_runs(infos) -> None:
    """The Compare page's section for runs trained with another line's images."""
    rows = transfer_rows(infos)
    if not rows:
        return
    st.header("Carried over from another line")
    st.caption("Balanced accuracy on this line's labelled images (95% interval), cross-validated: a model of "
               "the other line alone, one of this line's images alone, and the adapted one. '-': not "
               "measurable without labelled images of this line.")
    st.dataframe(rows, hide_index=True, key="transfer_table")
    for info in infos:
        block = info.run_summary.metrics.get("transfer")
        if isinstance(block, dict) and block.get("reason"):
            st.markdown(f"**{info.name}**: kept **{kept(block)}**: {str(block['reason']).rstrip('.')}.")
