"""Data: upload and label images, manage classes, check the dataset, preview augmentation."""
from __future__ import annotations

import streamlit as st

from inspector import AUGMENT_PRESETS, InspectorError, build_preview, list_backbones, resolve_preprocessing
from inspector.engine.features import default_feature_cache_dir
from inspector.data import IMAGE_EXTENSIONS, discover_dataset
from inspector.data.validation import exact_copies
from inspector.evidence.features import frozen_features
from inspector.evidence.learning_curve import advise_from_features
from ui.evidence import render_advice
from ui.regions import regions_section
from inspector.workspace import MAX_FILES_PER_UPLOAD, MAX_UPLOAD_MB, MAX_UPLOAD_TOTAL_BYTES
from ui import charts
from ui.data import checked_dataset, dataset_summary, rgb, thumbnail_of
from ui.state import flash, page_setup, runner, show_flashes, show_work, user_errors, workspace
from ui.transfer import report_import, report_skipped, shift_section, source_section, unlabeled_section
from ui.words import count

NEW_CLASS = "+ New class..."
PAGE_SIZE = 24
LIMITS = (f"Up to {MAX_FILES_PER_UPLOAD:,} files and {MAX_UPLOAD_TOTAL_BYTES / 2**30:g} GB per upload, "
          f"{MAX_UPLOAD_MB} MB per file.")
page_setup("Data", ":material/photo_library:")
ws = workspace()
st.title("Data")
st.caption(f"Images are saved in `{ws.data_dir}`, one folder per class: a refresh or restart loses nothing.")
show_flashes()
counts = ws.classes()


DUPLICATES = {"skip": "Skip them (recommended)", "keep": "Keep them as extra copies"}


# -- upload ------------------------------------------------------------------------------
st.header("Add images")
duplicates = st.radio("Images that are already in their class (exact copies)", list(DUPLICATES),
                      format_func=DUPLICATES.get, key="duplicates", horizontal=True,
                      help="Each file is compared, by its content, with the images already in its class before "
                           "it is saved. Copies add nothing to training and make validation scores look better "
                           "than they are.")
tab_files, tab_zip = st.tabs(["Images into a class", "A .zip with one folder per class"], key="add_how")
with tab_files:
    left, right = st.columns([1, 2])
    with left:
        target = st.selectbox("Class", [*counts, NEW_CLASS], key="upload_class",
                              index=len(counts) if not counts else 0)
        new_name = (st.text_input("New class name", key="upload_new_class", placeholder="e.g. scratch")
                    if target == NEW_CLASS else "")
    with right:
        round_ = st.session_state.setdefault("upload_round", 0)
        uploads = st.file_uploader("Drag and drop images here (many at once)", accept_multiple_files=True,
                                   type=sorted(ext.lstrip(".") for ext in IMAGE_EXTENSIONS),
                                   key=f"images_{round_}", help=LIMITS)
    label = new_name.strip() if target == NEW_CLASS else target
    if st.button(f"Add {count(len(uploads or []), 'image')} to '{label or '...'}'", type="primary",
                 disabled=not uploads, key="add_images"):
        with user_errors("Saving the images"):
            if not label:
                raise InspectorError("Type a name for the new class first.")
            result = ws.import_images(label, [(f.name, f.getvalue()) for f in uploads], duplicates=duplicates)
            report_import(result, "Saved", next(iter(result.saved), label))
            report_skipped(result.skipped)
            st.session_state["upload_round"] = round_ + 1
            st.rerun()
with tab_zip:
    archive = st.file_uploader("Drag and drop a .zip here", type=["zip"], key=f"zip_{round_}", help=LIMITS)
    st.caption("Inside the zip, put one folder per class, e.g. `ok/img1.png`, `scratch/img7.png`.")
    if st.button("Import the zip", disabled=archive is None, key="import_zip"):
        with user_errors("Importing the zip"), st.spinner("Unpacking and checking the images..."):
            result = ws.import_zip(archive.getvalue(), duplicates=duplicates)
            report_import(result, "Imported")
            report_skipped(result.skipped, "entry")
            st.session_state["upload_round"] = round_ + 1
            st.rerun()

# -- classes -------------------------------------------------------------------------------
with st.expander("Manage classes: create, rename, merge, delete", expanded=not counts):
    c_new, c_rename, c_merge, c_delete = st.columns(4)
    with c_new:
        name = st.text_input("New class", key="create_name", placeholder="e.g. crack")
        if st.button("Create", key="create_class", disabled=not name.strip()):
            with user_errors("Creating the class"):
                flash(f"Created class '{ws.create_class(name)}'. Now add images to it.")
                st.rerun()
    with c_rename:
        old = st.selectbox("Rename class", list(counts), key="rename_old", index=None, placeholder="class")
        new = st.text_input("to", key="rename_new")
        if st.button("Rename", key="rename_class", disabled=not (old and new.strip())):
            with user_errors("Renaming the class"):
                flash(f"Renamed '{old}' to '{ws.rename_class(old, new)}'.")
                st.rerun()
    with c_merge:
        sources = st.multiselect("Merge classes", list(counts), key="merge_sources")
        into = st.text_input("into class", key="merge_target", placeholder="existing or new name")
        if st.button("Merge", key="merge_classes", disabled=not (sources and into.strip())):
            with user_errors("Merging the classes"):
                moved = ws.merge_classes(sources, into)
                flash(f"Moved {count(moved, 'image')} into '{into}'.")
                st.rerun()
    with c_delete:
        doomed = st.selectbox("Delete class", list(counts), key="delete_class_name", index=None,
                              placeholder="class")
        sure = st.checkbox("Also delete its images", key="delete_class_sure")
        if st.button("Delete", key="delete_class", disabled=not (doomed and sure)):
            with user_errors("Deleting the class"):
                ws.delete_class(doomed)
                flash(f"Deleted class '{doomed}' and its {count(counts.get(doomed, 0), 'image')}.")
                st.rerun()

# -- check -----------------------------------------------------------------------------------
st.header("Check")
dataset = report = None
with user_errors("Checking the dataset"):
    dataset, report = checked_dataset(ws)
if not counts:
    st.info("No images yet. Add some above, or load the sample data on the Home page.")
    if st.button("Load the sample data", key="load_sample"):
        with user_errors("Loading the sample data"), st.spinner("Copying..."):
            flash(f"Added {count(ws.load_sample_data(), 'sample image')}.")
            st.rerun()
else:
    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(charts.class_counts(counts), width="stretch")
    with right:
        if report is not None:
            levels = {"error": st.error, "warning": st.warning, "info": st.info}
            for finding in report.findings:
                levels.get(finding.level, st.info)(finding.message)
                copies = len(exact_copies(dataset)) if finding.code == "duplicates" else 0
                if copies and st.button(f"Remove the {count(copies, 'exact copy')}", key="remove_copies",
                                        icon=":material/delete_sweep:", help="Keeps one of each image."):
                    with user_errors("Removing the copies"):
                        removed = ws.remove_exact_copies()
                        flash(f"Removed {count(removed, 'exact copy')}; one of each image is kept.")
                        st.rerun()
            if report.ok and not report.warnings:
                st.success(f"Ready to train: {dataset_summary(dataset)}")
            elif report.ok:
                st.success(f"Training can start: {dataset_summary(dataset)} The warnings above may cost accuracy.")
        if dataset is not None and dataset.skipped:
            with st.expander(f"{count(len(dataset.skipped), 'file')} {'is' if len(dataset.skipped) == 1 else 'are'} "
                             "not used"):
                st.dataframe([{"file": s.path, "reason": s.reason} for s in dataset.skipped], hide_index=True)

# -- browse and relabel -----------------------------------------------------------------------
if counts:
    st.header("Browse and relabel")
    left, mid, right = st.columns([2, 1, 3])
    shown = left.selectbox("Class", list(counts), key="browse_class")
    files = ws.images(shown) if shown else []
    pages = max(1, -(-len(files) // PAGE_SIZE))
    page = mid.number_input(f"Page (of {pages})", 1, pages, 1, key=f"browse_page_{shown}")
    chunk = files[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    right.caption(f"{count(len(files), 'image')} in '{shown}'; showing {len(chunk)}.")
    columns = st.columns(8)
    for i, path in enumerate(chunk):
        with columns[i % 8]:
            thumb = thumbnail_of(path)
            if thumb is None:
                st.warning("unreadable")
            else:
                st.image(thumb, caption=path.name, width="stretch")
    picked = st.multiselect("Select images on this page", [p.name for p in chunk], key=f"pick_{shown}_{page}")
    a, b, c = st.columns([2, 1, 1], vertical_alignment="bottom")
    move_to = a.selectbox("Move the selected images to", [c_ for c_ in counts if c_ != shown], key="move_to",
                          index=None, placeholder="another class")
    if b.button("Move", key="move_images", disabled=not (picked and move_to)):
        with user_errors("Moving the images"):
            for name in picked:
                ws.move_image(shown, name, move_to)
            flash(f"Moved {count(len(picked), 'image')} from '{shown}' to '{move_to}'.")
            st.rerun()
    if c.button("Delete", key="delete_images", disabled=not picked):
        with user_errors("Deleting the images"):
            for name in picked:
                ws.delete_image(shown, name)
            flash(f"Deleted {count(len(picked), 'image')} from '{shown}'.")
            st.rerun()


# -- where to look: a region of interest and regions to ignore -----------------------------------
if counts and any(counts.values()):
    regions_section(ws, counts)


# -- another line's images and this line's unlabelled ones (domain adaptation) ------------------------
source_section(ws, duplicates, LIMITS)
unlabeled_section(ws, duplicates, LIMITS)
shift_section(ws)


# -- augmentation preview ---------------------------------------------------------------------
@st.fragment
def augmentation_preview() -> None:
    st.header("Augmentation preview")
    st.caption("During training every image is varied like this, so the model learns what does not matter "
               "(position, lighting) and what does (the defect).")
    a, b, c, d = st.columns(4)
    cls = a.selectbox("Class", [k for k, v in counts.items() if v], key="aug_class")
    names = [p.name for p in ws.images(cls)] if cls else []
    name = b.selectbox("Image", names, key="aug_image")
    preset = c.selectbox("Preset", list(AUGMENT_PRESETS), index=list(AUGMENT_PRESETS).index("industrial"),
                         key="aug_preset")
    backbone = d.selectbox("Backbone (its input size and resize)", [b.spec.name for b in list_backbones()],
                           key="aug_backbone")
    st.write(AUGMENT_PRESETS[preset][0])
    st.button("New draw", key="aug_redraw")
    if not name:
        return
    with user_errors("The preview"):
        image = rgb(ws.read_image(cls, name))
        view = build_preview(resolve_preprocessing(backbone), preset)
        cols = st.columns(6)
        cols[0].image(image, caption="original", width="stretch")
        for i, col in enumerate(cols[1:], start=1):
            col.image(view(image), caption=f"variant {i}", width="stretch")


if counts and any(counts.values()):
    augmentation_preview()


# -- data sufficiency ---------------------------------------------------------------------------
@st.fragment(run_every=1.0)
def advice_panel() -> None:
    show_work("advice", "Measuring your learning curve in the background...", render_advice, "The advice failed")


if counts and sum(1 for v in counts.values() if v) >= 2:
    st.header("Do I need more photos?")
    st.caption("Cross-validates the fast frozen-feature model on 25/50/75/100% of your images per class, fits a "
               "saturating curve and extrapolates it, with its uncertainty.")
    if st.button("Estimate what more photos would bring", key="advise"):
        data_dir = ws.data_dir

        def measure(report, stop):
            dataset = discover_dataset(data_dir)
            feats = frozen_features(dataset, cache_dir=default_feature_cache_dir(),
                                    on_batch=lambda step, steps, rate: report(0.8 * step / max(steps, 1)))
            return advise_from_features(feats.features, feats.labels, feats.classes)

        runner().start("advice", measure)
    advice_panel()
