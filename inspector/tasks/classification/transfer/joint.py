"""Fine-tuning with the seed's joint objective (the founding document's transfer learning in industry):

    min_theta  L_s(f(x_s), y_s) + lambda * L_t(f(x_t), y_t) + gamma * D(f(x_s), f(x_t))

L_s: cross-entropy on a batch of the other line's labelled images (the source); L_t: cross-entropy on this
line's labelled images in the target batch (0 when this line has none); D: a discrepancy between the
pooled features f (the vector the classifier layer sees, (B, d)) of the source batch and of a target batch
drawn from this line's labelled and unlabelled images. Two choices of D, each a registered strategy:

- `mk_mmd`: multi-kernel maximum mean discrepancy (Long, Cao, Wang & Jordan 2015, "Learning Transferable
  Features with Deep Adaptation Networks", DAN): Gaussian kernels at several bandwidths around the median
  pairwise distance;
- `dann`: an adversarial domain discriminator behind a gradient reversal layer (Ganin & Lempitsky 2015,
  "Unsupervised Domain Adaptation by Backpropagation"), its coefficient ramped up by 2/(1+exp(-10 p))-1.

Both fine-tune the whole network with FineTune's parameter groups (layer-wise learning-rate decay) in the
engine's own loop (engine/loop.py, fit_gradient): the source is the loop's training stream, this line's
images come in through its `extra_loss` hook. The adapted model is an ordinary classifier.
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ....augment import build_transform
from ....engine.context import FitContext, FitOutcome, TrainingStopped
from ....engine.device import to_device
from ....engine.loaders import ImageSet
from ....engine.loop import batches_per_epoch, fit_gradient, gradient_work
from ....engine.progress import tracker_of
from ....errors import InspectorError
from ..strategies import NEEDS_SOURCE, FineTune, _zero_head, register_strategy
from . import guard
from .strategies import FeatureTransfer, domain_work, transfer_figures

LABEL_SMOOTHING = 0.1  # as the loop's own cross-entropy (L_s), so L_s and L_t are on one scale
MMD_BANDWIDTHS = (0.25, 0.5, 1.0, 2.0, 4.0)  # multiples of the median squared distance (DAN's kernel family)


# -- the discrepancies ------------------------------------------------------------------------------------
def mk_mmd(source: torch.Tensor, target: torch.Tensor, bandwidths: tuple[float, ...] = MMD_BANDWIDTHS) -> torch.Tensor:
    """Squared multi-kernel MMD between two batches of features, source (n, d) and target (m, d): a scalar >= 0,
    0 for identical batches. The kernels are Gaussian, k(a, b) = exp(-|a - b|^2 / (w * s)) for each w in
    `bandwidths` and s the median squared distance between all n + m rows (detached: the bandwidth follows the
    features without being a way to shrink the loss), averaged with equal weights (DAN, Long et al. 2015,
    learns the weights; equal ones are the common simplification). The biased (V-statistic) estimate: never
    negative, which keeps a few-image batch's term readable. Computed in float32."""
    x = torch.cat([source, target]).float()
    n = len(source)
    squared = torch.cdist(x, x).pow(2)
    off_diagonal = squared[~torch.eye(len(x), dtype=torch.bool, device=x.device)]
    scale = off_diagonal.detach().median().clamp_min(1e-6) if len(off_diagonal) else squared.new_tensor(1.0)
    kernel = sum(torch.exp(-squared / (w * scale)) for w in bandwidths) / len(bandwidths)
    return (kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()).clamp_min(0.0)


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.coefficient * grad, None


def reverse_gradient(x: torch.Tensor, coefficient: float = 1.0) -> torch.Tensor:
    """The gradient reversal layer (Ganin & Lempitsky 2015): the identity forward, the gradient times
    -coefficient backward, so what lies before it learns to make the domain discriminator after it fail."""
    return _ReverseGradient.apply(x, float(coefficient))


def dann_ramp(progress: float) -> float:
    """DANN's schedule of the reversal coefficient, 2 / (1 + exp(-10 p)) - 1 for p = progress (0..1) through
    the training: 0 at the start (the discriminator learns before it steers the features), ~1 at the end."""
    return 2.0 / (1.0 + math.exp(-10.0 * min(max(progress, 0.0), 1.0))) - 1.0


class DomainDiscriminator(nn.Module):
    """Which line a pooled feature vector (B, d) comes from: one logit per row (B,), > 0 for the source.
    Two layers of `hidden` units (DANN used 1024; a few hundred suffice for a few hundred images)."""

    def __init__(self, width: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(1)


# -- this line's images as a second stream -----------------------------------------------------------------
class TargetStream:
    """Batches of this line's images for the joint objective: up to half a batch of its labelled images (all
    of it when there are no unlabelled ones) and the rest unlabelled (label -1). Each part is drawn without
    replacement, reshuffled when used up; seeded, so the same seed gives the same batches."""

    def __init__(self, labelled: ImageSet, unlabelled: list[ImageSet], ctx: FitContext, batch_size: int) -> None:
        parts = [u for u in unlabelled if u is not None and len(u)]
        self.labelled = labelled
        self.unlabelled = [image for part in parts for image in part.images]
        n_l, n_u = len(labelled), len(self.unlabelled)
        self.n_labelled = min(n_l, batch_size if not n_u else max(1, batch_size // 2))
        self.n_unlabelled = min(n_u, batch_size - self.n_labelled)
        # Its own augmentation and sampling seeds: the source stream keeps the loop's.
        self.transform = build_transform(ctx.preprocessing, ctx.config.augment, seed=ctx.config.seed + 7919)
        self.generator = torch.Generator().manual_seed(ctx.config.seed + 7919)
        self.device = ctx.device
        self._orders: dict[str, list[int]] = {"labelled": [], "unlabelled": []}

    def __len__(self) -> int:
        return self.n_labelled + self.n_unlabelled

    def _draw(self, part: str, n: int, size: int) -> list[int]:
        drawn: list[int] = []
        while len(drawn) < n:
            if not self._orders[part]:
                self._orders[part] = torch.randperm(size, generator=self.generator).tolist()
            drawn.append(self._orders[part].pop())
        return drawn

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (B_t, 3, H, W) on the device, labels (B_t,) with -1 for the unlabelled rows)."""
        picked = self._draw("labelled", self.n_labelled, len(self.labelled))
        rows = [self.labelled.images[i] for i in picked]
        labels = [int(self.labelled.labels[i]) for i in picked] + [-1] * self.n_unlabelled
        rows += [self.unlabelled[i] for i in self._draw("unlabelled", self.n_unlabelled, len(self.unlabelled))]
        x = torch.stack([self.transform(image) for image in rows])
        return to_device(x, self.device), torch.as_tensor(labels, dtype=torch.long, device=self.device)


class _PooledFeatures:
    """Keeps the input of the model's classifier layer (the pooled features, (B, d)) of its latest forward
    pass, so the source batch's features come from the loop's own forward pass instead of a second one."""

    def __init__(self, model: nn.Module) -> None:
        self.latest: torch.Tensor | None = None
        self._handle = model.get_classifier().register_forward_hook(self._keep)

    def _keep(self, _module, inputs, _output) -> None:
        self.latest = inputs[0]

    def take(self) -> torch.Tensor:
        latest, self.latest = self.latest, None
        if latest is None:
            raise RuntimeError("the model's classifier layer did not run: no pooled features to align")
        return latest

    def close(self) -> None:
        self._handle.remove()
        self.latest = None


# -- the strategies ----------------------------------------------------------------------------------------
class _GuardFeatures(FeatureTransfer):
    """The frozen-feature side of a joint strategy: the lines' pretrained features for the guard's baselines
    (not registered)."""

    name = method = "source_only"


class JointObjective(FineTune):
    """Fine-tuning on L_s + lambda L_t + gamma D (the module's docstring); subclasses define D in `discrepancy`.

    Defaults: lambda = 1.0; gamma per method; default_epochs 5 (a CPU's few minutes on a few hundred images);
    FineTune's learning rate and layer-wise decay. Each fit's loop runs over the source's batches; the kept
    model's fit also measures the guard's baselines on the pretrained features (figures `transfer`, `shift`)."""

    transfer: ClassVar[bool] = True
    default_epochs = 5

    def work(self, model, n_train, n_val, config, *, fold="final", cached=False, n_source=0, n_unlabeled=0):
        """The guard's frozen features and baselines (the kept model's fit), then the loop over the source's
        batches, each also passing a batch of this line's images (twice a plain batch's work)."""
        guard_work = domain_work(model, n_train, n_val, fold=fold, cached=cached, n_source=n_source,
                                 n_unlabeled=n_unlabeled, adaptation=True) if fold == "final" else []
        training = gradient_work(n_source or n_train, n_val, config.batch_size, self.epochs(config), fold)
        return [*guard_work, *(dataclasses.replace(w, cost=2 * w.cost) for w in training)]
    target_weight: ClassVar[float] = 1.0  # lambda
    discrepancy_weight: ClassVar[float]  # gamma

    def discrepancy(self, width: int, ctx: FitContext, total_steps: int, steps_per_epoch: int) -> Discrepancy:
        """D for one fit: feature width d, the fit's planned training steps and steps per epoch."""
        raise NotImplementedError

    def fit(self, model, train, val, ctx):
        if ctx.source is None:
            raise InspectorError(NEEDS_SOURCE.format(name=self.name))
        figures = None
        if ctx.fold == "final":
            try:
                figures = self.guard_figures(model, train, val, ctx)
            except TrainingStopped:
                return FitOutcome(model, None, None, stopped=True)
        _zero_head(model)
        cfg = ctx.config
        epochs = self.epochs(cfg)
        steps_per_epoch = batches_per_epoch(len(ctx.source), max(1, cfg.batch_size // ctx.ranks.world_size))
        # The held-out images of a fold count as unlabelled ones, as in the guard (guard.py's protocol).
        stream = TargetStream(train, [ctx.unlabeled, val], ctx, cfg.batch_size)
        pooled = _PooledFeatures(model)
        width = model.get_classifier().in_features
        discrepancy = self.discrepancy(width, ctx, epochs * steps_per_epoch, steps_per_epoch)
        groups = self.param_groups(model, ctx)
        extra = discrepancy.parameters()
        if extra:  # first, so the loop's reported learning rate stays the classifier's (its last group)
            groups = [{"params": extra, "lr": self.lr(ctx), "weight_decay": cfg.weight_decay}, *groups]
        has_labels = stream.n_labelled > 0

        def joint_terms(net: nn.Module, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            source_features = pooled.take()  # of the batch the loop just passed (its L_s)
            x_t, y_t = stream.next()
            logits = net(x_t).float()
            target_features = pooled.take()
            labelled = y_t >= 0
            loss_t = (F.cross_entropy(logits[labelled], y_t[labelled], label_smoothing=LABEL_SMOOTHING)
                      if labelled.any() else logits.sum() * 0.0)
            weighted, d = discrepancy(source_features, target_features, step)
            terms = {"D": d}
            if has_labels:
                terms["L_t"] = loss_t
            return self.target_weight * loss_t + weighted, terms

        try:
            outcome = fit_gradient(model, groups, ctx.source, val, ctx, epochs=epochs, extra_loss=joint_terms,
                                   loss_name="L_s")
        finally:
            pooled.close()
        outcome.figures = figures if not outcome.stopped else None
        return outcome

    def guard_figures(self, model, train, val, ctx) -> dict:
        """The guard's baselines on the pretrained features (before any training) and the shift between the
        lines; the adapted figure is the run's own validation (said in words)."""
        probe = _GuardFeatures()
        data, _ = probe.domain_features(model, train, val, ctx)
        tracker = tracker_of(ctx)
        tracker.start("adaptation", fold=ctx.fold, total=1, unit="steps")
        if val is not None and len(val):
            note = ("The adapted model's figure is this run's own validation on its held-out images (fine-tuned, so "
                    "not paired with these baselines).")
        elif len(train) and not ctx.config.cross_validate:
            note = ("This run skips cross-validation, so the adapted model's accuracy on this line is not measured "
                    "(no validation figure).")
        elif len(train):
            note = ("The adapted model's figure is this run's own cross-validation over these labelled images (each "
                    "fold fine-tuned anew, so not paired with these baselines).")
        else:
            note = "The adapted model's accuracy on this line cannot be measured without labelled images of this line."
        decision = guard.baselines(data, self.name, ctx.config.seed, adapted_note=note)
        tracker.advance(1)
        return transfer_figures(decision, data, ctx.classes, ctx.config.seed)

def _warm_up(step: int, steps: int) -> float:
    """0 -> 1 linearly over the first `steps` training steps: the features first learn the classes."""
    return min(1.0, step / max(1, steps))


class Discrepancy:
    """D of one fit: called with the pooled features source (B_s, d) and target (B_t, d) at training step
    `step` (0, 1, ... over the fit), returns (the term added to the loss, gamma and schedule included; D
    itself, the figure reported)."""

    def __call__(self, source: torch.Tensor, target: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def parameters(self) -> list[nn.Parameter]:
        """D's own trainable parameters (a discriminator's), trained alongside the model."""
        return []


class MMDTerm(Discrepancy):
    """gamma * w(step) * MK-MMD^2, w the warm-up over the first `warm_up_steps` steps."""

    def __init__(self, gamma: float, warm_up_steps: int) -> None:
        self.gamma, self.warm_up_steps = gamma, warm_up_steps

    def __call__(self, source, target, step):
        d = mk_mmd(source, target)
        return self.gamma * _warm_up(step, self.warm_up_steps) * d, d


class AdversarialTerm(Discrepancy):
    """The domain discriminator's cross-entropy (nats; ln 2 = 0.69 when it cannot tell the lines apart) on
    the reversed features: the discriminator minimises it, the features receive -gamma * ramp(p) times its
    gradient."""

    def __init__(self, width: int, gamma: float, total_steps: int, seed: int, device: torch.device) -> None:
        with torch.random.fork_rng(devices=[]):  # seeded, and the global random stream stays as it was
            torch.manual_seed(seed)
            self.discriminator = DomainDiscriminator(width).to(device)
        self.gamma, self.total_steps = gamma, total_steps

    def parameters(self):
        return list(self.discriminator.parameters())

    def __call__(self, source, target, step):
        # gamma scales the reversed gradient only: the discriminator itself learns at full strength, and the
        # ramp keeps it from steering the features before it has learnt anything (DANN's schedule).
        self.discriminator.train()
        coefficient = self.gamma * dann_ramp(step / max(1, self.total_steps))
        features = reverse_gradient(torch.cat([source, target]).float(), coefficient)
        domain = torch.cat([torch.ones(len(source)), torch.zeros(len(target))]).to(features.device)
        d = F.binary_cross_entropy_with_logits(self.discriminator(features).float(), domain)
        return d, d


@register_strategy
class MultiKernelMMD(JointObjective):
    name = "mk_mmd"
    summary = ("Fine-tunes on both lines while pulling their features together (multi-kernel MMD, DAN): "
               "for lines that differ in look but not in what a defect is.")
    discrepancy_weight = 0.5  # gamma, reached after the first epoch's warm-up

    def discrepancy(self, width, ctx, total_steps, steps_per_epoch):
        return MMDTerm(self.discrepancy_weight, steps_per_epoch * max(1, ctx.config.warmup_epochs))


@register_strategy
class DomainAdversarial(JointObjective):
    name = "dann"
    summary = ("Fine-tunes on both lines while a second network tries to tell them apart and the features "
               "learn to fool it (domain-adversarial training, DANN).")
    discrepancy_weight = 0.1  # gamma: the reversed gradient's full strength, reached through DANN's ramp

    def discrepancy(self, width, ctx, total_steps, steps_per_epoch):
        return AdversarialTerm(width, self.discrepancy_weight, total_steps, ctx.config.seed, ctx.device)
