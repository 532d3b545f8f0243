"""The guard against negative transfer (the founding document's appendix, question 1): does the other
line help this one at all?

Every transfer run measures, on the same images of this line, the model from this line's labels alone
(target-only), the other line's model as it is (source-only) and the adapted one:

- with labelled images from this line, by stratified cross-validation over them (balanced accuracy; the
  unlabelled images and every source image take part in every fold, the fold's held-out images only as
  unlabelled ones). A transfer method is kept only when its gain over target-only is beyond the noise:
  the lower end of a paired, class-stratified bootstrap interval of the difference is above 0;
- with none, no accuracy on this line can be measured. A label-free score ranks the methods: reverse
  validation (Zhong et al. 2010): the adapted model labels this line's images, a model trained on those
  labels alone predicts the source's labelled images, and its balanced accuracy there is the score. It
  ranks methods; it is not this line's accuracy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..linear import LinearHead
from .alignment import METHODS, DomainFeatures, Scaling

FOLDS = 5
BOOTSTRAP = 1000
BASELINES = ("source_only", "target_only")
NO_HELP = "the other line does not help here"


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """The mean recall over the classes present in `truth`."""
    recalls = [float((predicted[truth == k] == k).mean()) for k in range(n_classes) if (truth == k).any()]
    return float(np.mean(recalls)) if recalls else 0.0


def _bootstrap_draws(truth: np.ndarray, predictions: dict[str, np.ndarray], n_classes: int, seed: int,
                     minus: str | None = None) -> dict[str, np.ndarray]:
    """BOOTSTRAP draws of each method's balanced accuracy (or of its difference to `minus`), from the
    same class-stratified resamples of the images for every method (paired)."""
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(truth == k) for k in range(n_classes) if (truth == k).any()]
    draws: dict[str, list[float]] = {name: [] for name in predictions}
    for _ in range(BOOTSTRAP):
        idx = np.concatenate([rng.choice(rows, len(rows)) for rows in by_class])
        base = balanced_accuracy(truth[idx], predictions[minus][idx], n_classes) if minus else 0.0
        for name, predicted in predictions.items():
            draws[name].append(balanced_accuracy(truth[idx], predicted[idx], n_classes) - base)
    return {name: np.asarray(d) for name, d in draws.items()}


def _bootstrap(truth: np.ndarray, predictions: dict[str, np.ndarray], n_classes: int, seed: int,
               minus: str | None = None) -> dict[str, list[float]]:
    """95 % intervals of `_bootstrap_draws`."""
    return {name: [round(float(np.quantile(d, 0.025)), 3), round(float(np.quantile(d, 0.975)), 3)]
            for name, d in _bootstrap_draws(truth, predictions, n_classes, seed, minus).items()}


Fit = Callable[[DomainFeatures, int], LinearHead]  # (the lines' features, seed) -> a head on this line's raw features


def cross_validated_predictions(data: DomainFeatures, methods: Sequence[str], seed: int,
                                on_step: Callable[[], None] | None = None,
                                fits: dict[str, Fit] | None = None) -> dict[str, np.ndarray] | None:
    """Out-of-fold class predictions (n_l,) of this line's labelled images for each method (by name: from
    `fits`, else alignment.METHODS); None when a class has fewer than 2 labelled images (no folds)."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(data.target_labels, minlength=1)
    present = counts[counts > 0]
    if not len(data.target) or present.min() < 2:
        return None
    folds = StratifiedKFold(n_splits=int(min(FOLDS, present.min())), shuffle=True, random_state=seed)
    predicted = {name: np.full(len(data.target), -1) for name in methods}
    for train_idx, val_idx in folds.split(data.target, data.target_labels):
        fold = data.with_target(train_idx, data.target[val_idx])
        for name in methods:
            predicted[name][val_idx] = _fit_of(name, fits)(fold, seed).logits(data.target[val_idx]).argmax(1)
            if on_step:
                on_step()
    return predicted


def _fit_of(name: str, fits: dict[str, Fit] | None) -> Fit:
    return (fits or {}).get(name) or METHODS[name]


def reverse_predictions(data: DomainFeatures, head: LinearHead) -> np.ndarray:
    """Reverse validation's predictions of the source's labelled images (n_s,): this line's images
    labelled by `head` (acting on this line's raw features) train an LDA on this line's scaled
    features, which then predicts the source's scaled images (-1 everywhere when `head` gives every
    image one class: nothing can be learnt back)."""
    from ..linear import fit_lda

    target = data.target_all
    pseudo = head.logits(target).argmax(1)
    if len(np.unique(pseudo)) < 2:
        return np.full(len(data.source), -1)
    # Only the argmax matters here: the LDA without the head's temperature search.
    weight, bias = fit_lda(Scaling.of(target)(target), pseudo, data.n_classes)
    scores = Scaling.of(data.source)(data.source) @ weight.T + np.nan_to_num(bias, nan=-np.inf)
    return scores.argmax(1)


def reverse_validation(data: DomainFeatures, head: LinearHead, seed: int = 0) -> float:
    """The label-free score of `head`: reverse validation's balanced accuracy on the source (0-1)."""
    return balanced_accuracy(data.source_labels, reverse_predictions(data, head), data.n_classes)


@dataclass
class TransferDecision:
    """What the guard found: the CLI's `transfer` object (`to_dict`)."""

    method: str  # the model kept: a method's name, or "target_only" / "source_only"
    chosen_by: str  # "target_cv" | "label_free_score"
    score_name: str  # "balanced_accuracy" (cross-validated on this line) | "reverse_validation"
    source_only: float | None
    target_only: float | None
    adapted: float | None
    intervals: dict[str, list[float] | None]
    reason: str
    scores: dict[str, float] = field(default_factory=dict)  # every method measured, by name

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "chosen_by": self.chosen_by, "score_name": self.score_name,
                "source_only": self.source_only, "target_only": self.target_only, "adapted": self.adapted,
                "intervals": self.intervals, "reason": self.reason, "scores": self.scores}


def decide(data: DomainFeatures, methods: Sequence[str], seed: int, *, automatic: bool,
           on_step: Callable[[], None] | None = None, fits: dict[str, Fit] | None = None) -> TransferDecision:
    """Measure the baselines and a transfer method on this line and decide which model to keep.

    `automatic`: the method is the label-free choice among `methods` (`label_free_choice`: chosen
    without this line's labels, so that testing it on them is not a search among several methods,
    whose best looks better than it is on a few dozen images); it is kept only if its cross-validated
    gain over target-only is beyond the noise: more than one standard error of the paired bootstrap.
    Otherwise the user's one method (methods[0]) is kept and the figures only inform. `fits`: methods
    outside alignment.METHODS by name (e.g. multi_task's joint heads)."""
    if not automatic:
        method, label_free = methods[0], None
    else:
        label_free = label_free_choice(data, methods, seed)
        method = label_free.method
    if method == "source_only":  # nothing to test: the other line's model as it is
        method = "coral" if "coral" in methods else methods[0]
    predicted = cross_validated_predictions(data, [*BASELINES, method], seed, on_step, fits)
    if predicted is None:
        return label_free or _label_free(data, methods, seed, automatic=False, fits=fits)
    truth, k = data.target_labels, data.n_classes
    scores = {name: round(balanced_accuracy(truth, p, k), 3) for name, p in predicted.items()}
    intervals = _bootstrap(truth, predicted, k, seed)
    draws = _bootstrap_draws(truth, predicted, k, seed + 1, minus="target_only")[method]
    gain, noise = scores[method] - scores["target_only"], float(draws.std())
    low, high = float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))
    measured = (f"{gain:+.1%} balanced accuracy against this line's images alone ({scores[method]:.1%} vs "
                f"{scores['target_only']:.1%}; one standard error {noise:.1%}, 95 % interval {low:+.1%} to {high:+.1%})")
    kept = method
    if automatic:
        if gain > noise:
            reason = f"{method} (the label-free choice) beats target-only beyond the noise: {measured}"
        else:
            kept = "target_only"
            reason = f"{NO_HELP}: {method}, the label-free choice, {measured}; trained on this line's images only"
    else:
        reason = (f"{method} as chosen: {measured}" + ("; worse: the other line hurts here, consider target-only"
                                                       if high < 0 else " (within the noise)" if abs(gain) <= noise else ""))
    if label_free is not None:
        scores = {**{f"reverse_validation:{name}": value for name, value in label_free.scores.items()}, **scores}
    return TransferDecision(kept, "target_cv", "balanced_accuracy", scores["source_only"], scores["target_only"],
                            scores[method],
                            {"source_only": intervals["source_only"], "target_only": intervals["target_only"],
                             "adapted": intervals[method]}, reason, scores)


# Without labels, methods are compared simplest first: what each fits on this line's images, from
# nothing (source-only) to a transport plan with one match per image (OT mapping). Reverse validation
# flatters the methods that move each source image onto a target image (the labels travel with the
# images, so the reverse model agrees with them by construction): a more flexible method is kept only
# when its score is higher beyond the noise (the one-standard-error idea, Breiman et al. 1984).
SIMPLEST_FIRST = ("source_only", "coral", "subspace_alignment", "importance_weighting", "source_selection",
                  "ot_mapping")


def label_free_choice(data: DomainFeatures, methods: Sequence[str], seed: int) -> TransferDecision:
    """The method reverse validation keeps among source-only and `methods`, without this line's labels."""
    return _label_free(data, methods, seed, automatic=True)


def _label_free(data: DomainFeatures, methods: Sequence[str], seed: int, *, automatic: bool,
                fits: dict[str, Fit] | None = None) -> TransferDecision:
    """No accuracy on this line can be measured: rank source-only and the methods by reverse validation."""
    candidates = ["source_only", *[m for m in methods if m not in BASELINES]]
    candidates.sort(key=lambda name: SIMPLEST_FIRST.index(name) if name in SIMPLEST_FIRST else len(SIMPLEST_FIRST))
    predicted = {name: reverse_predictions(data, _fit_of(name, fits)(data, seed)) for name in candidates}
    truth, k = data.source_labels, data.n_classes
    scores = {name: round(balanced_accuracy(truth, p, k), 3) for name, p in predicted.items()}
    best = max(candidates, key=lambda name: scores[name])
    below_best = _bootstrap(truth, predicted, k, seed, minus=best)  # each candidate minus the best, paired
    within_noise = [name for name in candidates if below_best[name][1] >= 0]
    method = within_noise[0] if automatic else methods[0]
    trust = ("reverse validation ranks methods by how consistently they label this line's images and the other "
             "line's; it is not this line's accuracy. Label a few images per class of this line to measure it")
    if not automatic:
        reason = f"{method} as chosen (reverse validation {scores[method]:.1%}, source-only {scores['source_only']:.1%}); {trust}"
    elif method == "source_only":
        reason = (f"no transfer method scored above the other line's model as it is beyond the noise (reverse "
                  f"validation: source-only {scores['source_only']:.1%}, best {best} {scores[best]:.1%}); {trust}")
    else:
        reason = (f"{method}: the simplest method within the noise of the best reverse-validation score "
                  f"({scores[method]:.1%}; best {best} {scores[best]:.1%}; source-only {scores['source_only']:.1%}); "
                  f"{trust}")
    none = {"source_only": None, "target_only": None, "adapted": None}
    return TransferDecision(method, "label_free_score", "reverse_validation", None, None, None, none, reason, scores)


def baselines(data: DomainFeatures, method: str, seed: int, *, adapted_note: str,
              on_step: Callable[[], None] | None = None) -> TransferDecision:
    """The guard's two baselines for a method measured another way (e.g. fine-tuned with a joint objective,
    whose figure on this line is the run's own validation): source-only and target-only, linear heads on
    these frozen features, cross-validated on this line's labelled images (balanced accuracy, 95 %
    intervals); without at least 2 labelled images per class, source-only's reverse-validation score only
    (in `scores`). `adapted` is None: `adapted_note` says in words where the adapted figure is."""
    none: dict[str, list[float] | None] = {"source_only": None, "target_only": None, "adapted": None}
    predicted = cross_validated_predictions(data, BASELINES, seed, on_step)
    if predicted is None:
        score = round(reverse_validation(data, METHODS["source_only"](data, seed), seed), 3)
        reason = (f"{method} as chosen; this line has too few labelled images to measure accuracy (2 per class "
                  f"are needed): the other line's model as it is scores {score:.1%} by reverse validation, which "
                  f"ranks methods and is not this line's accuracy. {adapted_note}")
        return TransferDecision(method, "label_free_score", "reverse_validation", None, None, None, none, reason,
                                {"source_only": score})
    truth, k = data.target_labels, data.n_classes
    scores = {name: round(balanced_accuracy(truth, p, k), 3) for name, p in predicted.items()}
    intervals = _bootstrap(truth, predicted, k, seed)
    reason = (f"{method} as chosen: on this line's labelled images (cross-validated, a linear head on frozen "
              f"features) the other line's model as it is scores {scores['source_only']:.1%} and this line's images "
              f"alone {scores['target_only']:.1%} balanced accuracy. {adapted_note}")
    return TransferDecision(method, "target_cv", "balanced_accuracy", scores["source_only"], scores["target_only"],
                            None, {**none, "source_only": intervals["source_only"],
                                   "target_only": intervals["target_only"]}, reason, scores)


def decide_method(data: DomainFeatures, name: str, fit: Fit, seed: int,
                  on_step: Callable[[], None] | None = None) -> TransferDecision:
    """The guard for a method outside alignment.METHODS (e.g. multi_task): `fit(data, seed)` gives its head
    on this line's raw features; measured as `decide` measures a method the user chose."""
    return decide(data, [name], seed, automatic=False, on_step=on_step, fits={name: fit})
