"""What a bundle's model outputs mean, keyed by `runtime_outputs` in labels.json.

    "probabilities"  model.onnx -> probabilities (batch, classes) (and logits, and embedding (batch, D):
                     the features the head sees); rows with label / confidence / probabilities, and
                     an OK/NG verdict from P(defect) when OK classes are given; with a familiarity
                     guard in labels.json (familiarity.py) and the embedding output, each row's
                     distance from the training images, UNSURE beyond its limit
    "anomaly_score"  model.onnx -> raw_score (batch,), patch_distances (batch, H', W') (and embedding
                     (batch, C): each input's mean patch features); rows with score / raw_score /
                     verdict from the calibration scores in labels.json, so a new target false-reject
                     rate moves the threshold without re-export; a tiled model's inputs are tiles
                     (tiling.py); with a familiarity guard, UNSURE beyond its limit as above

The runtime asks the reader, never the task's name, what a bundle's outputs are; a new kind of
model output is one more class in `READERS`.
"""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np

from .calibration import ScoreScale, calibrate
from .errors import InspectorError
from .familiarity import FamiliarityGuard, read_guard
from .rows import familiarity_rows, probability_rows, score_rows

LOGITS_OUTPUT = "logits"  # a classifier's class scores before the softmax (batch, classes): a tiled model averages them
EMBEDDING_OUTPUT = "embedding"  # a classifier's features before its head (batch, D): the familiarity guard's input


class Outputs:
    """Turns a bundle's model outputs into result rows and the header fields of its JSON."""

    kind: ClassVar[str]
    options: ClassVar[frozenset[str]]  # the predict options it takes: ok_classes, threshold, target_frr
    refusal: ClassVar[str]  # predict.py's message when another kind's options are given

    def __init__(self, labels: dict[str, Any], target_frr: float | None = None) -> None:
        self.labels = labels
        self.classes = [str(c) for c in labels["classes"]]

    def header(self) -> dict[str, Any]:
        """The top-level fields of the JSON beside "predictions" (as `inspector predict --json`)."""
        raise NotImplementedError

    def fields(self) -> dict[str, Any]:
        """Attributes a Bundle of this kind carries beside classes and labels (e.g. its threshold)."""
        return {}

    def rows(self, bundle: Any, images: Sequence[np.ndarray], ok_classes: Sequence[str] | None = None,
             threshold: float | None = None, batch_size: int = 32) -> list[dict[str, Any]]:
        """One row per RGB uint8 image (any size), in order."""
        raise NotImplementedError

    def readme(self, details: dict[str, Any]) -> dict[str, str]:
        """The bundle README's words for this kind (Markdown): usage (a command line), what (a bullet),
        inside (what the model does after the resize), api (its own outputs from Python); details:
        the exported graph's (e.g. views)."""
        raise NotImplementedError


class ProbabilityOutputs(Outputs):
    kind = "probabilities"
    options = frozenset({"ok_classes", "threshold"})
    refusal = "--target-frr goes with an anomaly model; this model is a classifier."

    def __init__(self, labels: dict[str, Any], target_frr: float | None = None) -> None:
        super().__init__(labels)
        # The guard needs the model's embedding output: a bundle exported without it has no guard.
        self.familiarity: FamiliarityGuard | None = (
            read_guard(labels.get("familiarity")) if EMBEDDING_OUTPUT in (labels.get("outputs") or []) else None)

    def header(self) -> dict[str, Any]:
        return {"classes": self.classes}

    def fields(self) -> dict[str, Any]:
        return {"familiarity": self.familiarity}

    def rows(self, bundle, images, ok_classes=None, threshold=None, batch_size=32):
        ok_classes = (self.labels.get("ok_classes") or []) if ok_classes is None else ok_classes
        threshold = self.labels.get("threshold", 0.5) if threshold is None else threshold
        if self.familiarity is None:
            return probability_rows(self.classes, bundle.predict_proba(images, batch_size), ok_classes, threshold)
        probabilities, embeddings = self.with_embeddings(bundle, images, batch_size)
        rows = probability_rows(self.classes, probabilities, ok_classes, threshold)
        return familiarity_rows(rows, self.familiarity.distance(embeddings), self.familiarity.limit)

    def with_embeddings(self, bundle, images: Sequence[np.ndarray], batch_size: int = 32
                        ) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (n, classes), embeddings (n, D)) of RGB uint8 arrays, float32, in one model pass
        per batch (a tiled model's: the means over each image's tiles, Bundle.classifier_outputs)."""
        outputs = bundle.classifier_outputs(images, batch_size)
        if len(outputs) < 2:
            return outputs[0], np.zeros((0, 0), dtype=np.float32)
        return outputs[0], outputs[list(self.labels["outputs"]).index(EMBEDDING_OUTPUT)]

    def readme(self, details):
        return {"usage": "python predict.py /path/to/images --ok-classes ok   # adds an OK/NG verdict",
                "what": f"- Classes: {', '.join(self.classes)}.",
                "inside": f"{details.get('views', 1)} symmetric view(s) averaged inside the model",
                "api": "`bundle.predict_proba([rgb_uint8_array])`: the probabilities (n, classes)"}


class AnomalyScoreOutputs(Outputs):
    kind = "anomaly_score"
    options = frozenset({"target_frr"})
    refusal = ("--ok-classes and --threshold go with a classifier; this anomaly model sets its threshold "
               "with --target-frr.")

    def __init__(self, labels: dict[str, Any], target_frr: float | None = None) -> None:
        super().__init__(labels)
        # The threshold for the false-reject target, from the good parts' out-of-sample scores.
        self.target_frr = float(labels["target_frr"] if target_frr is None else target_frr)
        self.scale: ScoreScale = calibrate(np.asarray(labels["calibration_scores"], dtype=np.float64),
                                           self.target_frr)
        self.familiarity: FamiliarityGuard | None = (
            read_guard(labels.get("familiarity")) if EMBEDDING_OUTPUT in (labels.get("outputs") or []) else None)

    def header(self) -> dict[str, Any]:
        return {"task": self.labels.get("task"), "threshold": self.scale.threshold, "target_frr": self.target_frr}

    def fields(self) -> dict[str, Any]:
        return {"scale": self.scale, "threshold": self.scale.threshold, "target_frr": self.target_frr,
                "ok_classes": list(self.labels.get("ok_classes") or []), "familiarity": self.familiarity}

    def rows(self, bundle, images, ok_classes=None, threshold=None, batch_size=32):
        scored = bundle.score_all(images, batch_size)
        rows = score_rows(scored.results()[0], self.scale)
        if self.familiarity is None:
            return rows
        return familiarity_rows(rows, self.familiarity.distance(scored.embeddings()), self.familiarity.limit)

    def readme(self, details):
        ok = ", ".join(self.labels.get("ok_classes") or [])
        return {"usage": "python predict.py /path/to/images --target-frr 0.01  # another false-reject target, "
                         "no re-export",
                "what": f"- Anomaly detection: learned from good parts ({ok}) only. `score` is 0..1, exactly 0.5 at "
                        f"the threshold; `verdict` is NG above it. The threshold keeps the false-reject rate at "
                        f"{self.target_frr:.1%} (target set at training; `--target-frr` moves it).",
                "inside": "the patch features and their distances to the good parts' memory bank",
                "api": "`bundle.score([rgb_uint8_array])`: raw scores (n,) and one patch distance map per image "
                       "(a tiled model's stitched over the image)"}


READERS: dict[str, type[Outputs]] = {cls.kind: cls for cls in (ProbabilityOutputs, AnomalyScoreOutputs)}


def outputs_kind(labels: dict[str, Any]) -> str:
    """labels.json's `runtime_outputs`; bundles written before it existed are read by their fields."""
    return labels.get("runtime_outputs") or ("anomaly_score" if "calibration_scores" in labels else "probabilities")


def output_reader(labels: dict[str, Any], target_frr: float | None = None) -> Outputs:
    """The reader of a bundle's labels.json. Raises InspectorError for an unknown kind or a target
    false-reject rate outside (0, 1)."""
    kind = outputs_kind(labels)
    if kind not in READERS:
        raise InspectorError(f"This bundle's model outputs '{kind}', which this predict.py cannot read "
                             f"(it reads {', '.join(READERS)}).")
    return READERS[kind](labels, target_frr)
