"""Plotly figures for the pages (pure functions of plain data)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from . import live
from .words import count

PALETTE = qualitative.Plotly


def class_counts(counts: dict[str, int]) -> go.Figure:
    fig = go.Figure(go.Bar(x=list(counts), y=list(counts.values()), text=list(counts.values()),
                           textposition="outside", marker_color=PALETTE[0]))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), yaxis_title="images",
                      title="Images per class")
    return fig


def fitted_in_one_step(events: list) -> bool:
    """True for a run without epochs (a linear probe is fitted in one step): no curve to draw."""
    final = live.epochs(events) or live.epochs(events, None)
    return bool(final) and all((e.epochs or 1) <= 1 for e in final)


def validation(events: list) -> tuple[list, str]:
    """(points with val_loss / val_accuracy / val_macro_f1 per epoch, where they come from).

    The kept model's own validation when it has one (a hold-out split); else, when the kept model
    trained on every image, the mean of the cross-validation folds per epoch."""
    final = [e for e in live.epochs(events) if e.val_accuracy is not None]
    if final:
        return final, "validation: held-out images"
    folds = live.folds(events)
    by_epoch: dict[int, list] = {}
    for fold in folds:
        for e in live.epochs(events, fold):
            by_epoch.setdefault(e.epoch, []).append(e)
    points = [SimpleNamespace(epoch=epoch, **{key: _mean(getattr(e, key) for e in group) for key in _VAL_KEYS})
              for epoch, group in sorted(by_epoch.items())]
    return points, f"validation: mean of {count(len(folds), 'cross-validation fold')}" if points else ""


_VAL_KEYS = ("val_loss", "val_accuracy", "val_macro_f1")


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def curves(series: dict[str, list], show_folds: bool = False) -> go.Figure:
    """Loss, validation accuracy/macro-F1 and learning rate per epoch for one or more runs.

    The legend names the runs (one colour each) and where each one's validation comes from; the
    panel titles say which line is which. Runs fitted in one step (no epochs) are left out: a curve
    of one point says nothing (the page shows their figures instead)."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=(
        "Loss (solid: train, dashed: validation)", "Validation accuracy (solid) and macro-F1 (dotted)",
        "Learning rate (kept model)"))
    drawn = {name: events for name, events in series.items() if not fitted_in_one_step(events)}
    for i, (name, events) in enumerate(drawn.items()):
        color = PALETTE[i % len(PALETTE)]
        points, source = validation(events)
        label = f"{name} ({source})" if source else name
        final = live.epochs(events)
        _add(fig, label, name, final, [(1, "train loss", "train_loss", "solid"), (3, "learning rate", "lr", "solid")],
             color, legend=True)
        _add(fig, label, name, term_points(final), [(1, term, term, TERM_DASHES.get(term, "dot"))
                                                    for term in term_names(final)], color, legend=False, opacity=0.6)
        _add(fig, label, name, points, [(1, "val loss", "val_loss", "dash"), (2, "val accuracy", "val_accuracy", "solid"),
                                        (2, "val macro-F1", "val_macro_f1", "dot")], color, legend=not final)
        if show_folds:
            for fold in live.folds(events):
                _add(fig, f"{name} fold {fold}", name, live.epochs(events, fold), [
                    (1, "val loss", "val_loss", "dash"), (2, "val accuracy", "val_accuracy", "solid"),
                    (2, "val macro-F1", "val_macro_f1", "dot")], color, legend=False, opacity=0.3)
    if any(term_names(live.epochs(events)) for events in drawn.values()):
        fig.layout.annotations[0].text = "Loss (solid: train, dashed: validation; L_s, L_t, D: the terms)"
    if not any(trace.xaxis == "x2" for trace in fig.data):
        left, right = fig.layout.xaxis2.domain  # the middle panel, in paper coordinates (an axis-domain
        fig.add_annotation(text="Measured by cross-validation<br>once the kept model is trained",  # reference
                           xref="paper", yref="paper", x=(left + right) / 2, y=0.5,  # drew it in panel 1)
                           showarrow=False)
    last = max((e.epoch for events in drawn.values() for e in live.epochs(events, None)), default=1)
    fig.update_xaxes(title_text="epoch", tick0=1, dtick=max(1, math.ceil(last / 8)))  # whole epochs only
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=2)
    fig.update_yaxes(tickformat=".1e", rangemode="tozero", row=1, col=3)
    fig.update_annotations(font_size=13)
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    return fig


# A transfer run's separate loss terms (EpochEnd.terms): source loss, this line's loss, the lines' discrepancy.
TERM_DASHES = {"L_s": "longdash", "L_t": "dashdot", "D": "longdashdot"}


def term_names(points: list) -> list[str]:
    """The names of the loss terms the epochs report (EpochEnd.terms), in first-seen order; [] for none."""
    return list(dict.fromkeys(name for e in points for name in (getattr(e, "terms", None) or {})))


def term_points(points: list) -> list:
    """One point per epoch with each term as an attribute (None where an epoch lacks it)."""
    names = term_names(points)
    return [SimpleNamespace(epoch=e.epoch, **{n: (getattr(e, "terms", None) or {}).get(n) for n in names})
            for e in points]


def _add(fig: go.Figure, label: str, group: str, points: list, traces: list, color: str, legend: bool,
         opacity: float = 1.0) -> None:
    """One run's lines: the first drawn carries the run's legend entry when `legend`."""
    x = [e.epoch for e in points]
    for col, what, key, dash in traces:
        y = [getattr(e, key) for e in points]
        if not any(v is not None for v in y):
            continue
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=label, opacity=opacity,
                                 line=dict(color=color, dash=dash), marker=dict(size=5), showlegend=legend,
                                 legendgroup=group, hovertemplate=f"{what} %{{y:.3g}}, epoch %{{x}}<extra>{group}</extra>"),
                      row=1, col=col)
        legend = False


def confusion(matrix: list[list[int]], classes: list[str], title: str) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=matrix, x=classes, y=classes, colorscale="Blues", showscale=False,
                               text=matrix, texttemplate="%{text}",
                               hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"))
    fig.update_layout(title=title, height=320, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed")
    return fig


def per_class_f1(rows: dict[str, dict[str, float | None]]) -> go.Figure:
    """rows: run name -> {class: F1, or None for a class absent from that run's evaluation data}.

    An absent class gets no bar (it is not scored 0): its tick says "absent" when no run has it,
    else the run's legend entry names it."""
    classes = list(dict.fromkeys(c for scores in rows.values() for c in scores))
    absent_everywhere = {c for c in classes if all(scores.get(c) is None for scores in rows.values())}
    ticks = [f"{c}<br>(absent)" if c in absent_everywhere else c for c in classes]
    fig = go.Figure()
    for i, (name, scores) in enumerate(rows.items()):
        absent = [c for c in classes if c in scores and scores[c] is None and c not in absent_everywhere]
        label = f"{name} (absent: {', '.join(absent)})" if absent else name
        values = [scores.get(c) for c in classes]
        fig.add_trace(go.Bar(name=label, x=ticks, y=values, marker_color=PALETTE[i % len(PALETTE)],
                             hovertext=["absent from the data: not scored" if v is None else f"F1 {v:.2f}"
                                        for v in values], hoverinfo="text+name"))
    fig.update_layout(barmode="group", height=320, yaxis=dict(range=[0, 1.05], title="F1"),
                      margin=dict(l=10, r=10, t=40, b=10), title="F1 per class", showlegend=True)
    return fig


def probabilities(probs: dict[str, float], ok_classes: set[str]) -> go.Figure:
    names = sorted(probs, key=probs.get)
    colors = ["#2e7d32" if n in ok_classes else "#c62828" for n in names]
    fig = go.Figure(go.Bar(x=[probs[n] for n in names], y=names, orientation="h", marker_color=colors,
                           text=[f"{probs[n]:.0%}" for n in names], textposition="auto"))
    # The whole 0-100 % scale with its end ticks: the right margin leaves room for the "100%" label.
    fig.update_layout(height=60 + 26 * len(names), margin=dict(l=10, r=30, t=10, b=10),
                      xaxis=dict(range=[0, 1], tickvals=[0, 0.25, 0.5, 0.75, 1], tickformat=".0%"))
    return fig


def score_histogram(good_scores: list[float], defect_scores: dict[str, list[float]], threshold: float = 0.5,
                    title: str = "Anomaly scores") -> go.Figure:
    """Good images' out-of-sample scores and any defect images' scores, with the threshold line."""
    fig = go.Figure()
    bins = dict(start=0.0, end=1.0, size=0.025)
    fig.add_trace(go.Histogram(x=good_scores, name="good (out of sample)", xbins=bins, marker_color="#2e7d32",
                               opacity=0.7))
    for i, (name, scores) in enumerate(defect_scores.items()):
        fig.add_trace(go.Histogram(x=scores, name=name, xbins=bins, opacity=0.6,
                                   marker_color=PALETTE[(i + 1) % len(PALETTE)]))
    fig.add_vline(x=threshold, line_dash="dash", line_color="black", annotation_text="threshold")
    fig.update_layout(barmode="overlay", height=320, margin=dict(l=10, r=10, t=40, b=10), title=title,
                      xaxis=dict(range=[0, 1], title="anomaly score (0.5 = threshold)"), yaxis_title="images")
    return fig


def anomaly_histogram(evaluation, title: str = "Anomaly scores") -> go.Figure:
    """The histogram of an anomaly run's DetectionEvaluation."""
    defects: dict[str, list[float]] = {}
    for image in evaluation.defects:
        defects.setdefault(image.label, []).append(image.score)
    return score_histogram(evaluation.good_scores, defects, 0.5, title)
