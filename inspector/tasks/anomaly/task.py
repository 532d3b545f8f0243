"""The anomaly task: learn what good parts look like from good images only, and flag anything else.

The threshold comes from good images alone: each is scored by a memory bank built without it, and
split-conformal calibration picks the score that keeps the false-reject rate on new good parts at
or below the user's target. Defect images, when present, are never trained on and never set the
threshold; they only measure the detection rate and the AUROC."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ...data import ValidationPlan
from ...engine.device import resolve_device
from ...errors import InspectorError
from ...evaluation import DetectionEvaluation, ScoredImage, auroc
from ..base import Column, Evaluation, ParityRule, PredictOptions, Task, register_task
from .calibration import calibrate, frr_guarantee_message, min_guaranteed_frr
from .detector import DetectorConfig, PatchDetector
from .export import compare_raw_scores, export_detector
from .model import CALIBRATION_FOLDS, AnomalyModel, PatchMemory

GOOD_NAMES = ("good", "ok", "normal", "nominal", "free", "pass")
# Measured on magnetic-tile (docs/BENCHMARKS.md): 256 px 0.837 AUROC, 320 px 0.834 at 1.56x the
# patches, the reference at 224 px 0.823. Used when the user leaves the image size to the tool.
DEFAULT_IMAGE_SIZE = 256
MIN_GOOD_IMAGES = 2
MAX_RELATIVE_SCORE_DIFF = 1e-4  # parity: the largest relative raw-score difference an exported bundle may show


def good_classes(classes: Sequence[str], ok_classes: Sequence[str] | None = None) -> list[str]:
    """The classes that hold good parts: those named by the user, else the one class named good, ok,
    normal, nominal, free or pass (any case), else the only class. Plain errors otherwise."""
    classes = list(classes)
    if ok_classes:
        unknown = [c for c in ok_classes if c not in classes]
        if unknown:
            raise InspectorError(f"The OK classes {', '.join(unknown)} are not in the data; its classes are "
                                 f"{', '.join(classes) or 'none'}.")
        return list(dict.fromkeys(ok_classes))
    named = [c for c in classes if c.strip().lower() in GOOD_NAMES]
    if len(named) == 1:
        return named
    if len(classes) == 1:
        return classes
    if len(named) > 1:
        raise InspectorError(f"Several classes look like good parts ({', '.join(named)}): say which with "
                             "--ok-classes (or pick them in the app).")
    raise InspectorError(f"None of the classes ({', '.join(classes)}) is recognisably the good parts (named "
                         f"{', '.join(GOOD_NAMES)}): name the good class(es) with --ok-classes.")


@register_task
class AnomalyTask(Task):
    name = "anomaly"
    summary = "I only have good parts: learn what good looks like and flag anything unusual."
    choice = "I only have good parts"
    accepts = frozenset({"target_frr", "classifier"})
    runtime_outputs = "anomaly_score"
    heatmap_caption = "anomaly map (blue to yellow: below the threshold; red: past it)"
    parity = ParityRule("verdicts", "raw scores", "max_rel_raw_score_diff", "relative raw-score difference",
                        MAX_RELATIVE_SCORE_DIFF, lambda predictor, images: predictor.score(images)[0],
                        lambda bundle, images: bundle.score(images)[0], compare_raw_scores)
    evaluation_type = DetectionEvaluation
    columns = (Column("val_auroc", "AUROC", "%.3f", "Good (out of sample) vs defect images."),
               Column("target_frr", "false rejects (target)", "%.2f"),
               Column("val_detection_rate", "defects caught", "%.2f", "Share of the defect images past the threshold."))

    def strategies(self) -> dict[str, str]:
        return {PatchMemory.name: PatchMemory.summary}

    def check_dataset(self, dataset, config) -> None:
        if not len(dataset):
            raise InspectorError("There are no readable images to learn from.")
        good = good_classes(dataset.classes, config.ok_classes)
        n_good = sum(dataset.counts()[c] for c in good)
        if n_good < MIN_GOOD_IMAGES:
            raise InspectorError(f"Anomaly detection needs at least {MIN_GOOD_IMAGES} good images to set its "
                                 f"threshold (each good image is scored by a model built without it); "
                                 f"found {n_good} in {', '.join(good)}. Add more photos of good parts.")

    def choose_strategy(self, config, dataset, device):
        if config.strategy not in ("auto", PatchMemory.name):
            raise InspectorError(f"The anomaly task has one strategy, '{PatchMemory.name}'; "
                                 f"'{config.strategy}' is a classification strategy.")
        return PatchMemory(), "a memory bank of good patches needs no defect images"

    def scale(self, config, dataset):
        """Whole images, or tiles at the scale where a `defect_size` defect spans a feature cell (large
        images: tiles at their own resolution); see inspector/scale.py. The regions are checked here."""
        from ...runtime.regions import Regions
        from ...scale import choose_tiling

        if config.regions:
            Regions.from_dict(config.regions)  # a plain error for bad regions before any work
        return choose_tiling([(s.height, s.width) for s in dataset.samples], config.image_size or DEFAULT_IMAGE_SIZE,
                             config.defect_size)

    def build_model(self, config, dataset, strategy) -> torch.nn.Module:
        detector_config = DetectorConfig(backbone=config.backbone, image_size=config.image_size or DEFAULT_IMAGE_SIZE,
                                         resize_mode=config.resize_mode, symmetric=config.symmetric_bank,
                                         seed=config.seed, bit_depth=config.bit_depth,
                                         tiling=self.scale(config, dataset).tiling, regions=config.regions or None)
        detector = PatchDetector(detector_config, resolve_device(config.device), weights_path=config.weights_path)
        sizes = sorted((s.height * s.width, (s.height, s.width)) for s in dataset.samples)
        return AnomalyModel(detector.plan_for(sizes[len(sizes) // 2][1]) if sizes else detector)

    def validation_plan(self, dataset, config) -> ValidationPlan:
        good = {dataset.classes.index(c) for c in good_classes(dataset.classes, config.ok_classes)}
        labels = np.asarray(dataset.labels)
        good_idx = np.flatnonzero(np.isin(labels, list(good)))
        defect_idx = np.flatnonzero(~np.isin(labels, list(good)))
        description = (f"threshold from {len(good_idx)} good images, each scored by a model built without it "
                       f"({min(CALIBRATION_FOLDS, len(good_idx))}-fold)")
        if len(defect_idx):
            description += f"; {len(defect_idx)} defect images only measure detection (never trained on)"
        return ValidationPlan("holdout", [(good_idx, defect_idx)], description)

    def recipe(self, model, config, dataset, preprocessing) -> dict[str, Any]:
        return {"classes": list(dataset.classes), "ok_classes": good_classes(dataset.classes, config.ok_classes),
                "target_frr": config.target_frr, "detector": model.detector.state_config()
                if hasattr(model.detector, "memory_bank_") else None}

    def evaluate(self, dataset, evaluated, outputs, model, plan, config) -> Evaluation:
        good_idx, _ = plan.folds[0]
        target = config.target_frr
        scores = np.asarray(model.calibration_scores_, dtype=float)
        scale = calibrate(scores, target)
        raw_defects = outputs[:, 0] if len(evaluated) else np.zeros(0)
        labels = [dataset.classes[dataset.labels[i]] for i in evaluated]
        caught = raw_defects > scale.threshold
        per_class = {c: float(np.mean([hit for hit, lab in zip(caught, labels) if lab == c]))
                     for c in dict.fromkeys(labels)}
        area = auroc(scores, raw_defects)
        metrics = {"n_good": int(len(good_idx)), "n_defect": int(len(evaluated)), "threshold": scale.threshold,
                   "target_frr": target, "min_guaranteed_frr": min_guaranteed_frr(len(scores)),
                   "frr_warning": frr_guarantee_message(len(scores), target), "val_auroc": area,
                   "val_detection_rate": float(caught.mean()) if len(caught) else None}
        report = DetectionEvaluation(
            plan.description, metrics["n_good"], metrics["n_defect"], scale.threshold, target, area,
            metrics["val_detection_rate"], per_class, scale.readable(scores).tolist(),
            [ScoredImage(str(dataset.samples[i].path), lab, float(scale.readable(r)), float(r))
             for i, lab, r in zip(evaluated, labels, raw_defects)],
            metrics["min_guaranteed_frr"], metrics["frr_warning"], scale.to_dict(), scores.tolist())
        return Evaluation(metrics, report)

    def live_figures(self, events) -> list[tuple[str, str]]:
        """Good images embedded, the memory bank's size and the threshold, as the run learns them
        (from its Progress events' detail); no accuracy: an anomaly run has none while it trains."""
        from ...engine.events import Progress

        detail: dict[str, Any] = {}
        for event in events:
            if isinstance(event, Progress):
                detail.update(event.detail)
        good = next((e.total for e in reversed(events) if isinstance(e, Progress) and e.phase == "features"), None)
        embedded = detail.get("images_embedded")
        of = f" of {good:.0f}" if good is not None else ""
        bank = detail.get("bank_size")
        threshold, target = detail.get("threshold"), detail.get("target_frr")
        return [("Good images embedded", "-" if embedded is None else f"{embedded}{of}"),
                ("Memory bank", "-" if bank is None else f"{bank:,} patches"),
                ("Threshold", "-" if threshold is None else
                 f"{threshold:.3g}" + (f" (at most {target:.0%} false rejects)" if target is not None else ""))]

    def load_predictor(self, recipe, state, device, **options):
        from .predictor import AnomalyPredictor

        return AnomalyPredictor.from_recipe(recipe, state, device, **options)

    # -- reading what training stored ------------------------------------------------------
    def headline(self, summary) -> str:
        auroc = summary.metrics.get("val_auroc")
        return f"anomaly, AUROC {auroc:.2f}" if isinstance(auroc, (int, float)) else "anomaly"

    def result_words(self, summary) -> str:
        m = summary.metrics
        auroc = m.get("val_auroc")
        return (f"threshold set from **{m.get('n_good', 0)} good images** for at most "
                f"**{m.get('target_frr', 0):.0%}** false rejects"
                + (f", defect-vs-good AUROC **{auroc:.3f}**" if auroc is not None else ""))

    # -- predicting ------------------------------------------------------------------------
    def options_hint(self) -> str:
        return ("an anomaly run keeps the good classes it was trained with and sets its threshold with "
                "--target-frr (and --classifier names the defect type).")

    def configure(self, predictor, options: PredictOptions):
        """The predictor with its threshold moved to `options.target_frr` (no retraining)."""
        if options.ok_classes:
            raise InspectorError(f"An anomaly run keeps the good classes it was trained with "
                                 f"({', '.join(predictor.ok_classes)}); leave out the OK classes.")
        self.check_options(options)
        if options.classifier is not None and getattr(options.classifier, "task", None) != "classification":
            raise InspectorError("--classifier takes a classification run.")
        return predictor if options.target_frr is None else predictor.with_target_frr(options.target_frr)

    def result_header(self, predictor) -> dict[str, Any]:
        return {"task": self.name, "threshold": predictor.threshold, "target_frr": predictor.target_frr}

    def model_rows(self, predictor, images, options: PredictOptions) -> list[dict[str, Any]]:
        """score (0..1, 0.5 at the threshold), raw_score, verdict; with a classifier also the defect type."""
        from .gate import gate_row

        images = list(images)
        rows = [p.to_dict() for p in predictor.predict_batch(images)]  # any Predictor: PyTorch or a bundle
        kinds = options.classifier.predict_batch(images) if options.classifier is not None else [None] * len(rows)
        return [gate_row(row, kind) for row, kind in zip(rows, kinds)]

    def decision_rule(self, predictor, options: PredictOptions) -> dict[str, Any]:
        return {"ok_classes": list(predictor.ok_classes), "threshold": predictor.threshold,
                "target_frr": predictor.target_frr, "frr_warning": getattr(predictor, "frr_warning", None)}

    def describe_row(self, row: dict[str, Any]) -> str:
        from .gate import describe

        return describe(row)

    def row_words(self, row: dict[str, Any]) -> str:
        from .gate import describe

        return describe(row)[len(row["verdict"]) + 2:]  # the verdict is the badge (and says why: reason)

    def evaluate_predictor(self, predictor, dataset, options: PredictOptions, source: str) -> dict[str, Any]:
        """AUROC, false-reject and detection rates at the run's threshold. A test class named like one
        of the run's good classes is good, unless `options.ok_classes` says otherwise. With defect masks
        (an MVTec-style ground_truth/), also the pixel AUROC of the anomaly maps (else None)."""
        from .pixel import pixel_auroc
        from .predictor import evaluate_detection

        ok_classes = list(options.ok_classes) or [c for c in dataset.classes if c in predictor.ok_classes]
        if not ok_classes:
            raise InspectorError(f"None of the test classes ({', '.join(dataset.classes)}) is one of the run's good "
                                 f"classes ({', '.join(predictor.ok_classes)}): name the good ones with --ok-classes.")
        report = evaluate_detection(predictor, dataset.paths, [s.label for s in dataset.samples], ok_classes)
        return {**report, **pixel_auroc(predictor, dataset.samples, ok_classes)}

    def evaluation_lines(self, report: dict[str, Any]) -> list[str]:
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        return [f"AUROC {fmt(report['auroc'])}, false-reject rate {fmt(report['false_reject_rate'])} "
                f"(target {report['target_frr']:.3f}), detection rate {fmt(report['detection_rate'])}; "
                f"{report['n_good']} good, {report['n_defect']} defect images",
                *([(f"pixel AUROC {report['pixel_auroc']:.3f} (anomaly maps against the defect masks of "
                    f"{report['pixel_auroc_images']} images)")] if report.get("pixel_auroc") is not None else []),
                *(f"  {name}: {rate:.0%} detected" for name, rate in report["detection_rate_per_class"].items())]

    # -- export ----------------------------------------------------------------------------
    def export_graph(self, predictor, path):
        return export_detector(predictor, path)

    def bundle_labels(self, predictor, ok_classes, threshold) -> dict[str, Any]:
        """The threshold and scale at the trained false-reject target, and the good parts' out-of-sample
        raw scores to move it (the runtime calibrates from them)."""
        self.configure(predictor, PredictOptions(ok_classes=tuple(ok_classes)))
        return {"ok_classes": list(predictor.ok_classes), "threshold": predictor.threshold,
                "score_scale": predictor.scale.to_dict(), "target_frr": predictor.target_frr,
                "calibration_scores": [float(v) for v in predictor.model.calibration_scores_],
                "familiarity": getattr(predictor.model.detector, "familiarity_", None),
                "score": "0.5 * (1 + tanh((raw_score - threshold) / (2 * scale))); verdict NG when raw_score > threshold",
                "runtime_outputs": self.runtime_outputs}

