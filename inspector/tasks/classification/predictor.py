"""The classification task's predictor: classes, probabilities, Grad-CAM heatmaps, OK/NG."""
from __future__ import annotations

import copy
import itertools
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from ...augment import Preprocessing, build_inputs, build_transform, inputs_of, letterbox_box
from ...data import load_image, to_rgb_array
from ...engine.device import autocast, prepare_model, to_device
from ...engine.loaders import ImageSet
from ...engine.predict import predict_probabilities
from ...errors import InspectorError
from ...heatmap import class_activation_map, find_cam_layer
from ...models import model_from_recipe, single_view
from ...runtime.familiarity import FamiliarityGuard, read_guard
from ...runtime.tiling import mean_over_inputs, model_inputs, stitch
from .export import logits_and_embedding

ImageInput = str | os.PathLike | bytes | Image.Image | np.ndarray

# A multi-task run (transfer/multitask.py) keeps the other line's classifier beside this line's: a
# module of that name on the kept model, so its weights are these extra keys of model.safetensors,
# and the recipe lists the heads (recipe["heads"] = ["target", "source"]). Runs without it have neither.
SOURCE_HEAD_MODULE = "source_head"
SOURCE_HEAD_KEYS = (f"{SOURCE_HEAD_MODULE}.weight", f"{SOURCE_HEAD_MODULE}.bias")
HEADS = ("target", "source")  # target: this line's classifier (the default); source: the other line's


def heads_recipe(model: torch.nn.Module) -> dict[str, Any]:
    """The recipe's `heads` entry for a model that carries a source head; empty for any other."""
    return {"heads": list(HEADS)} if isinstance(getattr(model, SOURCE_HEAD_MODULE, None), torch.nn.Module) else {}


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    probabilities: dict[str, float]

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "confidence": self.confidence, "probabilities": self.probabilities}


@dataclass(frozen=True)
class Verdict:
    """OK/NG from the probability that the part belongs to any class not counted as OK."""

    ok: bool
    defect_probability: float
    threshold: float

    @property
    def label(self) -> str:
        return "OK" if self.ok else "NG"


def verdict(prediction: Prediction, ok_classes: Iterable[str], threshold: float = 0.5) -> Verdict:
    """NG when P(defect) = 1 - P(any OK class) reaches `threshold`."""
    ok_set = set(ok_classes)
    p_defect = 1.0 - sum(p for name, p in prediction.probabilities.items() if name in ok_set)
    p_defect = min(1.0, max(0.0, p_defect))
    return Verdict(p_defect < threshold, p_defect, threshold)


def as_rgb_array(image: ImageInput, bit_depth: int | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3) of a path, bytes, PIL image or array; files decoded with the model's camera
    `bit_depth` (its preprocessing's), as in training."""
    if isinstance(image, np.ndarray):
        return image
    if isinstance(image, Image.Image):
        return to_rgb_array(image.convert("RGB"))
    return to_rgb_array(load_image(image, bit_depth=bit_depth))


class ClassificationPredictor:
    """A trained classifier ready for inference. Thread-safe; share one per run.

    `familiarity`: the run's guard for images unlike its training images (runtime/familiarity.py;
    None for runs trained before it existed), applied to result rows by the task's `model_rows`."""

    task = "classification"

    def __init__(self, model: torch.nn.Module, classes: Sequence[str], preprocessing: Preprocessing,
                 device: torch.device, run_dir: Path | None = None, compile: bool = False,
                 heads: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None, head: str = "target",
                 familiarity: FamiliarityGuard | None = None) -> None:
        self.model = prepare_model(model.eval(), device)
        self.familiarity = familiarity
        # Classifier weights (weight, bias) of the heads the model does not use now, by name ("source" for
        # a multi-task run); `head` names the one in use (see with_head).
        self.heads = dict(heads or {})
        self.head = head
        # torch.compile: about 1.4x the CPU throughput after a one-off compile of about a minute
        # (docs/BENCHMARKS.md): worth it for long batches and a long-running app, not for one image.
        self._compiled = torch.compile(self.model) if compile else None
        self.classes = list(classes)
        self.preprocessing = preprocessing
        self.device = device
        self.run_dir = run_dir
        self._transform = build_inputs(preprocessing)  # an image's inputs: itself, or its tiles
        self._to_tensor = build_transform(preprocessing, "none")  # one input (a whole image, or a tile)
        self._lock = threading.Lock()
        self._cam_layer: torch.nn.Module | None = None

    @classmethod
    def from_recipe(cls, recipe: dict[str, Any], state: dict[str, torch.Tensor], device: torch.device,
                    **options: Any) -> ClassificationPredictor:
        """Rebuild the model from its recipe and weights (never unpickles anything). A multi-task run's
        source head is kept aside (see `with_head`); the model itself uses this line's."""
        model = model_from_recipe(recipe)
        state = dict(state)
        extra = [state.pop(key, None) for key in SOURCE_HEAD_KEYS]
        heads = {}
        if "source" in recipe.get("heads", ()):
            if any(t is None for t in extra):
                raise InspectorError("The run's recipe lists the other line's classifier (source head), but its "
                                     f"weights lack {' and '.join(SOURCE_HEAD_KEYS)}: the model file is damaged.")
            heads["source"] = (extra[0], extra[1])
        model.load_state_dict(state)
        return cls(model, recipe["classes"], Preprocessing.from_dict(recipe["preprocessing"]), device,
                   heads=heads, familiarity=read_guard(recipe.get("familiarity")), **options)

    @property
    def head_names(self) -> list[str]:
        """The heads this predictor can use: ["target"], or ["target", "source"] for a multi-task run."""
        return [name for name in HEADS if name == self.head or name in self.heads]

    def with_head(self, head: str) -> ClassificationPredictor:
        """This predictor, or a copy whose classifier is the named head: "target" (this line's, the
        default) or "source" (the other line's, kept by a multi-task run). Plain words when there is none."""
        if head not in HEADS:
            raise InspectorError(f"Unknown head '{head}': choose {' or '.join(HEADS)}.")
        if head == self.head:
            return self
        if head not in self.heads:
            raise InspectorError("This run has no head for the other line (source): only multi-task runs "
                                 "(strategy multi_task, trained with another line's images) keep one. Predict "
                                 "without --head source, or train a multi_task run.")
        model = copy.deepcopy(self.model)
        classifier = model.get_classifier()
        weight, bias = self.heads[head]
        with torch.no_grad():
            current = (classifier.weight.detach().cpu().clone(), classifier.bias.detach().cpu().clone())
            classifier.weight.copy_(weight.to(classifier.weight))
            classifier.bias.copy_(bias.to(classifier.bias))
        heads = {**{k: v for k, v in self.heads.items() if k != head}, self.head: current}
        # The guard measures the backbone's features, which both heads share.
        return type(self)(model, self.classes, self.preprocessing, self.device, run_dir=self.run_dir,
                          compile=self._compiled is not None, heads=heads, head=head, familiarity=self.familiarity)

    def predict_proba(self, images: Sequence[ImageInput], batch_size: int = 32) -> np.ndarray:
        arrays = [as_rgb_array(im, self.preprocessing.bit_depth) for im in images]
        image_set = ImageSet(arrays, np.zeros(len(arrays), dtype=np.int64), [""] * len(arrays))
        with self._lock:
            if self._compiled is not None:
                return predict_probabilities(self._compiled, image_set, self._transform, self.device, batch_size,
                                             pad_batches=True)
            return predict_probabilities(self.model, image_set, self._transform, self.device, batch_size)

    def predict_with_embeddings(self, images: Sequence[ImageInput], batch_size: int = 32
                                ) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (n, classes), embeddings (n, D): the features the head sees), from one pass of the
        model (not the compiled one); the probabilities are predict_proba's."""
        arrays = [as_rgb_array(im, self.preprocessing.bit_depth) for im in images]
        with self._lock:
            logits, embeddings = model_outputs(self.model, arrays, self._transform, self.device, batch_size)
        return torch.softmax(torch.from_numpy(logits), dim=1).numpy(), embeddings

    def predict_batch(self, images: Sequence[ImageInput], batch_size: int = 32) -> list[Prediction]:
        probs = self.predict_proba(images, batch_size)
        return [self._prediction(row) for row in probs]

    def predict(self, image: ImageInput) -> Prediction:
        return self.predict_batch([image])[0]

    def _prediction(self, row: np.ndarray) -> Prediction:
        index = int(row.argmax())
        return Prediction(self.classes[index], index, {c: float(p) for c, p in zip(self.classes, row)})

    def heatmap(self, image: ImageInput, class_index: int | None = None) -> np.ndarray:
        """Grad-CAM for `class_index` (default: the predicted class), in [0, 1], at the image's size; for a
        tiled run each tile's own probability of that class, over the whole image (`tile_map`)."""
        array = as_rgb_array(image, self.preprocessing.bit_depth)
        if self.preprocessing.tiling is not None:  # one pass over the tiles gives the class and the map
            return self.tile_map(array, class_index)
        if class_index is None:  # the class the full model predicts, not its single view's guess
            class_index = self.predict(array).index
        tensor = self._to_tensor(array).unsqueeze(0).to(self.device)
        with self._lock, single_view(self.model):
            if self._cam_layer is None:
                self._cam_layer = find_cam_layer(self.model, tensor)
            cam = class_activation_map(self.model, self._cam_layer, tensor, class_index)
        left, top, right, bottom = letterbox_box(self.preprocessing, array.shape[1], array.shape[0])
        cam = cam[top:bottom, left:right]
        resized = Image.fromarray((cam * 255).astype(np.uint8)).resize((array.shape[1], array.shape[0]),
                                                                         Image.Resampling.BILINEAR)
        return np.asarray(resized, dtype=np.float32) / 255.0


    def tile_map(self, image: np.ndarray, class_index: int | None = None, batch_size: int = 32) -> np.ndarray:
        """A tiled run's map of where a class lies (default: the class the image is predicted, the argmax
        of its tiles' mean logits): each tile's own probability of it (its softmax, as if the tile were the
        whole image), overlaps by their maximum, at the image's size (H, W) float32 in [0, 1]. The image's
        decision is the mean of the tiles' logits, so the tiles that raise it are the ones shown."""
        inputs, boxes, tile_logits = model_inputs(image, self.preprocessing.to_dict()), [], []
        with self._lock, torch.inference_mode(), autocast(self.device):
            while batch := list(itertools.islice(inputs, batch_size)):  # tiles streamed, a batch at a time
                boxes += [item.box for item in batch]
                pixels = torch.stack([self._to_tensor(item.pixels) for item in batch])
                tile_logits.append(self.model(to_device(pixels, self.device)).float().cpu())
        logits = torch.cat(tile_logits)
        if class_index is None:
            class_index = int(logits.mean(0).argmax())
        probabilities = torch.softmax(logits, dim=1)[:, class_index].numpy()
        cells = 8  # each tile as 8 x 8 cells, so overlapping tiles land within an eighth of a tile
        grid = stitch([np.full((cells, cells), v, dtype=np.float32) for v in probabilities], boxes, image.shape[:2])
        resized = Image.fromarray(grid, mode="F").resize((image.shape[1], image.shape[0]), Image.Resampling.NEAREST)
        return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def model_outputs(model: torch.nn.Module, images: Sequence[np.ndarray], transform, device: torch.device,
                  batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(logits (n, classes), embeddings (n, D)) float32 of RGB uint8 arrays, in eval mode as
    engine.predict.predict_logits computes the logits; a tiled run's (transform: augment.build_inputs) are the
    means over each image's tiles."""
    model.eval()

    def run(batch: torch.Tensor) -> list[np.ndarray]:
        return [out.float().cpu().numpy() for out in logits_and_embedding(model, to_device(batch, device))]

    with torch.inference_mode(), autocast(device):
        outputs = mean_over_inputs(images, lambda im: inputs_of(transform, im), run, batch_size, torch.stack)
    if not outputs:
        return np.zeros((0, 0), dtype=np.float32), np.zeros((0, 0), dtype=np.float32)
    return outputs[0], outputs[1]
