"""The classification task: learn defect classes from labelled images of every class.

Training-side modules (strategies, the linear head, scikit-learn) are imported inside the methods
that need them, so loading a predictor never loads training code."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ...data import ValidationPlan, plan_validation, validate_dataset
from ...errors import InspectorError
from ...evaluation import ClassificationEvaluation, evaluate_predictions
from ...models import architecture_recipe, build_model
from ..base import Column, Evaluation, ParityRule, PredictOptions, Task, register_task
from .export import (
    MAX_RELATIVE_LOGIT_DIFF,
    bundle_outputs,
    compare_logits,
    export_classifier,
    probability_figures,
    torch_outputs,
)

DEFAULT_THRESHOLD = 0.5  # NG when P(defect) >= this
# Tiles are read by the linear probe: each tile's frozen features, averaged into the image's, under one
# closed-form head (measured on strips of 8 magnetic-tile photos: docs/BENCHMARKS.md). Fine-tuning on
# tiles (each tile a training image under its image's label) is not built.
TILED_STRATEGY = "linear_probe"


@register_task
class ClassificationTask(Task):
    name = "classification"
    summary = "I have labelled defects: learn each defect class from a few photos of every class."
    choice = "I have labelled defects"
    accepts = frozenset({"ok_classes", "threshold", "head"})
    runtime_outputs = "probabilities"
    predicts_classes = True
    heatmap_caption = "where the model looked"
    live_curves = True
    live_best = ("val_accuracy", "Best val accuracy")
    # Parity on the logits, relative to their size (deploy/parity.py says why); the probability
    # difference is still reported in parity.json.
    parity = ParityRule("labels", "logits", "max_rel_logit_diff", "relative logit difference",
                        MAX_RELATIVE_LOGIT_DIFF, torch_outputs, bundle_outputs, compare_logits,
                        reported=probability_figures)
    evaluation_type = ClassificationEvaluation
    columns = (Column("val_accuracy", "val accuracy", "percent", "Accuracy on images the model did not train on."),
               Column("val_accuracy_ci", "95% CI", ""),
               Column("val_macro_f1", "macro-F1", "%.3f"))

    def strategies(self) -> dict[str, str]:
        from .strategies import list_strategies

        return list_strategies()

    def check_dataset(self, dataset, config) -> None:
        report = validate_dataset(dataset)
        if not report.ok:
            raise InspectorError(" ".join(f.message for f in report.errors))

    def check_domains(self, dataset, domains, config) -> None:
        """Another line's labelled images (source) and this line's unlabelled ones: the source must be a
        usable dataset sharing classes with this line's; this line's labelled images (if any) must be too."""
        from .strategies import STRATEGIES, is_transfer

        if domains.source is None:
            raise InspectorError("Unlabelled images from this line are used together with another line's labelled "
                                 "images: give the other line's dataset as the source too.")
        report = validate_dataset(domains.source)
        if not report.ok:
            raise InspectorError("The other line's images (source): " + " ".join(f.message for f in report.errors))
        if len(dataset):
            self.check_dataset(dataset, config)
            shared = [c for c in dataset.classes if c in domains.source.classes]
            if not shared:
                raise InspectorError(f"The other line's classes ({', '.join(domains.source.classes)}) share none with "
                                     f"this line's ({', '.join(dataset.classes)}): name the class folders alike.")
        if config.strategy != "auto" and not is_transfer(config.strategy):
            methods = ", ".join(name for name in STRATEGIES if is_transfer(name))
            raise InspectorError(f"'{config.strategy}' does not use another line's images; choose auto or a transfer "
                                 f"method ({methods}), or leave out the source.")

    def choose_strategy(self, config, dataset, device):
        """The strategy (wrapped so the kept model also gets its familiarity guard: familiarity.Familiar)."""
        from .familiarity import Familiar
        from .strategies import NEEDS_SOURCE, choose_strategy, create_strategy, is_transfer

        if config.strategy != "auto":
            if is_transfer(config.strategy) and not config.source:
                raise InspectorError(NEEDS_SOURCE.format(name=config.strategy))
            if config.defect_size is not None and config.strategy != TILED_STRATEGY:
                raise InspectorError(f"--defect-size cuts the images into tiles, which a classifier reads with the "
                                     f"{TILED_STRATEGY} strategy (each tile's frozen features, averaged into the "
                                     f"image's); '{config.strategy}' looks at whole images. Choose --strategy "
                                     f"{TILED_STRATEGY} (or auto), or leave out --defect-size.")
            return Familiar(create_strategy(config.strategy)), "chosen by you"
        if config.defect_size is not None and not config.source:
            return Familiar(create_strategy(TILED_STRATEGY)), (
                "a defect size is given: the images are read as tiles, by a tuned classifier on frozen pretrained "
                "features averaged over each image's tiles")
        counts = dataset.counts().values()
        name, reason = choose_strategy(min(counts) if counts else 0, device.type, source=bool(config.source))
        return Familiar(create_strategy(name)), reason

    def scale(self, config, dataset):
        """Whole images, or tiles (inspector/scale.py: chosen from --defect-size, or large images at their own
        resolution) whose features are averaged into the image's (runtime/tiling.py mean_over_inputs). Tiles
        are read by the linear probe only: a run that fine-tunes keeps whole images, and says so. Regions to
        inspect or ignore are refused: a classifier's pooling does not mask them yet."""
        from ...augment import resolve_preprocessing
        from ...engine.device import resolve_device
        from ...scale import ScaleChoice, choose_tiling

        if config.regions:
            raise InspectorError("Regions to inspect or ignore apply to anomaly runs for now: a classifier reads the "
                                 "whole image (or all its tiles). Leave them out, or train an anomaly run "
                                 "(--task anomaly).")
        size = resolve_preprocessing(config.backbone, config.image_size, config.resize_mode).image_size
        choice = choose_tiling([(s.height, s.width) for s in dataset.samples], size, config.defect_size) \
            if len(dataset) else ScaleChoice(None, "whole images resized to the model's input")
        if choice.tiling is None:
            return choice
        strategy = self.choose_strategy(config, dataset, resolve_device(config.device))[0]
        if strategy.name != TILED_STRATEGY:
            return ScaleChoice(None, f"whole images resized to {size} px: {strategy.name} looks at whole images "
                                     f"(tiles are read by {TILED_STRATEGY}: give --strategy {TILED_STRATEGY})")
        return choice

    def build_model(self, config, dataset, strategy) -> torch.nn.Module:
        """The strategy's architecture; `planned_inputs` on it (the ETA only): a tiled run's tiles per image."""
        from ...runtime.tiling import tile_boxes

        model = build_model(config.backbone, len(dataset.classes), strategy.architecture,
                            weights_path=config.weights_path, symmetric=config.any_orientation)
        tiling = self.scale(config, dataset).tiling if len(dataset) else None
        if tiling:
            sizes = sorted((s.height * s.width, (s.height, s.width)) for s in dataset.samples)
            height, width = sizes[len(sizes) // 2][1]
            model.planned_inputs = len(tile_boxes(height, width, tiling["tile"], tiling["overlap"]))
        return model

    def validation_plan(self, dataset, config):
        if not len(dataset):  # a transfer run without labelled images from this line
            none = np.zeros(0, dtype=np.int64)
            return ValidationPlan("holdout", [(none, none)], "no labelled images from this line: its accuracy "
                                  "cannot be measured (label a few images per class to measure it)")
        return plan_validation(dataset.labels, seed=config.seed, val_fraction=config.val_fraction,
                               max_folds=config.max_folds)

    def recipe(self, model, config, dataset, preprocessing) -> dict[str, Any]:
        from .familiarity import guard_recipe  # the kept model's familiarity guard, once fitted
        from .predictor import heads_recipe  # a multi-task run's heads (recipe["heads"]); nothing for others

        return {"num_classes": len(dataset.classes), "classes": list(dataset.classes), **architecture_recipe(model),
                **heads_recipe(model), **guard_recipe(model)}

    def evaluate(self, dataset, evaluated, outputs, model, plan, config) -> Evaluation:
        """Accuracy, macro-F1 and the confusion matrix over the out-of-sample images, plus each
        image's prediction (for paired comparisons of two runs)."""
        if not len(evaluated):
            return Evaluation({"val_accuracy": None, "val_accuracy_ci": None, "val_balanced_accuracy": None,
                               "val_macro_f1": None}, None)
        predicted = outputs.argmax(1)
        truth = np.asarray(dataset.labels)[evaluated]
        rows = [{"path": str(dataset.samples[i].path), "label": dataset.classes[t], "predicted": dataset.classes[p]}
                for i, t, p in zip(evaluated, truth, predicted)]
        report = ClassificationEvaluation.from_dict(
            {**evaluate_predictions(truth, predicted, dataset.classes, method=plan.description), "predictions": rows})
        return Evaluation({"val_accuracy": report.accuracy, "val_accuracy_ci": list(report.accuracy_ci),
                           "val_balanced_accuracy": report.balanced_accuracy, "val_macro_f1": report.macro_f1}, report)

    def inference_ms(self, model, images, preprocessing, device, on_images=None) -> float:
        import time

        from ...augment import build_inputs
        from ...engine.predict import predict_probabilities

        sample = images.subset(range(min(32, len(images))))
        transform = build_inputs(preprocessing)
        # A symmetric model passes 8 images' views at a time anyway (models.VIEW_CHUNK): timing it 8 images
        # at a time costs nothing and lets the progress move on a CPU (32 images x 8 views is ~15 s there).
        # A tiled image is many forward passes: timed one image at a time, so the progress moves per image.
        chunk = 1 if preprocessing.tiling else 8 if getattr(model, "symmetric", False) and device.type == "cpu" else 32
        seconds = 0.0
        for first in range(0, len(sample), chunk):
            part = sample.subset(range(first, min(first + chunk, len(sample))))
            start = time.perf_counter()
            predict_probabilities(model, part, transform, device, batch_size=32)
            seconds += time.perf_counter() - start
            if on_images:
                on_images(len(part))
        return round(1000 * seconds / max(1, len(sample)), 2)

    def evaluation_work(self, model, n_images, config) -> list:
        """inference_ms's forward passes (evaluate itself is instant)."""
        from ...engine.progress import Work

        views = 8 if getattr(model, "symmetric", False) else 1
        return [Work("evaluation", min(32, n_images), "images", cost=float(views * getattr(model, "planned_inputs", 1)))]

    def live_figures(self, events) -> list[tuple[str, str]]:
        """The best validation accuracy so far: of the kept model's epochs (hold-out), else the mean
        of the cross-validation folds' best so far, else the run's final figure."""
        from ...engine.events import EpochEnd, TrainEnd

        epochs = [e for e in events if isinstance(e, EpochEnd) and e.val_accuracy is not None]
        final = [e.val_accuracy for e in epochs if e.fold == "final"]
        if final:
            return [("Best val accuracy", f"{max(final):.1%}")]
        folds: dict[str, float] = {}
        for e in epochs:
            folds[e.fold] = max(folds.get(e.fold, 0.0), e.val_accuracy)
        end = next((e for e in reversed(events) if isinstance(e, TrainEnd)), None)
        accuracy = end.run_summary.metrics.get("val_accuracy") if end is not None else None
        if accuracy is not None:
            return [("Val accuracy", f"{accuracy:.1%}")]
        if folds:
            return [(f"Val accuracy, {len(folds)} fold{'s' if len(folds) > 1 else ''} so far",
                     f"{sum(folds.values()) / len(folds):.1%}")]
        return [("Best val accuracy", "-")]

    def load_predictor(self, recipe, state, device, head: str | None = None, **options):
        """`head`: "source" predicts with the other line's classifier of a multi-task run (see configure)."""
        from .predictor import ClassificationPredictor

        predictor = ClassificationPredictor.from_recipe(recipe, state, device, **options)
        return predictor.with_head(head) if head else predictor

    # -- reading what training stored ------------------------------------------------------
    def headline(self, summary) -> str:
        acc = summary.metrics.get("val_accuracy")
        return f"{acc:.0%}" if isinstance(acc, (int, float)) else ""

    def result_words(self, summary) -> str:
        m = summary.metrics
        acc, ci, f1 = m.get("val_accuracy"), m.get("val_accuracy_ci"), m.get("val_macro_f1")
        if acc is None:
            return "no accuracy estimate"
        return (f"validation accuracy **{acc:.1%}**" + (f" (95% CI {ci[0]:.0%}-{ci[1]:.0%})" if ci else "")
                + (f", macro-F1 **{f1:.2f}**" if f1 is not None else ""))

    # -- predicting ------------------------------------------------------------------------
    def options_hint(self) -> str:
        return ("a classifier takes --ok-classes and --threshold (an OK/NG verdict from the defect probability), "
                "and --head (source: the other line's classifier of a multi-task run).")

    def configure(self, predictor, options: PredictOptions):
        self.check_options(options)
        if options.head is not None:
            if hasattr(predictor, "with_head"):
                predictor = predictor.with_head(options.head)
            elif options.head != "target":  # an exported bundle carries this line's classifier only
                raise InspectorError(f"--head {options.head} needs the run itself: an exported model carries this "
                                     "line's classifier only.")
        unknown = [c for c in options.ok_classes if c not in predictor.classes]
        if unknown:
            raise InspectorError(f"OK classes not in the model: {', '.join(unknown)}. "
                                 f"The model knows: {', '.join(predictor.classes)}.")
        return predictor

    def model_rows(self, predictor, images, options: PredictOptions) -> list[dict[str, Any]]:
        """label, confidence, probabilities (+ verdict and defect_probability with OK classes), and with the
        run's familiarity guard each image's distance from the training images (UNSURE beyond the limit)."""
        from ...runtime.rows import familiarity_row, familiarity_rows, probability_rows

        threshold = DEFAULT_THRESHOLD if options.threshold is None else options.threshold
        images = list(images)
        guard = getattr(predictor, "familiarity", None)
        if guard is not None and hasattr(predictor, "predict_with_embeddings"):  # the PyTorch predictor
            probabilities, embeddings = predictor.predict_with_embeddings(images)
            rows = probability_rows(predictor.classes, probabilities, options.ok_classes, threshold)
            return familiarity_rows(rows, guard.distance(embeddings), guard.limit)
        predictions = predictor.predict_batch(images)  # any Predictor: PyTorch or an exported bundle
        probabilities = np.array([[p.probabilities[c] for c in predictor.classes] for p in predictions],
                                 dtype=np.float64).reshape(len(predictions), len(predictor.classes))
        rows = probability_rows(predictor.classes, probabilities, options.ok_classes, threshold)
        # A bundle's rows carry its own guard's distances (runtime/outputs.py): kept with these OK classes.
        carried = [p.to_dict().get("familiarity") for p in predictions]
        return [familiarity_row(row, **measured) if measured else row for row, measured in zip(rows, carried)]

    def result_header(self, predictor) -> dict[str, Any]:
        """The task and classes, plus `head` ("target" or "source") for a run that keeps a head per line
        (multi_task), so a reader of `predict --json` knows which line's classifier answered."""
        header = super().result_header(predictor)
        if len(getattr(predictor, "head_names", [])) > 1:
            header["head"] = predictor.head
        return header

    def decision_rule(self, predictor, options: PredictOptions) -> dict[str, Any]:
        return {"ok_classes": list(options.ok_classes),
                "threshold": DEFAULT_THRESHOLD if options.threshold is None else options.threshold}

    def describe_row(self, row: dict[str, Any]) -> str:
        from ...runtime.rows import describe

        return describe(row)

    def row_words(self, row: dict[str, Any]) -> str:
        words = f"predicted **{row['label']}** ({row['confidence']:.0%})"
        if "defect_probability" in row:
            words += f"; defect probability {row['defect_probability']:.0%}"
        return words + (f"; **unsure**: {row['reason']}" if row.get("reason") else "")

    def evaluate_predictor(self, predictor, dataset, options: PredictOptions, source: str) -> dict[str, Any]:
        """Accuracy, macro-F1, per-class scores and the confusion matrix on labelled data."""
        unknown = sorted(set(dataset.classes) - set(predictor.classes))
        if unknown:
            raise InspectorError(f"The data has classes the model was not trained on: {', '.join(unknown)}. "
                                 f"The model knows: {', '.join(predictor.classes)}.")
        y_true = [predictor.classes.index(s.label) for s in dataset.samples]
        y_pred = predictor.predict_proba(dataset.paths).argmax(1) if len(dataset) else np.zeros(0, int)
        return evaluate_predictions(y_true, y_pred, predictor.classes, method=f"evaluation on {source}")

    def evaluation_lines(self, report: dict[str, Any]) -> list[str]:
        from ...evaluation import absent_classes

        low, high = report["accuracy_ci"]
        absent = absent_classes(report["per_class"])
        scored = len(report["per_class"]) - len(absent)
        over = f" over the {scored} classes present" if absent else ""
        balanced = report.get("balanced_accuracy")
        lines = [(f"accuracy {report['accuracy']:.3f} (95% CI {low:.2f}-{high:.2f}), "
                  + (f"balanced accuracy {balanced:.3f}, " if balanced is not None else "")
                  + f"macro-F1 {report['macro_f1']:.3f}{over}, {report['n_images']} images")]
        if absent:
            lines.append(f"absent from the data, not scored: {', '.join(absent)}")
        return lines

    def evaluation_table(self, report: dict[str, Any]) -> tuple[list[str], list[list[Any]]] | None:
        def cell(value: float | None, support: int) -> str:
            return "absent" if not support or value is None else f"{value:.2f}"

        rows = [[c, *(cell(v[k], v["support"]) for k in ("precision", "recall", "f1")), v["support"]]
                for c, v in report["per_class"].items()]
        return ["class", "precision", "recall", "f1", "images"], rows

    # -- export ----------------------------------------------------------------------------
    def export_graph(self, predictor, path):
        return export_classifier(predictor, path)

    def bundle_labels(self, predictor, ok_classes, threshold) -> dict[str, Any]:
        """OK classes, threshold and, when the run keeps one, its familiarity guard (runtime/familiarity.py)."""
        self.configure(predictor, PredictOptions(ok_classes=tuple(ok_classes)))
        guard = getattr(predictor, "familiarity", None)
        return {"ok_classes": list(ok_classes), "threshold": threshold, "runtime_outputs": self.runtime_outputs,
                **({"familiarity": guard.to_dict()} if guard is not None else {})}
