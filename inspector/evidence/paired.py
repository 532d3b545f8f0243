"""Is model A really better than model B on the same images? A paired comparison in plain words.

Two models scored on the same images are compared image by image. Only the images on which they
disagree (one right, the other wrong) carry information about which is better; McNemar's exact
test asks whether those disagreements split more unevenly than a fair coin would split them
(a two-sided binomial test with p = 1/2). The interval of the accuracy difference comes from the
same procedure (`mcnemar_exact_ci`: the exact, Clopper-Pearson, interval of the share of the
disagreements A wins, scaled to accuracy points), so the verdict and the interval always agree:
"significant" exactly when the interval leaves out 0. Runs scored on different images are refused: comparing two
accuracies measured on different images as if they were paired hides the luck of the split.

Pure numpy/scipy: no torch, no run store (inspector/comparison.py reads the runs).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np
from scipy.stats import binom

from ..errors import InspectorError

if TYPE_CHECKING:  # types only: this module never imports the run store
    from ..runs import RunInfo

VERDICTS = ("a_better", "b_better", "no_significant_difference")
FINE_TUNING_STRATEGIES = frozenset({"fine_tune", "partial_fine_tune", "lp_ft", "l2_sp"})
FROZEN_FEATURE_STRATEGIES = frozenset({"linear_probe"})


@dataclass(frozen=True)
class PairedComparison:
    """The outcome of `compare_predictions`; `difference` is accuracy_a - accuracy_b."""

    name_a: str
    name_b: str
    n_images: int
    accuracy_a: float
    accuracy_b: float
    difference: float
    difference_ci: tuple[float, float]
    p_value: float
    only_a_right: int  # images A gets right and B wrong
    only_b_right: int
    verdict: str
    sentence: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["difference_ci"] = list(self.difference_ci)
        return data


def mcnemar_exact_p(only_a_right: int, only_b_right: int) -> float:
    """Two-sided exact McNemar p-value: binomial test of the disagreements against p = 1/2.

    p = min(1, 2 * P(X <= min(b, c))) with X ~ Binomial(b + c, 1/2); 1.0 without disagreements.
    """
    b, c = int(only_a_right), int(only_b_right)
    if b < 0 or c < 0:
        raise ValueError("disagreement counts cannot be negative")
    if b + c == 0:
        return 1.0
    return float(min(1.0, 2.0 * binom.cdf(min(b, c), b + c, 0.5)))


def mcnemar_exact_ci(only_a_right: int, only_b_right: int, n_images: int, *, alpha: float = 0.05
                     ) -> tuple[float, float]:
    """The (1 - alpha) interval of accuracy_a - accuracy_b that inverts McNemar's exact test.

    Given the d = b + c disagreements, A wins each with an unknown share theta, and the accuracy
    difference is (b - c) / n = d / n * (2 theta - 1). The Clopper-Pearson interval of theta is the
    set of shares the two one-sided exact binomial tests at alpha / 2 do not reject, and
    `mcnemar_exact_p` doubles the smaller tail: 0 lies outside this interval exactly when that p < alpha.
    Without disagreements the difference is exactly 0 on these images: (0, 0).
    """
    from scipy.stats import beta

    b, c, n = int(only_a_right), int(only_b_right), int(n_images)
    d = b + c
    if d == 0:
        return (0.0, 0.0)
    low = float(beta.ppf(alpha / 2, b, c + 1)) if b > 0 else 0.0
    high = float(beta.ppf(1 - alpha / 2, b + 1, c)) if c > 0 else 1.0
    return (d / n * (2 * low - 1), d / n * (2 * high - 1))


def bootstrap_difference_ci(correct_a: np.ndarray, correct_b: np.ndarray, *, level: float = 0.95,
                            n_boot: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval (over images) of mean(correct_a) - mean(correct_b).

    Not what `compare_correctness` reports: a bootstrap interval and McNemar's test are two methods
    and can disagree near the edge (p = 0.12 beside an interval of -6 to -1); the comparison uses
    `mcnemar_exact_ci`, the interval of its own test.

    Each image contributes -1, 0 or +1 to the difference, so resampling n images with
    replacement is a multinomial draw over those three counts: exact and O(n_boot), not O(n_boot n).
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    n = a.size
    if n == 0:
        return (float("nan"), float("nan"))
    plus, minus = int((a & ~b).sum()), int((~a & b).sum())
    counts = np.random.default_rng(seed).multinomial(n, [plus / n, minus / n, (n - plus - minus) / n], size=n_boot)
    diffs = (counts[:, 0] - counts[:, 1]) / n
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return (float(low), float(high))


def _key(path: Any) -> str:
    return os.path.normpath(str(path))


def _as_table(predictions: Iterable[Mapping[str, Any]], which: str) -> dict[str, tuple[str, str]]:
    """path -> (true label, predicted label), refusing duplicates and incomplete rows."""
    table: dict[str, tuple[str, str]] = {}
    for row in predictions:
        try:
            key, label, predicted = _key(row["path"]), str(row["label"]), str(row["predicted"])
        except (KeyError, TypeError):
            raise InspectorError(f"The predictions of {which} are incomplete: each needs a path, the true label "
                                 "and the predicted label.") from None
        if key in table:
            raise InspectorError(f"The predictions of {which} score the image {key} twice, so they cannot be "
                                 "paired image by image.")
        table[key] = (label, predicted)
    return table


def _check_same_images(a: dict, b: dict, name_a: str, name_b: str) -> None:
    if not a or not b:
        empty = name_a if not a else name_b
        raise InspectorError(f"{empty} has no per-image predictions to compare.")
    if a.keys() != b.keys():
        common = len(a.keys() & b.keys())
        raise InspectorError(
            f"{name_a} and {name_b} were scored on different images ({len(a)} and {len(b)} images, "
            f"{common} in common), so their accuracies cannot be compared as if paired. Score both on the "
            "same evaluation folder: inspector compare RUN_A RUN_B DATA")
    relabelled = [k for k in a if a[k][0] != b[k][0]]
    if relabelled:
        raise InspectorError(f"{name_a} and {name_b} disagree on the true class of {len(relabelled)} images "
                             f"(for example {relabelled[0]}): they were not scored on the same labeled data.")


def compare_predictions(predictions_a: Iterable[Mapping[str, Any]], predictions_b: Iterable[Mapping[str, Any]], *,
                        name_a: str = "A", name_b: str = "B", alpha: float = 0.05) -> PairedComparison:
    """Paired comparison of two models from their per-image predictions.

    Args:
        predictions_a, predictions_b: rows with "path", "label" (true class) and "predicted", as the
            trainer stores them in evaluation.json. Both must cover exactly the same images.
        alpha: significance level of McNemar's exact test (the verdict); the interval of the accuracy
            difference is that test's (1 - alpha) interval (`mcnemar_exact_ci`), so they always agree.

    Raises:
        InspectorError: the two were scored on different images, or on different labels.
    """
    table_a, table_b = _as_table(predictions_a, name_a), _as_table(predictions_b, name_b)
    _check_same_images(table_a, table_b, name_a, name_b)
    keys = sorted(table_a)
    correct_a = np.array([table_a[k][0] == table_a[k][1] for k in keys])
    correct_b = np.array([table_b[k][0] == table_b[k][1] for k in keys])
    return compare_correctness(correct_a, correct_b, name_a=name_a, name_b=name_b, alpha=alpha)


def compare_correctness(correct_a: np.ndarray, correct_b: np.ndarray, *, name_a: str = "A", name_b: str = "B",
                        alpha: float = 0.05) -> PairedComparison:
    """The same as `compare_predictions` from two aligned boolean arrays (image i right or wrong)."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise InspectorError("A paired comparison needs the same, non-empty list of images for both models.")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = mcnemar_exact_p(only_a, only_b)
    acc_a, acc_b = float(a.mean()), float(b.mean())
    diff = acc_a - acc_b
    ci = mcnemar_exact_ci(only_a, only_b, a.size, alpha=alpha)  # the same test: 0 outside it iff p < alpha
    verdict = "no_significant_difference" if p >= alpha or diff == 0 else ("a_better" if diff > 0 else "b_better")
    sentence = describe(verdict, name_a, name_b, diff, ci, p, a.size, only_a, only_b, 1 - alpha)
    return PairedComparison(name_a, name_b, int(a.size), acc_a, acc_b, diff, ci, p, only_a, only_b, verdict, sentence)


def _points(x: float) -> str:
    """A difference in accuracy as signed percentage points: +6, -3, 0; under one point, one decimal
    (+0.4), so an interval that leaves out 0 never reads as reaching it."""
    if x == 0:
        return "0"
    value = round(100 * x)
    return f"{value:+d}" if value else f"{100 * x:+.1f}"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def describe(verdict: str, name_a: str, name_b: str, diff: float, ci: tuple[float, float], p: float, n: int,
             only_a: int, only_b: int, level: float = 0.95) -> str:
    """The verdict in one or two plain sentences (what the Compare page and the CLI print)."""
    interval = f"{100 * level:.0f}% CI {_points(ci[0])} to {_points(ci[1])}"
    basis = (f"on {n} images; they disagree on {only_a + only_b}: {name_a} alone is right on {only_a}, "
             f"{name_b} alone on {only_b}")
    if verdict == "a_better":
        return f"{name_a} is better than {name_b}: {_points(diff)} points ({interval}), {_p(p)}, {basis}."
    if verdict == "b_better":  # said from B's side, so the interval is of B minus A
        return (f"{name_b} is better than {name_a}: {_points(-diff)} points ({100 * level:.0f}% CI "
                f"{_points(-ci[1])} to {_points(-ci[0])}), {_p(p)}, {basis}.")
    note = ("" if only_a + only_b >= 6 else
            " So few disagreements cannot show a difference either way: score both on more images.")
    return (f"No significant difference between {name_a} and {name_b} ({_p(p)}; {name_a} minus {name_b}: "
            f"{_points(diff)} points, {interval}, {basis}): pick the faster one.{note}")


def is_fine_tuning(strategy: str | None) -> bool:
    return bool(strategy) and (strategy in FINE_TUNING_STRATEGIES or "fine_tune" in str(strategy))


def negative_transfer_note(run_a: RunInfo, run_b: RunInfo, comparison: PairedComparison | None = None) -> str | None:
    """A plain warning when a fine-tuned run scores below a frozen-feature run on the same data.

    Args:
        run_a, run_b: the two runs' records (`inspector.runs.RunInfo`), in either order. Read: name,
            strategy, and from the summary val_accuracy (0-1), n_images and classes; a run without a
            summary or without val_accuracy gives no note.
        comparison: the paired comparison of the two, if any: the note then says whether the gap is
            significant.

    Returns:
        The warning (plain sentences), or None when the runs are not a fine-tuning / linear-probe pair,
        were trained on different data, or fine-tuning did not score lower.
    """
    pair = [(run_a, "A"), (run_b, "B")]
    tuned = [(info, tag) for info, tag in pair if is_fine_tuning(info.strategy)]
    frozen = [(info, tag) for info, tag in pair if info.strategy in FROZEN_FEATURE_STRATEGIES]
    if len(tuned) != 1 or len(frozen) != 1:
        return None
    (tuned_info, tuned_tag), (frozen_info, frozen_tag) = tuned[0], frozen[0]
    tuned_summary, frozen_summary = tuned_info.run_summary, frozen_info.run_summary
    acc_tuned, acc_frozen = tuned_summary.val_accuracy, frozen_summary.val_accuracy
    if acc_tuned is None or acc_frozen is None or acc_tuned >= acc_frozen:
        return None
    for name in ("n_images", "classes"):
        # 0 images / no classes is how a summary that never recorded them reads: unknown, not different
        left, right = tuned_summary.value(name), frozen_summary.value(name)
        if left and right and left != right:
            return None  # different data: the two accuracies say nothing about each other
    tuned_name = tuned_info.name or f"run {tuned_tag}"
    frozen_name = frozen_info.name or f"run {frozen_tag}"
    gap = 100 * (acc_frozen - acc_tuned)
    text = (f"Fine-tuning hurt here: {tuned_name} ({tuned_info.strategy}) scored {acc_tuned:.2f} on "
            f"held-out images against {acc_frozen:.2f} for the frozen-feature {frozen_name}, {gap:.0f} points "
            "lower on the same data. This is negative transfer: with only a few images per class, training the "
            "whole network lets it fit these few photos (their background, lighting, one-off marks) and "
            "overwrite general features it learned from over a million ImageNet images, while the frozen "
            "network keeps them and only a small classifier is learned. Keep the linear probe until you have "
            "many more images per class.")
    if comparison is not None and comparison.verdict == "no_significant_difference":
        text += (f" (On these {comparison.n_images} images the gap is not statistically significant, "
                 f"{_p(comparison.p_value)}: fine-tuning bought nothing for its extra training time.)")
    return text
