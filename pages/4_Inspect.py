"""Inspect: try a trained model on new parts: class, probabilities, heatmap and an OK/NG verdict."""
from __future__ import annotations

from collections import Counter

import streamlit as st

from inspector import InspectorError, verdict
from inspector.reports import csv_text
from inspector.data import IMAGE_EXTENSIONS
from ui import charts
from ui.data import rgb
from ui.models import heatmap_overlay, predict
from ui.state import page_setup, predictor, run_label, runs, show_flashes, user_errors, workspace

MAX_IMAGES = 60
MAX_HEATMAPS = 12
UNREADABLE = "unreadable"
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

# -- model and decision rule -------------------------------------------------------------------
a, b = st.columns(2)
run_a = a.selectbox("Model", list(by_id), key="model_a", format_func=lambda r: run_label(by_id[r]))
compare = b.checkbox("Compare with a second model", key="compare", disabled=len(models) < 2)
run_b = (b.selectbox("Second model", [r for r in by_id if r != run_a], key="model_b",
                     format_func=lambda r: run_label(by_id[r])) if compare and len(models) > 1 else None)
chosen = [by_id[r] for r in (run_a, run_b) if r]

classes: list[str] = []
with user_errors("Loading the model"):
    classes = predictor(by_id[run_a]).classes
if not classes:
    st.stop()
c, d = st.columns(2)
default_ok = [k for k in classes if k.lower() in OK_NAMES] or classes[:1]
ok_classes = set(c.multiselect("Classes that count as OK", classes, default=default_ok, key=f"ok_{run_a}",
                               help="Every other class is a defect."))
threshold = d.slider("NG when the defect probability is at least", 0.05, 0.95, 0.5, 0.05, key="threshold",
                     help="Lower it to catch more defects (more false alarms); raise it for fewer false alarms.")

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

# -- results -----------------------------------------------------------------------------------
results: list[dict] = []
for n, (name, data) in enumerate(images):
    with st.container(border=True):
        cols = st.columns([1, 1, 2] if show_heatmaps else [1, 2])
        try:
            image = rgb(data)
        except InspectorError as exc:  # a bad upload is reported (never counted as OK); the rest go on
            st.error(f"{name}: cannot be read ({exc}).")
            results += [{"image": name, "model": info.name, "verdict": UNREADABLE, "error": str(exc)} for info in chosen]
            continue
        cols[0].image(image, caption=name, width="stretch")
        with cols[-1]:
            for info in chosen:
                with user_errors(f"Predicting {name}"):
                    pred = predict(info, data)
                    v = verdict(pred, ok_classes, threshold)
                    colour = "green" if v.ok else "red"
                    who = f"{info.name}: " if len(chosen) > 1 else ""
                    st.markdown(f"{who}:{colour}-background[**{v.label}**] predicted **{pred.label}** "
                                f"({pred.confidence:.0%}); defect probability {v.defect_probability:.0%}")
                    st.plotly_chart(charts.probabilities(pred.probabilities, ok_classes), key=f"p_{n}_{info.run_id}",
                                    config={"displayModeBar": False})
                    results.append({"image": name, "model": info.name, "predicted": pred.label,
                                    "confidence": round(pred.confidence, 4),
                                    "defect probability": round(v.defect_probability, 4), "verdict": v.label,
                                    **{f"p({k})": round(p, 4) for k, p in pred.probabilities.items()}})
        if show_heatmaps:
            with cols[1]:
                if n < MAX_HEATMAPS:
                    with user_errors("The heatmap"):
                        st.image(heatmap_overlay(chosen[0], data), caption="where the model looked",
                                 width="stretch")
                else:
                    st.caption("Heatmap shown for the first images only.")

if results:
    st.header("Results")
    verdicts = Counter(r["verdict"] for r in results if r["model"] == chosen[0].name)
    unreadable = f", **{verdicts[UNREADABLE]} unreadable** (not inspected)" if verdicts[UNREADABLE] else ""
    st.write(f"{len(images)} images: **{verdicts['NG']} NG**, {verdicts['OK']} OK{unreadable} "
             f"(model {chosen[0].name}, threshold {threshold:.0%}).")
    st.dataframe(results, hide_index=True)
    st.download_button("Download CSV", csv_text(results), file_name="inspection_results.csv", mime="text/csv",
                       icon=":material/download:", key="download_csv")
