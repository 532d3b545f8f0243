"""Drawing the evidence tools' answers (issue 15): thin, no ML. The pages call these with the plain
dicts that inspector.evidence returns (Advice.to_dict(), the compare result, rank_backbones rows)."""
from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import streamlit as st
from plotly.colors import qualitative

PALETTE = qualitative.Plotly


def learning_curve_figure(advice: dict[str, Any]) -> go.Figure:
    """Measured cross-validated accuracy with its interval, the fitted curve and its bootstrap band."""
    curve, fit = advice["curve"], advice.get("fit")
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
    if advice.get("predicted_accuracy") is not None:
        low, high = advice["predicted_interval"]
        fig.add_trace(go.Scatter(x=[advice["at"]], y=[advice["predicted_accuracy"]], mode="markers",
                                 marker=dict(size=12, symbol="star", color=PALETTE[1]),
                                 error_y=dict(type="data", array=[high - advice["predicted_accuracy"]],
                                              arrayminus=[advice["predicted_accuracy"] - low]),
                                 name=f"predicted at {advice['at']} per class"))
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=40, b=10), title="Learning curve of your images",
                      xaxis_title="training images per class", yaxis=dict(title="accuracy", range=[0, 1.02]),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def render_advice(advice: dict[str, Any]) -> None:
    """The advisor's plot, its sentences and the per-class table."""
    st.plotly_chart(learning_curve_figure(advice), use_container_width=True)
    sentences = advice.get("sentences", [])
    if sentences:
        st.markdown("\n".join(f"- {s}" for s in sentences))
    rows = [{"class": name, "images": row["images"], "recall now": round(row["recall"], 2),
             f"recall at {advice['at']}": None if row["predicted_recall"] is None else round(row["predicted_recall"], 2),
             "add images": row["suggested_extra_images"], "curve": row["status"]}
            for name, row in advice["per_class"].items()]
    st.dataframe(rows, hide_index=True, use_container_width=True)


def render_comparison(result: dict[str, Any]) -> None:
    """The paired comparison in words, with the negative-transfer warning when there is one."""
    cols = st.columns(3)
    cols[0].metric("Accuracy A", f"{result['accuracy_a']:.1%}")
    cols[1].metric("Accuracy B", f"{result['accuracy_b']:.1%}")
    cols[2].metric("A minus B", f"{100 * result['difference']:+.0f} points",
                   help=f"95% interval {100 * result['difference_ci'][0]:+.0f} to "
                        f"{100 * result['difference_ci'][1]:+.0f} points; p = {result['p_value']:.2g}")
    if result["verdict"] == "no_significant_difference":
        st.info(result["sentence"])
    else:
        st.success(result["sentence"])
    if result.get("negative_transfer"):
        st.warning(result["negative_transfer"])


def render_ranking(rows: list[dict[str, Any]]) -> None:
    """The LogME ranking of backbones x input sizes, best first."""
    if not rows:
        st.info("No backbone was ranked.")
        return
    st.dataframe([{"rank": r["rank"], "backbone": r["backbone"], "input": f"{r['image_size']} px",
                   "LogME": round(r["logme"], 3), "seconds": r.get("seconds")} for r in rows],
                 hide_index=True, use_container_width=True)
    st.caption("LogME (You et al., ICML 2021) scores how well each backbone's frozen features fit your classes, "
               "without training: higher is better. Train the top one first; close scores are a tie.")
