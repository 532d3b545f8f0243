"""Defect Inspector: home page. Run with `streamlit run app.py`."""
from __future__ import annotations

import streamlit as st

from inspector import describe_device
from inspector.jobs import TRAINING
from ui.state import flash, page_setup, runner, runs, show_flashes, user_errors, workspace

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
        st.metric("Labeled images", sum(counts.values()), help=f"in {len(counts)} classes")
        st.write(", ".join(f"**{name}**: {n}" for name, n in counts.items()))
    else:
        st.write("No images yet. Load the sample data below, or upload your own on the **Data** page.")
    st.caption(f"Workspace folder: `{ws.root}`")
with col_runs:
    st.subheader("Models")
    finished = [r for r in all_runs if r.has_model]
    st.metric("Trained models", len(finished), help="runs with a saved model")
    if active:
        st.write(f"Training now: {len(active)} run(s). See **Train**.")
    scored = [r for r in finished if r.summary and r.summary.val_accuracy is not None]
    best = max(scored, key=lambda r: r.summary.val_accuracy, default=None)
    if best is not None:
        st.write(f"Best so far: **{best.name}**, {best.summary.val_accuracy:.0%} validation accuracy.")

st.divider()
st.subheader("Get started")
if st.button("Load the sample data", type="primary", icon=":material/download:",
             help="Copies the bundled photos of metal, ceramic and plastic surfaces with defects into the workspace."):
    with user_errors("Loading the sample data"), st.spinner("Copying the sample images..."):
        added = ws.load_sample_data()
        flash(f"Added {added} sample images. Next: check them on the Data page, then train a model."
              if added else "The sample data is already in the workspace.")
        st.rerun()
if st.button("Load good parts only (anomaly detection)", icon=":material/verified:", key="load_good_parts",
             help="40 photos of good parts: train with 'I only have good parts' on the Train page; the model "
                  "then flags anything unusual without ever seeing a defect."):
    with user_errors("Loading the sample data"), st.spinner("Copying the sample images..."):
        added = ws.load_sample_data(part="good_parts")
        flash(f"Added {added} photos of good parts (class 'ok'). Next: on the Train page choose "
              "'I only have good parts'." if added else "The good parts are already in the workspace.")
        st.rerun()

c1, c2, c3, c4 = st.columns(4)
c1.page_link("pages/1_Data.py", label="1. Data: upload and label", icon=":material/photo_library:")
c2.page_link("pages/2_Train.py", label="2. Train a model", icon=":material/model_training:")
c3.page_link("pages/3_Compare.py", label="3. Compare models", icon=":material/compare:")
c4.page_link("pages/4_Inspect.py", label="4. Inspect new parts", icon=":material/search:")
