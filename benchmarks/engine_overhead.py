"""Engine overhead: `inspector.train(strategy="fine_tune")` vs a bare timm + torch loop, same data.

    python benchmarks/engine_overhead.py ../shared/datasets/magnetic-tile --classes 2 --per-class 40 \
        --epochs 3 --repeats 3

Both sides train the same backbone at the same batch size and resolution on the same decoded
images (`load_image_set`), the same hold-out split (`plan_validation`, which must come out as a
hold-out, not k-fold CV: raise --per-class if it does not), the same albumentations transform
(`build_transform` with the same preprocessing and augmentation preset), a DataLoader with the
same batch size, workers and drop_last, channels_last, and on CUDA the same autocast dtype.
Each side's training pass is timed the way the engine times it (`_train_epoch`): from the first
batch request to the end of the last optimizer step, data loading and augmentation included,
images seen / seconds. The runs alternate (bare, engine, bare, engine, ...) so load drifting on a
shared machine hits both, and the first epoch of every run is left out as warm-up.

Overhead % = (bare train images/s / engine train images/s - 1) * 100 (issue 4 target: < 10).
On a shared machine wall-clock rates swing with other jobs' load, so the table also gives each
epoch's process CPU seconds (training + validation + the engine's bookkeeping; time.process_time
from one EpochEnd to the next on the engine side) and the overhead in those:
(engine epoch CPU s / bare epoch CPU s - 1) * 100.
"epoch wall s" is the time from one epoch's end to the next (training, validation, and for the
engine also events, the best-weights copy and the checkpoint write); "total s" is the whole
run (the engine: the whole `train()` call with its run folder, evaluation and inference timing;
the bare loop: decoding, model creation and its epochs with validation).

What the bare loop does not copy (semantics, not overhead):
- BatchNorm statistics: the engine keeps them frozen (BN layers in eval mode while training);
  the bare loop is plain `model.train()`. Frozen BN skips the batch statistics, which is less
  compute: --bare-frozen-bn puts the bare loop's BN layers in eval mode too, to check how much
  of a difference in speed comes from that rather than from the engine's bookkeeping.
- Loss: the engine uses label smoothing 0.1; the bare loop plain cross-entropy.
- Optimiser: the engine's AdamW has layer-wise learning-rate decay (one parameter group per
  block) and a warm-up + cosine schedule and a zero-initialised head; the bare loop is
  `AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)` with no schedule and timm's head.
- Bookkeeping: the engine emits a StepEnd event per batch and an EpochEnd per epoch (appended to
  the run's metrics.jsonl), keeps a copy of the best weights and checkpoints them to disk, and
  checks for a stop request per batch; the bare loop does none of this.

Inference compares `Predictor.from_run(...).predict_proba` on the kept engine model with a bare
`model.eval(); torch.inference_mode()` loop over the bare side's model, batch 32, on the same
decoded images (transform + model, no decoding), also interleaved.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import itertools
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from _common import machine_header

from inspector import Predictor, TrainConfig, train
from inspector.augment import build_transform, resolve_preprocessing
from inspector.backbones import create_model
from inspector.data import discover_dataset, is_image_path, plan_validation
from inspector.engine.device import resolve_device
from inspector.engine.events import EpochEnd, TrainStart
from inspector.engine.loaders import default_workers, load_image_set


def pick_subset(root: Path, n_classes: int, per_class: int, seed: int) -> list[tuple[Path, str]]:
    """(path, class) pairs: the first n_classes class folders (sorted) that hold enough images,
    per_class images of each drawn with `seed`."""
    rng = np.random.default_rng(seed)
    pairs = []
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in folders:
        images = sorted(p for p in folder.rglob("*") if is_image_path(p))
        if len(images) < per_class:
            continue
        pairs += [(images[i], folder.name) for i in sorted(rng.choice(len(images), per_class, replace=False))]
        if len(pairs) == n_classes * per_class:
            return pairs
    sys.exit(f"error: fewer than {n_classes} classes in {root} have {per_class} images")


def amp(device: torch.device) -> contextlib.AbstractContextManager:
    """The engine's precision: bf16 autocast on CUDA where supported, else fp16; fp32 elsewhere."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Pairs(Dataset):
    def __init__(self, images, labels, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i]), int(self.labels[i])


def bare_run(dataset, prep, args, device: torch.device) -> dict:
    """A tutorial-style fine-tune, made fair (see the module docstring)."""
    start = time.perf_counter()
    images = load_image_set(dataset, prep.image_size)
    train_idx, val_idx = plan_validation(dataset.labels, seed=args.seed).folds[0]
    train_images = [images.images[i] for i in train_idx]
    val_images = [images.images[i] for i in val_idx]
    model = create_model(args.backbone, len(dataset.classes)).to(device, memory_format=torch.channels_last)
    workers = default_workers(device)  # as the engine's loader
    loader = DataLoader(Pairs(train_images, images.labels[train_idx],
                              build_transform(prep, args.augment, seed=args.seed)),
                        batch_size=args.batch_size, shuffle=True, drop_last=len(train_images) > args.batch_size,
                        num_workers=workers, pin_memory=device.type == "cuda",
                        generator=torch.Generator().manual_seed(args.seed))
    eval_transform = build_transform(prep, "none")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    fp16 = device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda") if fp16 else None
    rates, train_s, wall_s, cpu_s = [], [], [], []
    for _ in range(args.epochs):
        epoch_start, epoch_cpu = time.perf_counter(), time.process_time()
        model.train()
        if args.bare_frozen_bn:
            for module in model.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()
        seen, loss_sum = 0, torch.zeros((), device=device)
        for x, y in loader:
            x = x.to(device, non_blocking=True, memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            with amp(device):
                loss = F.cross_entropy(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            if scaler:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            loss_sum += loss.detach() * len(y)
            seen += len(y)
        float(loss_sum)  # one host sync per epoch, as the engine
        seconds = time.perf_counter() - epoch_start
        rates.append(seen / seconds)
        train_s.append(seconds)
        model.eval()
        with torch.inference_mode(), amp(device):
            for first in range(0, len(val_images), 2 * args.batch_size):  # the engine validates at 2x batch
                batch = torch.stack([eval_transform(im) for im in val_images[first:first + 2 * args.batch_size]])
                torch.softmax(model(batch.to(device, memory_format=torch.channels_last)).float(), 1).cpu()
        wall_s.append(time.perf_counter() - epoch_start)
        cpu_s.append(time.process_time() - epoch_cpu)
    return {"rates": rates, "train_s": train_s, "wall_s": wall_s, "cpu_s": cpu_s, "total_s": time.perf_counter() - start,
            "model": model}


def engine_run(dataset, args, runs_dir: str) -> dict:
    epochs: list[EpochEnd] = []
    cpu = []  # process CPU seconds at TrainStart and at each EpochEnd

    def collect(event) -> None:
        if isinstance(event, TrainStart) or (isinstance(event, EpochEnd) and event.fold == "final"):
            cpu.append(time.process_time())
        if isinstance(event, EpochEnd) and event.fold == "final":
            epochs.append(event)

    config = TrainConfig(backbone=args.backbone, strategy="fine_tune", epochs=args.epochs,
                         image_size=args.image_size, batch_size=args.batch_size, augment=args.augment,
                         seed=args.seed, device=args.device, patience=args.epochs + 1)
    start = time.perf_counter()
    result = train(dataset, config, runs_dir=runs_dir, callbacks=[collect])
    total = time.perf_counter() - start
    if "hold-out" not in result.validation:
        sys.exit(f"error: the engine ran {result.validation!r}; use more --per-class images")
    if len(epochs) != args.epochs:
        sys.exit(f"error: {len(epochs)} of {args.epochs} epochs ran ({result.status})")
    seen = args.batch_size * (len(plan_validation(dataset.labels, seed=args.seed).folds[0][0]) // args.batch_size)
    ends = [0.0] + [e.elapsed_s for e in epochs]
    return {"rates": [e.images_per_s for e in epochs], "train_s": [seen / e.images_per_s for e in epochs],
            "wall_s": [b - a for a, b in itertools.pairwise(ends)],
            "cpu_s": [b - a for a, b in itertools.pairwise(cpu)], "total_s": total, "run_dir": result.run_dir}


def bare_infer_rate(model, images, transform, device: torch.device, batch_size: int) -> float:
    model.eval()
    start = time.perf_counter()
    with torch.inference_mode(), amp(device):
        for first in range(0, len(images), batch_size):
            batch = torch.stack([transform(im) for im in images[first:first + batch_size]])
            torch.softmax(model(batch.to(device, memory_format=torch.channels_last)).float(), 1).cpu()
    sync(device)
    return len(images) / (time.perf_counter() - start)


def engine_infer_rate(predictor: Predictor, images, batch_size: int) -> float:
    start = time.perf_counter()
    predictor.predict_proba(images, batch_size=batch_size)
    return len(images) / (time.perf_counter() - start)


def compare(dataset, prep, args, device: torch.device) -> None:
    """Interleaved bare/engine training runs, then inference on the last pair's models."""
    results: dict[str, list[dict]] = {"bare": [], "engine": []}
    with tempfile.TemporaryDirectory() as runs_dir:
        for rep in range(1, args.repeats + 1):
            for side in ("bare", "engine"):
                r = bare_run(dataset, prep, args, device) if side == "bare" else engine_run(dataset, args, runs_dir)
                results[side].append(r)
                print(f"#   rep {rep} {side:6s} train images/s per epoch "
                      f"{' '.join(f'{x:.1f}' for x in r['rates'])}, total {r['total_s']:.1f} s", flush=True)

        def median(side: str, key: str) -> float:
            return statistics.median(x for r in results[side] for x in r[key][1:])

        bare_rate, engine_rate = median("bare", "rates"), median("engine", "rates")
        bare_cpu, engine_cpu = median("bare", "cpu_s"), median("engine", "cpu_s")
        print()
        print("| side | train images/s (median) | train s/epoch | epoch wall s | epoch CPU s | total s (median) "
              "| overhead % (images/s) | overhead % (epoch CPU s) |")
        print("|---|---|---|---|---|---|---|---|")
        for side in ("bare", "engine"):
            overhead = ("| |" if side == "bare" else
                        f"| {(bare_rate / engine_rate - 1) * 100:+.1f} | {(engine_cpu / bare_cpu - 1) * 100:+.1f} |")
            total = statistics.median(r["total_s"] for r in results[side])
            print(f"| {side} | {median(side, 'rates'):.2f} | {median(side, 'train_s'):.2f} | "
                  f"{median(side, 'wall_s'):.2f} | {median(side, 'cpu_s'):.2f} | {total:.1f} {overhead}")
        paired = [(statistics.median(b["rates"][1:]) / statistics.median(e["rates"][1:]) - 1) * 100
                  for b, e in zip(results["bare"], results["engine"])]
        print(f"# overhead per repetition (images/s, paired medians): {', '.join(f'{p:+.1f}%' for p in paired)}; "
              f"{len(results['bare']) * (args.epochs - 1)} epochs kept per side; load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end", flush=True)
        predictor = Predictor.from_run(results["engine"][-1]["run_dir"], device=args.device)
    compare_inference(predictor, results["bare"][-1]["model"], dataset, prep, args, device)


def compare_inference(predictor: Predictor, bare_model, dataset, prep, args, device: torch.device) -> None:
    """The kept engine model through Predictor vs the bare model, batch 32, interleaved."""
    images = load_image_set(dataset, prep.image_size).images
    images = (images * (-(-args.infer_images // len(images))))[:args.infer_images]
    eval_transform, batch = build_transform(prep, "none"), args.infer_batch_size
    predictor.predict_proba(images[:batch], batch_size=batch)  # warm-up
    bare_infer_rate(bare_model, images[:batch], eval_transform, device, batch)
    rates: dict[str, list[float]] = {"bare": [], "engine": []}
    for _ in range(args.repeats):
        rates["bare"].append(bare_infer_rate(bare_model, images, eval_transform, device, batch))
        rates["engine"].append(engine_infer_rate(predictor, images, batch))
    bare_inf, engine_inf = statistics.median(rates["bare"]), statistics.median(rates["engine"])
    print()
    print(f"| inference ({len(images)} decoded images, batch {batch}) | images/s (median of {args.repeats}) "
          "| overhead % |")
    print("|---|---|---|")
    print(f"| bare eval + inference_mode | {bare_inf:.2f} | |")
    print(f"| Predictor.predict_proba | {engine_inf:.2f} | {(bare_inf / engine_inf - 1) * 100:+.1f} |", flush=True)


def profile_engine(dataset, args) -> None:
    """One more engine run under cProfile: the seconds its own bookkeeping costs, which wall-clock
    rates on a busy machine cannot resolve (the profiler slows the Python parts, so this overstates)."""
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory() as runs_dir:
        profiler.runcall(engine_run, dataset, args, runs_dir)
    stats = pstats.Stats(profiler).stats  # (file, line, name) -> (calls, calls, own s, cumulative s, callers)

    def key(name: str) -> tuple:
        return next(k for k in stats if k[0].endswith(str(Path("engine", "loop.py"))) and k[2] == name)

    def called_by(caller: tuple, *names: str) -> float:
        return sum(v[4][caller][3] for k, v in stats.items() if k[2] in names and caller in v[4])

    train_epoch, fit = key("_train_epoch"), key("fit_gradient")
    passes = stats[train_epoch][3]
    per_step = {"StepEnd build + emit": called_by(train_epoch, "emit", "__init__", "elapsed"),
                "freeze_batchnorm": called_by(train_epoch, "freeze_batchnorm"),
                "stop checks": called_by(train_epoch, "check_stop"),
                "the loop's own Python": stats[train_epoch][2]}
    per_epoch = {"EpochEnd emit": called_by(fit, "emit", "__init__", "memory_mb"),
                 "best-weights copy": called_by(fit, "deepcopy"),
                 "checkpoint write": called_by(fit, "checkpoint")}
    total = sum(per_step.values())
    print(f"\n# engine profile (cProfile, one run of {args.epochs} epochs): training passes {passes:.1f} s; "
          f"engine bookkeeping inside them {total:.3f} s ({100 * total / passes:.2f}%): "
          + ", ".join(f"{k} {v:.3f} s" for k, v in per_step.items())
          + "; outside the passes, over all epochs: " + ", ".join(f"{k} {v:.3f} s" for k, v in per_epoch.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", type=Path, help="a folder with one sub-folder per class")
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is warm-up and left out")
    parser.add_argument("--repeats", type=int, default=3, help="bare/engine pairs, interleaved (0: none)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--augment", default="industrial")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--infer-images", type=int, default=96)
    parser.add_argument("--infer-batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bare-frozen-bn", action="store_true",
                        help="bare loop: BatchNorm layers in eval mode while training, as the engine")
    parser.add_argument("--profile", action="store_true",
                        help="also one engine run under cProfile: seconds spent in its bookkeeping")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is warm-up)")
    if args.repeats < 1 and not args.profile:
        parser.error("nothing to do: --repeats 0 without --profile")

    device = resolve_device(args.device)
    dataset = discover_dataset(pick_subset(args.dataset, args.classes, args.per_class, args.seed))
    prep = resolve_preprocessing(args.backbone, args.image_size)
    plan = plan_validation(dataset.labels, seed=args.seed)
    if plan.mode != "holdout":
        sys.exit(f"error: {plan.description}; use more --per-class images")
    print(machine_header(device=f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else device))
    print(f"# data: {args.dataset} {', '.join(dataset.classes)} x {args.per_class} (seed {args.seed}); "
          f"{plan.description}; {len(plan.folds[0][0])} training images, batch {args.batch_size}, "
          f"{args.image_size} px, {args.backbone}, augment {args.augment}, "
          f"bare BN {'frozen' if args.bare_frozen_bn else 'training'}; "
          f"{args.repeats} x (bare, engine) x {args.epochs} epochs", flush=True)
    if args.repeats:
        compare(dataset, prep, args, device)
    if args.profile:
        profile_engine(dataset, args)


if __name__ == "__main__":
    main()
