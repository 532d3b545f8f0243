"""Defect Inspector: home page. Run with `streamlit run app.py`."""
from __future__ import annotations

import streamlit as st

from inspector import InspectorError, describe_device
from inspector.jobs import TRAINING
from ui.state import flash, page_setup, runner, runs, show_flashes, user_errors, workspace
from ui.words import count, listing

page_setup("Home", ":material/home:")
ws = workspace()

st.title("Defect Inspector")
st.markdown(
    "Teach the computer to tell good parts from defective ones using a few dozen labeled photos: "
    "upload and label images, train a model in the background, and compare models side by side.  \n"
    "Then show it new parts: it names the defect, shows where it looked, and gives an OK / NG verdict.")
show_flashes()


@st.cache_resource(show_spinner=False)
def _device_label() -> str:
    info = describe_device()
    if info.type == "cuda":
        return f"GPU: {info.name}, {info.memory_gb:.0f} GB memory"
    if info.type == "mps":
        return f"Apple GPU ({info.name})"
    return f"CPU only ({info.name}). Training works; the quick strategy (linear probe) is the best fit."


st.info(f"**Training device:** {_device_label()}", icon=":material/memory:")

counts = ws.classes()
all_runs = runs(ws)
active = runner().active(TRAINING)
col_data, col_runs = st.columns(2)
with col_data:
    st.subheader("Dataset")
    if counts:
        st.metric("Labeled images", sum(counts.values()), help=f"in {count(len(counts), 'class')}")
        st.write(", ".join(f"**{name}**: {n}" for name, n in counts.items()))
        empty = [name for name, n in counts.items() if not n]
        if empty:
            st.warning(f"{'Class' if len(empty) == 1 else 'Classes'} {listing(empty)} "
                       f"{'has' if len(empty) == 1 else 'have'} no images yet, so "
                       f"{'it is' if len(empty) == 1 else 'they are'} left out of training. Add images on the "
                       "**Data** page, or delete the empty class there.")
    else:
        st.write("No images yet. Load the sample data below, or upload your own on the **Data** page.")
    st.caption(f"Workspace folder: `{ws.root}`")
with col_runs:
    st.subheader("Models")
    finished = [r for r in all_runs if r.has_model]
    st.metric("Trained models", len(finished), help="runs with a saved model")
    if active:
        st.write(f"Training now: {count(len(active), 'run')}. See **Train**.")
    scored = [r for r in finished if r.summary and r.summary.val_accuracy is not None]
    best = max(scored, key=lambda r: r.summary.val_accuracy, default=None)
    if best is not None:
        st.write(f"Best so far: **{best.name}**, {best.summary.val_accuracy:.0%} validation accuracy.")

def _offer(part: str) -> dict[str, int]:
    """What a sample set holds, per class (empty when it is not on disk yet: nothing is generated here)."""
    try:
        return ws.sample_images(part)
    except InspectorError:
        return {}


def _photos(offered: dict[str, int], of: str = "") -> str:
    """"40 photos of good parts (ok 40)" for a button's help; plain "Photos..." when unknown."""
    if not offered:
        return f"Photos{of}"
    return f"{count(sum(offered.values()), 'photo')}{of} ({', '.join(f'{k} {v}' for k, v in offered.items())})"


def _loaded(result, noun: str, of: str = "") -> str:
    """The result in words, agreeing with what the button offered: what was added, and what was
    already there (the same image in the same class, whatever its name) and so was left alone."""
    total = result.n_saved + result.n_copies
    offer = f"{count(total, noun)}{of}"
    if result.n_saved == 0:
        return f"The {offer} {'is' if total == 1 else 'are'} already in the workspace, so nothing was added."
    added = ", ".join(f"{k} {v}" for k, v in result.counts().items())
    if result.n_copies == 0:
        return f"Added {offer} ({added})."
    already = ", ".join(f"{k} {v}" for k, v in result.copies.items() if v)
    were = "was" if result.n_copies == 1 else "were"
    return (f"Added {result.n_saved} of the {offer} ({added}); the other {result.n_copies} {were} already in the "
            f"workspace ({already}) and {were} left as they are.")


st.divider()
st.subheader("Get started")
sample = _offer("train")
if st.button("Load the sample data", type="primary", icon=":material/download:",
             help=f"Copies the bundled sample, {_photos(sample)} of metal, ceramic and plastic surfaces, good and "
                  "with defects, into the workspace. Images already there are left alone."):
    with user_errors("Loading the sample data"), st.spinner("Copying the sample images..."):
        result = ws.import_sample_data()
        flash(_loaded(result, "sample image")
              + (" Next: check them on the Data page, then train a model." if result.n_saved else ""),
              "success" if result.n_saved else "info")
        st.rerun()
good = _offer("good_parts")
if st.button("Load good parts only (anomaly detection)", icon=":material/verified:", key="load_good_parts",
             help=f"{_photos(good, ' of good parts')}: train with 'I only have good parts' on the Train page; the "
                  "model then flags anything unusual without ever seeing a defect. Images already there are left "
                  "alone."):
    with user_errors("Loading the sample data"), st.spinner("Copying the sample images..."):
        result = ws.import_sample_data(part="good_parts")
        learnt = list(result.saved) or list(result.copies)
        others = [name for name, n in ws.classes().items() if n and name not in learnt]
        measures = "class only measures" if len(others) == 1 else "classes only measure"
        flash(_loaded(result, "photo", " of good parts")
              + (" Next: on the Train page choose 'I only have good parts'." if result.n_saved else "")
              + (f" The workspace also holds {listing(others)}: with 'I only have good parts' the model learns "
                 f"from {listing(learnt)} only; the other {measures} how many defects are caught." if others else ""),
              "success" if result.n_saved else "info")
        st.rerun()

c1, c2, c3, c4 = st.columns(4)
c1.page_link("pages/1_Data.py", label="1. Data: upload and label", icon=":material/photo_library:")
c2.page_link("pages/2_Train.py", label="2. Train a model", icon=":material/model_training:")
c3.page_link("pages/3_Compare.py", label="3. Compare models", icon=":material/compare:")
c4.page_link("pages/4_Inspect.py", label="4. Inspect new parts", icon=":material/search:")
