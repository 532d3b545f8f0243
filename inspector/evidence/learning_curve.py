"""Data-sufficiency advisor: do I need more images, and of which class?

The learning curve of the user's own data is measured with the fast frozen-feature path: repeated
stratified k-fold cross-validation in which each training fold is cut down to a fraction of its
images per class (nested cuts: 25% of a fold is part of its 50%), while every held-out image is
scored at every fraction. That gives accuracy and per-class recall against the number of training
images per class. A saturating power law

    accuracy(n) = a - b * n ** -c        (0 <= a <= 1, b >= 0, c in [0.05, 2])

is fitted to the points (scipy.optimize.least_squares, robust soft-L1 loss, bounds) and
extrapolated to N images per class. Its uncertainty is a bootstrap that resamples both the
held-out images (within each class) and the cross-validation repeats, refitting the curve each
time; the sentences only claim what that interval supports.

The x axis is the smallest class's training images (the other classes grow in proportion, as in
the cross-validation); for balanced data that is "images per class". A per-class recall curve uses
that class's own count. Pure numpy/scipy; the classifier is passed in (the linear probe's head by
default), so this module needs no torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from scipy.optimize import least_squares

from ..errors import InspectorError

DEFAULT_FRACTIONS = (0.25, 0.4, 0.55, 0.7, 0.85, 1.0)
A_BOUNDS, B_BOUNDS, C_BOUNDS = (0.0, 1.0), (0.0, 10.0), (0.05, 2.0)
LIKELY_GAIN = 0.02  # a class "still rises" when even the low end of its predicted gain is above this
PLATEAU_GAIN = 0.03  # ... and "has plateaued" when even the high end of the gain is below this
FAR_EXTRAPOLATION = 4.0  # predicting beyond 4x the measured images per class is only a rough guess
WIDE_PREDICTION = 0.3  # a prediction interval wider than this is too vague to plan on

Predict = Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]


# -- the curve model -------------------------------------------------------------------------
@dataclass(frozen=True)
class PowerLaw:
    """accuracy(n) = a - b n^-c: rises with n and saturates at a."""

    a: float
    b: float
    c: float

    def __call__(self, n: np.ndarray | float) -> np.ndarray | float:
        return self.a - self.b * np.power(np.asarray(n, dtype=float), -self.c)


def fit_power_law(x: Sequence[float], y: Sequence[float], *, start: PowerLaw | None = None,
                  f_scale: float = 0.03) -> PowerLaw:
    """Robust bounded least-squares fit of y = a - b x^-c.

    Starts from `start` (default: the exact least-squares fit on a grid of exponents, see
    fit_power_law_many) and from two generic guesses; the lowest robust cost wins. The soft-L1 loss (scale `f_scale`, in accuracy units) keeps one
    noisy point from bending the whole curve.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if start is None and x.size >= 3 and np.unique(x).size >= 3:
        start = fit_power_law_many(x, y[None])[0]  # the exact least-squares fit, refined robustly below
    if x.size < 3 or np.unique(x).size < 3:
        raise ValueError("a power law needs points at 3 or more distinct sizes")
    lower, upper = [A_BOUNDS[0], B_BOUNDS[0], C_BOUNDS[0]], [A_BOUNDS[1], B_BOUNDS[1], C_BOUNDS[1]]

    def residuals(p: np.ndarray) -> np.ndarray:
        return p[0] - p[1] * x ** -p[2] - y

    top = float(np.clip(y.max() + 0.05, *A_BOUNDS))
    starts = [np.clip([start.a, start.b, start.c], lower, upper)]
    for c in (0.3, 1.5):  # and two generic starts, b from the smallest size's gap to the top
        b = float(np.clip((top - y[np.argmin(x)]) * x.min() ** c, 1e-3, B_BOUNDS[1]))
        starts.append(np.array([top, b, c]))
    best = None
    for p0 in starts:
        fit = least_squares(residuals, np.clip(p0, lower, upper), bounds=(lower, upper), loss="soft_l1",
                            f_scale=f_scale, max_nfev=200)
        if best is None or fit.cost < best.cost:
            best = fit
    return PowerLaw(*map(float, best.x))


C_GRID = np.geomspace(C_BOUNDS[0], C_BOUNDS[1], 96)


def fit_power_law_many(x: Sequence[float], ys: np.ndarray) -> list[PowerLaw]:
    """Least-squares fits of y = a - b x^-c to many rows of points at once (the bootstrap's fits).

    For a fixed exponent c the model is linear in (a, b), so each row is solved in closed form
    with the bounds b >= 0 and 0 <= a <= 1 enforced, for every c on a fine geometric grid over
    [0.05, 2]; the c with the smallest squared error wins. Exact up to the grid, and vectorised:
    thousands of fits in milliseconds, where one scipy fit per row took 10-50 ms on a busy CPU.
    """
    x = np.asarray(x, dtype=float)
    ys = np.atleast_2d(np.asarray(ys, dtype=float))  # (B, S)
    z = x[None, :] ** -C_GRID[:, None]  # (G, S)
    z_mean, y_mean = z.mean(1), ys.mean(1)  # (G,), (B,)
    zc = z - z_mean[:, None]
    var_z = (zc ** 2).sum(1)  # (G,)
    cov = (ys - y_mean[:, None]) @ zc.T  # (B, G)
    b = np.maximum(-cov / var_z, 0.0)
    a = y_mean[:, None] + b * z_mean[None, :]
    over, under = a > A_BOUNDS[1], a < A_BOUNDS[0]
    if over.any() or under.any():  # refit b with a pinned at the bound it crossed
        for bound, mask in ((A_BOUNDS[1], over), (A_BOUNDS[0], under)):
            b_fixed = np.maximum(((bound - ys) @ z.T) / (z ** 2).sum(1)[None, :], 0.0)
            b = np.where(mask, b_fixed, b)
            a = np.where(mask, bound, a)
    b = np.minimum(b, B_BOUNDS[1])
    sse = ((a[:, :, None] - b[:, :, None] * z[None] - ys[:, None, :]) ** 2).sum(2)  # (B, G)
    best = sse.argmin(1)
    rows = np.arange(len(ys))
    return [PowerLaw(float(a[i, g]), float(b[i, g]), float(C_GRID[g])) for i, g in zip(rows, best)]


# -- measuring the curve ---------------------------------------------------------------------
@dataclass
class LearningCurve:
    """Cross-validated correctness of every image at every training-set size."""

    classes: list[str]
    labels: np.ndarray  # (n,)
    counts: np.ndarray  # (K,) images per class in the data
    folds: int
    fractions: np.ndarray  # (S,)
    sizes: np.ndarray  # (S,) smallest class's training images at each step (mean over folds)
    class_sizes: np.ndarray  # (S, K) each class's training images at each step (mean over folds)
    correct: np.ndarray  # (R, S, n) bool: image right when trained at step s in repeat r

    @property
    def repeats(self) -> int:
        return self.correct.shape[0]


def _default_predict() -> Predict:
    from .features import lda_predict

    return lambda train_x, train_y, test_x, n_classes: lda_predict(train_x, train_y, test_x, n_classes)


def measure_learning_curve(features: np.ndarray, labels: Sequence[int], classes: Sequence[str], *,
                           fractions: Sequence[float] = DEFAULT_FRACTIONS, folds: int = 5, repeats: int = 4,
                           seed: int = 0, predict: Predict | None = None) -> LearningCurve:
    """Repeated stratified k-fold at increasing fractions of each training fold.

    Args:
        features: (n, d) frozen features; labels: class index per row.
        folds: at most this many folds (fewer when the smallest class is smaller).
        predict: predict(train_x, train_y, test_x, n_classes) -> predicted class per test row
            (default: the linear probe's shrinkage-LDA head).

    Raises:
        InspectorError: a class has fewer than 3 images (no curve can be measured).
    """
    from threadpoolctl import threadpool_limits

    x, y, classes = np.asarray(features, dtype=np.float64), np.asarray(labels, dtype=np.int64), list(classes)
    counts = np.bincount(y, minlength=len(classes))
    present = counts > 0
    if present.sum() < 2:
        raise InspectorError("The advisor needs images of at least two classes.")
    if counts[present].min() < 3:
        names = ", ".join(c for c, n in zip(classes, counts) if 0 < n < 3)
        raise InspectorError(f"The advisor needs at least 3 images in every class; {names} has fewer.")
    fractions = np.asarray(sorted(set(float(f) for f in fractions)), dtype=float)
    if fractions.size == 0 or fractions.min() <= 0 or fractions.max() > 1:
        raise ValueError("fractions must lie in (0, 1]")
    k = int(min(folds, counts[present].min()))
    with threadpool_limits(1):  # small matrices: BLAS threads only contend (15x slower on a busy 2-core CPU)
        correct, class_sizes, min_sizes = _cross_validate(x, y, counts, fractions, k, repeats, seed,
                                                          predict or _default_predict())
    return LearningCurve(classes, y, counts, k, fractions, min_sizes, class_sizes, correct)


def _cross_validate(x: np.ndarray, y: np.ndarray, counts: np.ndarray, fractions: np.ndarray, k: int, repeats: int,
                    seed: int, predict: Predict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import StratifiedKFold

    n_classes = len(counts)
    correct = np.zeros((repeats, len(fractions), len(y)), dtype=bool)
    class_sizes = np.zeros((len(fractions), n_classes))
    min_sizes = np.zeros(len(fractions))
    for r in range(repeats):
        rng = np.random.default_rng(seed + 7919 * r)
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed + r)
        for train_idx, val_idx in splitter.split(x, y):
            by_class = [rng.permutation(train_idx[y[train_idx] == c]) for c in range(n_classes)]
            for s, fraction in enumerate(fractions):  # nested cuts of the same shuffled fold
                take = [min(len(idx), max(2, int(round(fraction * len(idx))))) if len(idx) else 0 for idx in by_class]
                sub = np.concatenate([idx[:m] for idx, m in zip(by_class, take)])
                correct[r, s, val_idx] = predict(x[sub], y[sub], x[val_idx], n_classes) == y[val_idx]
                class_sizes[s] += np.asarray(take) / (repeats * k)
                min_sizes[s] += min(m for m, c in zip(take, counts) if c) / (repeats * k)
    return correct, class_sizes, min_sizes


# -- the advice ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassAdvice:
    """One class's recall now (0-1, with its interval) and at `Advice.at` images per class."""

    name: str
    images: int
    recall: float
    recall_interval: tuple[float, float]
    predicted_recall: float | None
    predicted_interval: tuple[float, float] | None
    suggested_extra_images: int
    status: str  # "rising", "plateaued", "uncertain" or "no_fit"
    sentence: str

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.images, "recall": self.recall, "recall_interval": list(self.recall_interval),
                "predicted_recall": self.predicted_recall,
                "predicted_interval": list(self.predicted_interval) if self.predicted_interval else None,
                "suggested_extra_images": self.suggested_extra_images, "status": self.status,
                "sentence": self.sentence}


@dataclass(frozen=True)
class Advice:
    """What `advise` found: accuracies are 0-1, intervals (low, high) at the bootstrap's level.

    The app draws it as it is (ui.evidence.render_advice); `to_dict()` is the JSON of `inspector advise`.
    """

    at: int  # the images per class the prediction is for
    current_accuracy: float
    current_interval: tuple[float, float]
    predicted_accuracy: float | None
    predicted_interval: tuple[float, float] | None
    per_class: list[ClassAdvice]
    sentences: list[str]
    curve: dict[str, list]  # measured points: sizes, accuracy, low, high
    fit: dict[str, Any] | None  # the fitted curve on a grid, with its bootstrap band, and a, b, c
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"current_accuracy": self.current_accuracy, "current_interval": list(self.current_interval),
                "at": self.at, "predicted_accuracy": self.predicted_accuracy,
                "predicted_interval": list(self.predicted_interval) if self.predicted_interval else None,
                "per_class": {c.name: c.to_dict() for c in self.per_class}, "sentences": self.sentences,
                "curve": self.curve, "fit": self.fit, "settings": self.settings}


def _bootstrap_points(curve: LearningCurve, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy (B, S) and per-class recall (B, K, S) after resampling repeats and images."""
    y, (n_rep, n_steps, n) = curve.labels, curve.correct.shape
    n_classes = len(curve.classes)
    members = [np.flatnonzero(y == c) for c in range(n_classes)]
    acc = np.empty((n_boot, n_steps))
    recall = np.full((n_boot, n_classes, n_steps), np.nan)
    for b in range(n_boot):
        scored = curve.correct[rng.integers(n_rep, size=n_rep)].mean(0)  # (S, n)
        weights = np.zeros(n)
        for c, idx in enumerate(members):
            if len(idx):
                drawn = np.bincount(rng.integers(len(idx), size=len(idx)), minlength=len(idx))
                weights[idx] = drawn
                recall[b, c] = scored[:, idx] @ drawn / len(idx)
        acc[b] = scored @ weights / n
    return acc, recall


def _quantiles(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return (float(low), float(high))


def _fit_all(x: np.ndarray, point: np.ndarray, boot: np.ndarray) -> tuple[PowerLaw, list[PowerLaw]] | None:
    if np.unique(np.round(x, 6)).size < 3:
        return None
    return fit_power_law(x, point), fit_power_law_many(x, boot)


def advise(curve: LearningCurve, at: int | None = None, *, n_boot: int = 200, level: float = 0.95,
           seed: int = 0) -> Advice:
    """Extrapolate `curve` to `at` images per class (default: twice the smallest class)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # many tiny products: BLAS threads only contend
        return _advise(curve, at, n_boot, level, seed)


def _advise(curve: LearningCurve, at: int | None, n_boot: int, level: float, seed: int) -> Advice:
    rng = np.random.default_rng(seed)
    counts = curve.counts
    smallest = int(counts[counts > 0].min())
    at = int(at) if at is not None else 2 * smallest
    if at < 1:
        raise InspectorError("--at must be a positive number of images per class.")
    scored = curve.correct.mean(0)  # (S, n)
    point_acc = scored.mean(1)
    members = [np.flatnonzero(curve.labels == c) for c in range(len(curve.classes))]
    point_recall = np.array([scored[:, idx].mean(1) if len(idx) else np.full(len(point_acc), np.nan)
                             for idx in members])
    boot_acc, boot_recall = _bootstrap_points(curve, n_boot, rng)
    low_high = [_quantiles(boot_acc[:, s], level) for s in range(len(point_acc))]
    current, current_interval = float(point_acc[-1]), low_high[-1]

    fits = _fit_all(curve.sizes, point_acc, boot_acc)
    predicted = predicted_interval = fit_info = None
    if fits is not None:
        best, boots = fits
        predicted = float(np.clip(best(at), 0, 1))
        preds = np.clip([f(at) for f in boots], 0, 1)
        predicted_interval = _quantiles(preds, level)
        grid = np.unique(np.concatenate([np.linspace(curve.sizes.min(), max(at, curve.sizes.max()), 40), [at]]))
        band = np.clip(np.array([f(grid) for f in boots]), 0, 1)
        fit_info = {"a": best.a, "b": best.b, "c": best.c, "sizes": grid.tolist(),
                    "accuracy": np.clip(best(grid), 0, 1).tolist(),
                    "low": np.percentile(band, 100 * (1 - level) / 2, axis=0).tolist(),
                    "high": np.percentile(band, 100 - 100 * (1 - level) / 2, axis=0).tolist()}

    per_class = [_class_advice(curve, c, at, point_recall[c], boot_recall[:, c], level) for c in range(len(curve.classes))
                 if counts[c] > 0]
    measured_max = float(curve.sizes.max())
    sentences = _sentences(curve, at, current, current_interval, predicted, predicted_interval, measured_max,
                           per_class, level)
    points = {"sizes": curve.sizes.tolist(), "accuracy": point_acc.tolist(),
              "low": [lo for lo, _ in low_high], "high": [hi for _, hi in low_high],
              "class_sizes": {curve.classes[c]: curve.class_sizes[:, c].tolist() for c in range(len(curve.classes))},
              "recall": {curve.classes[c]: point_recall[c].tolist() for c in range(len(curve.classes))}}
    settings = {"folds": curve.folds, "repeats": curve.repeats, "fractions": curve.fractions.tolist(),
                "bootstrap": n_boot, "level": level, "model": "accuracy(n) = a - b n^-c"}
    return Advice(at, current, current_interval, predicted, predicted_interval, per_class, sentences, points,
                  fit_info, settings)


def _class_advice(curve: LearningCurve, c: int, at: int, recall: np.ndarray, boot: np.ndarray,
                  level: float) -> ClassAdvice:
    name, images = curve.classes[c], int(curve.counts[c])
    x = curve.class_sizes[:, c]
    now, now_interval = float(recall[-1]), _quantiles(boot[:, -1], level)
    target = max(at, images)
    extra = max(0, at - images)
    fits = _fit_all(x, recall, boot)
    if fits is None:
        return ClassAdvice(name, images, now, now_interval, None, None, extra, "no_fit",
                           f"{name}: recall {now:.2f} now; too few images to fit its learning curve.")
    best, boots = fits
    pred = float(np.clip(best(target), 0, 1))
    preds = np.clip([f(target) for f in boots], 0, 1)
    gains = preds - np.clip([f(x[-1]) for f in boots], 0, 1)
    interval = _quantiles(preds, level)
    gain_low, gain_high = _quantiles(gains, level)
    if extra == 0:
        status = "plateaued" if gain_high < PLATEAU_GAIN else "uncertain"
    elif now >= 0.98 or gain_high < PLATEAU_GAIN:
        status, extra = "plateaued", 0
    elif gain_low >= LIKELY_GAIN:
        status = "rising"
    else:
        status = "uncertain"
    if status == "rising":
        sentence = (f"{name}: recall {now:.2f} now, about {pred:.2f} with {target} images "
                    f"({interval[0]:.2f} to {interval[1]:.2f}): about {extra} more images of {name} are likely "
                    "to help.")
    elif status == "plateaued":
        sentence = (f"{name}: recall {now:.2f} has plateaued; more images of {name} are unlikely to raise it "
                    "much.")
    elif extra:
        sentence = (f"{name}: recall {now:.2f} now; these images cannot tell whether {extra} more would help "
                    f"(predicted {pred:.2f}, anywhere from {interval[0]:.2f} to {interval[1]:.2f}).")
    else:
        sentence = f"{name}: recall {now:.2f} with {images} images; it already has {at} or more."
    return ClassAdvice(name, images, now, now_interval, pred, interval, extra, status, sentence)


def _sentences(curve: LearningCurve, at: int, current: float, current_interval: tuple[float, float],
               predicted: float | None, interval: tuple[float, float] | None, measured_max: float,
               per_class: list[ClassAdvice], level: float) -> list[str]:
    pct = f"{100 * level:.0f}%"
    out = [f"Cross-validated accuracy now: {current:.2f} ({pct} interval {current_interval[0]:.2f} to "
           f"{current_interval[1]:.2f}), with about {measured_max:.0f} training images per class in each of "
           f"{curve.folds} folds, {curve.repeats} repeats."]
    if predicted is None:
        out.append("Too few images to fit a learning curve: no prediction is possible yet.")
        return out
    width = interval[1] - interval[0]
    guess = (f"With {at} images per class the fitted learning curve predicts an accuracy of about {predicted:.2f} "
             f"({pct} interval {interval[0]:.2f} to {interval[1]:.2f})")
    if width > WIDE_PREDICTION:
        out.append(guess + ": too uncertain to plan on. Collect a few more images and ask again.")
    elif at / max(measured_max, 1e-9) > FAR_EXTRAPOLATION:
        out.append(guess + f", but that is more than {FAR_EXTRAPOLATION:.0f}x the images measured: a rough guess.")
    else:
        out.append(guess + ".")
    rising = [c for c in per_class if c.status == "rising"]
    flat = [c.name for c in per_class if c.status == "plateaued"]
    if rising:
        out.append(f"Still rising clearly, more images likely to help: {', '.join(c.name for c in rising)}.")
    if flat:
        out.append(f"Plateaued: {', '.join(flat)}.")
    out.extend(c.sentence for c in per_class)
    out.append("This assumes the new images are like the current ones and every class grows alike.")
    return out


def advise_from_features(features: np.ndarray, labels: Sequence[int], classes: Sequence[str],
                         at: int | None = None, *, seed: int = 0, folds: int = 5, repeats: int = 4,
                         n_boot: int = 200, predict: Predict | None = None) -> Advice:
    """Measure the learning curve of these features and extrapolate it (the advisor in one call)."""
    curve = measure_learning_curve(features, labels, classes, folds=folds, repeats=repeats, seed=seed,
                                   predict=predict)
    advice = advise(curve, at, n_boot=n_boot, seed=seed)
    if not math.isfinite(advice.current_accuracy):
        raise InspectorError("The learning curve could not be measured on these images.")
    return advice
