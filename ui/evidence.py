"""Drawing the evidence tools' answers (issue 15): thin, no ML. The pages call these with the typed
answers of the library (Advice, RunComparison, BackboneRank rows), never with their JSON."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import plotly.graph_objects as go
import streamlit as st
from plotly.colors import qualitative

if TYPE_CHECKING:  # types only: inspector.comparison loads the inference stack
    from inspector.comparison import PairedPrediction, RunComparison
    from inspector.evidence.learning_curve import Advice
    from inspector.evidence.transferability import BackboneRank

PALETTE = qualitative.Plotly


def learning_curve_figure(advice: Advice) -> go.Figure:
    """Measured cross-validated accuracy with its interval, the fitted curve and its bootstrap band."""
    curve, fit = advice.curve, advice.fit
    fig = go.Figure()
    if fit:
        fig.add_trace(go.Scatter(x=fit["sizes"] + fit["sizes"][::-1], y=fit["high"] + fit["low"][::-1],
                                 fill="toself", fillcolor="rgba(99,110,250,0.15)", line=dict(width=0),
                                 hoverinfo="skip", name="95% band of the fit"))
        fig.add_trace(go.Scatter(x=fit["sizes"], y=fit["accuracy"], mode="lines", line=dict(color=PALETTE[0]),
                                 name="fitted learning curve"))
    error = [h - a for a, h in zip(curve["accuracy"], curve["high"])]
    error_minus = [a - lo for a, lo in zip(curve["accuracy"], curve["low"])]
    fig.add_trace(go.Scatter(x=curve["sizes"], y=curve["accuracy"], mode="markers", marker=dict(size=9, color=PALETTE[0]),
                             error_y=dict(type="data", array=error, arrayminus=error_minus), name="measured (CV)"))
    predicted = advice.predicted_accuracy
    if predicted is not None and advice.predicted_interval is not None:  # both or neither (one fit gives both)
        low, high = advice.predicted_interval
        fig.add_trace(go.Scatter(x=[advice.at], y=[predicted], mode="markers",
                                 marker=dict(size=12, symbol="star", color=PALETTE[1]),
                                 error_y=dict(type="data", array=[high - predicted], arrayminus=[predicted - low]),
                                 name=f"predicted at {advice.at} per class"))
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=40, b=10), title="Learning curve of your images",
                      xaxis_title="training images per class", yaxis=dict(title="accuracy", range=[0, 1.02]),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def render_advice(advice: Advice) -> None:
    """The advisor's plot, its sentences and the per-class table."""
    st.plotly_chart(learning_curve_figure(advice), use_container_width=True)
    if advice.sentences:
        st.markdown("\n".join(f"- {s}" for s in advice.sentences))
    rows = [{"class": c.name, "images": c.images, "recall now": round(c.recall, 2),
             f"recall at {advice.at}": None if c.predicted_recall is None else round(c.predicted_recall, 2),
             "add images": c.suggested_extra_images, "curve": c.status}
            for c in advice.per_class]
    st.dataframe(rows, hide_index=True, use_container_width=True)


def render_comparison(result: RunComparison) -> None:
    """The paired comparison in words, with the negative-transfer warning when there is one."""
    paired = result.paired
    low, high = paired.difference_ci
    cols = st.columns(3)
    cols[0].metric("Accuracy A", f"{paired.accuracy_a:.1%}")
    cols[1].metric("Accuracy B", f"{paired.accuracy_b:.1%}")
    cols[2].metric("A minus B", f"{100 * paired.difference:+.0f} points",
                   help=f"95% interval {100 * low:+.0f} to {100 * high:+.0f} points; p = {paired.p_value:.2g}. "
                   "Both from McNemar's exact test on the images where the two disagree, so they agree: "
                   "significant exactly when the interval leaves out 0.")
    if paired.verdict == "no_significant_difference":
        st.info(paired.sentence)
    else:
        st.success(paired.sentence)
    if result.negative_transfer:
        st.warning(result.negative_transfer)


def render_ranking(rows: list[BackboneRank]) -> None:
    """The LogME ranking of backbones x input sizes, best first."""
    if not rows:
        st.info("No backbone was ranked.")
        return
    st.dataframe([{"rank": r.rank, "backbone": r.backbone, "input": f"{r.image_size} px",
                   "LogME": round(r.logme, 3), "seconds": r.seconds} for r in rows],
                 hide_index=True, use_container_width=True)
    st.caption("LogME (You et al., ICML 2021) scores how well each backbone's frozen features fit your classes, "
               "without training: higher is better. Train the top one first; close scores are a tie.")


def _mark(label: str, true: str) -> str:
    # Material icons come from the font bundled with Streamlit; emoji (a tick, a cross) need a colour
    # emoji font the line PC may lack, and render as empty boxes there.
    return ":green[:material/check: right]" if label == true else ":red[:material/close: wrong]"


def paired_caption(row: PairedPrediction) -> str:
    """One image of the disagreement gallery: its name and label, each model's class, confidence and
    whether it is right (Markdown for st.caption)."""
    return (f"**{Path(row.path).name}** (labeled {row.true})  \n"
            f"A: {row.a} {row.pa:.0%} {_mark(row.a, row.true)}  \nB: {row.b} {row.pb:.0%} {_mark(row.b, row.true)}")
