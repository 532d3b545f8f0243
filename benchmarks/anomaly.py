"""Anomaly detection from good images only: designs compared on real data, 3 seeds.

    python benchmarks/anomaly.py auroc  --designs reference padim pc256 pc320 pc320sym
    python benchmarks/anomaly.py frr    --design pc320sym
    python benchmarks/anomaly.py maps   --design pc320sym
    python benchmarks/anomaly.py speed
    python benchmarks/anomaly.py knn

Data (read from ../shared/datasets beside the checkout, never copied):
  magnetic-tile: a fixed set of 150 Free images is held out for testing (the same for every
      seed and design); seed s trains on Free images [32 s, 32 s + 32) of the rest (the first
      16 of them for the 16-image rows). Tested against ALL 392 defect images.
  textile-sim: 100 nominal images held out; seed s trains on 16 other nominal images;
      tested against local (100) and global (100) separately.

Designs (one line each in DESIGNS): `reference` is a plain PatchCore written here in ~40
lines, independent of the product (timm features_only, 224 px, lite0 stages 2+3, 3x3 average,
full bank, 1-NN, max); `padim` is a per-position Gaussian (PaDiM) on the product's features;
`pc*` are the product's PatchDetector with different settings. Features of each image are
computed once per feature setting (by PatchDetector.embed) and kept in --cache.
Every figure is printed; the machine (2 CPU cores) is shared, so timings are indicative.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from _common import DATASETS, auroc, machine_header, read_images

from inspector.data import load_image
from inspector.tasks.anomaly.calibration import calibrate, frr_guarantee_message
from inspector.tasks.anomaly.detector import DetectorConfig, PatchDetector, nearest_distance
from inspector.tasks.anomaly.maps import anomaly_map

MT, MASKS, TEX = DATASETS / "magnetic-tile", DATASETS / "magnetic-tile-masks", DATASETS / "textile-sim"

BASE = DetectorConfig()
DESIGNS: dict[str, DetectorConfig | str] = {
    "reference": "reference",
    "padim": "padim",  # on pc320's features
    "pc224": replace(BASE, image_size=224, max_bank=4096, coreset_ratio=0.25),
    "pc256": replace(BASE, image_size=256, max_bank=4096, coreset_ratio=0.25),
    "pc256r10": replace(BASE, image_size=256, max_bank=4096, coreset_ratio=0.10),
    "pc320": replace(BASE, image_size=320, max_bank=4096, coreset_ratio=0.25),
    "pc384": replace(BASE, image_size=384, max_bank=4096, coreset_ratio=0.25),
    "pc320sym": replace(BASE, image_size=320, max_bank=4096, coreset_ratio=0.25, symmetric=True),
    "pc256sym": replace(BASE, image_size=256, max_bank=4096, coreset_ratio=0.25, symmetric=True),
    "pc384sym": replace(BASE, image_size=384, max_bank=4096, coreset_ratio=0.25, symmetric=True),
    "pc320sym16k": replace(BASE, image_size=320, max_bank=16384, coreset_ratio=0.25, symmetric=True),
    "pc320l123": replace(BASE, image_size=320, layers=(1, 2, 3), max_bank=4096, coreset_ratio=0.25),
    "pc320l23n5": replace(BASE, image_size=320, neighbourhood=5, max_bank=4096, coreset_ratio=0.25),
    "pc256std": replace(BASE, image_size=256, max_bank=4096, coreset_ratio=0.25, intensity="standardise"),
    "pc320std": replace(BASE, image_size=320, max_bank=4096, coreset_ratio=0.25, intensity="standardise"),
    "pc320symstd": replace(BASE, image_size=320, max_bank=4096, coreset_ratio=0.25, symmetric=True,
                           intensity="standardise"),
    "pc256l123": replace(BASE, image_size=256, layers=(1, 2, 3), max_bank=4096, coreset_ratio=0.25),
    "pc320l1": replace(BASE, image_size=320, max_bank=1024, coreset_ratio=0.25),
}


# -- data ------------------------------------------------------------------------------------
def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png", ".bmp"))


def splits(dataset: str) -> dict:
    """Fixed held-out test images and each seed's training images (paths)."""
    if dataset == "magnetic-tile":
        free = files(MT / "Free")
        order = np.random.default_rng(1234).permutation(len(free))
        test = [free[i] for i in order[:150]]
        pool = [free[i] for i in order[150:]]
        defects = {c.name: files(c) for c in sorted(MT.iterdir()) if c.is_dir() and c.name != "Free"}
        return {"test_good": test, "pool": pool, "defects": defects}
    nominal = files(TEX / "nominal")
    order = np.random.default_rng(1234).permutation(len(nominal))
    return {"test_good": [nominal[i] for i in order[:100]], "pool": [nominal[i] for i in order[100:]],
            "defects": {"local": files(TEX / "local"), "global": files(TEX / "global")}}


def train_paths(split: dict, seed: int, n: int) -> list[Path]:
    return split["pool"][seed * 32: seed * 32 + n] if n <= 32 else split["pool"][:n]


# -- metrics (image AUROC: the library's, from _common) --------------------------------------
def binned_auroc(pos_hist: np.ndarray, neg_hist: np.ndarray) -> float:
    """AUROC from score histograms over the same bins (pixel AUROC over millions of pixels)."""
    tp = np.cumsum(pos_hist[::-1])[::-1] / pos_hist.sum()  # share of positives >= each bin
    fp = np.cumsum(neg_hist[::-1])[::-1] / neg_hist.sum()
    tpr, fpr = np.append(tp, 0.0), np.append(fp, 0.0)
    return float(-np.trapezoid(tpr, fpr))


# -- features (cached) -----------------------------------------------------------------------
_FEATURES: dict = {}


def features_for(config: DetectorConfig, cache: Path) -> Features:
    key = (config.backbone, config.image_size, config.layers, config.neighbourhood, config.intensity)
    if key not in _FEATURES:
        _FEATURES[key] = Features(config, cache)
    return _FEATURES[key]


class Features:
    """PatchDetector.embed of every image once per feature setting, kept on disk as float16."""

    def __init__(self, config: DetectorConfig, cache: Path) -> None:
        self.config = config
        self.detector = PatchDetector(config)
        key = f"{config.backbone}_{self.detector.preprocessing.image_size}_{'-'.join(map(str, config.layers))}_n{config.neighbourhood}" + ("" if config.intensity == "as_is" else f"_{config.intensity}")
        self.dir = cache / key
        self.dir.mkdir(parents=True, exist_ok=True)

    def get(self, paths: list[Path], symmetric: bool = False) -> torch.Tensor:
        """(n, H, W, C) float32, or (n, 8, H, W, C) with symmetric (view 0 is the image)."""
        tag = "sym" if symmetric else "one"
        out, todo = [None] * len(paths), []
        for i, p in enumerate(paths):
            f = self.dir / f"{p.parent.name}__{p.stem}__{tag}.npy"
            if f.exists():
                out[i] = torch.from_numpy(np.load(f))
            else:
                todo.append(i)
        if todo:
            det = self.detector
            old = det.config
            det.config = replace(old, symmetric=symmetric)
            for start in range(0, len(todo), 32):
                chunk = todo[start:start + 32]
                feats = torch.stack([p.feats[0] for p in det._embed_for_bank(read_images([paths[i] for i in chunk]),
                                                                              None)])
                if not symmetric:
                    feats = feats[:, 0]
                for i, f in zip(chunk, feats):
                    h = f.half().numpy()
                    np.save(self.dir / f"{paths[i].parent.name}__{paths[i].stem}__{tag}.npy", h)
                    out[i] = torch.from_numpy(h)
            det.config = old
        return torch.stack(out).float()


def patch_scores(det: PatchDetector, feats: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    bank_sq = (bank * bank).sum(1)
    maps = [det._distances(feats[i:i + 16], bank, bank_sq) for i in range(0, len(feats), 16)]
    return torch.cat(maps)


# -- the plain reference (independent of the product) ----------------------------------------
_REFERENCE: dict = {}


def reference_embed(paths: list[Path]) -> torch.Tensor:
    """timm's lite0 (same bundled weights), 224 px stretch, stages 2+3, 3x3 average, concat."""
    import timm
    from PIL import Image

    from inspector.backbones import create_model

    if "model" not in _REFERENCE:
        model = create_model("tf_efficientnet_lite0", 0).eval()
        cfg = timm.data.resolve_model_data_config(model)
        _REFERENCE.update(model=model, mean=torch.tensor(cfg["mean"]).view(3, 1, 1),
                          std=torch.tensor(cfg["std"]).view(3, 1, 1))
    model, mean, std = _REFERENCE["model"], _REFERENCE["mean"], _REFERENCE["std"]
    todo = [p for p in paths if p not in _REFERENCE]
    for start in range(0, len(todo), 32):
        chunk = todo[start:start + 32]
        batch = torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB").resize(
            (224, 224), Image.BICUBIC), dtype=np.float32) / 255).permute(2, 0, 1) for p in chunk])
        with torch.inference_mode():
            f2, f3 = model.forward_intermediates((batch - mean) / std, indices=[2, 3],
                                                 intermediates_only=True, stop_early=True)
        f2, f3 = F.avg_pool2d(f2, 3, 1, 1), F.avg_pool2d(f3, 3, 1, 1)
        f3 = F.interpolate(f3, size=f2.shape[-2:], mode="bilinear", align_corners=False)
        for p, f in zip(chunk, torch.cat([f2, f3], 1).permute(0, 2, 3, 1)):
            _REFERENCE[p] = f.clone()
    return torch.stack([_REFERENCE[p] for p in paths])


def reference_scores(train: list[Path], tests: list[list[Path]]) -> list[np.ndarray]:
    bank = reference_embed(train).reshape(-1, 152)  # full bank, no coreset
    return [np.array([torch.cdist(f.reshape(-1, 152), bank).min(1).values.max().item()
                      for f in reference_embed(paths)]) for paths in tests]


# -- PaDiM-like per-position Gaussian ---------------------------------------------------------
def padim_scores(train: torch.Tensor, tests: list[torch.Tensor], eps: float = 0.01) -> list[np.ndarray]:
    n, h, w, c = train.shape
    x = train.permute(1, 2, 0, 3).reshape(h * w, n, c).double()
    mean = x.mean(1, keepdim=True)
    cov = (x - mean).transpose(1, 2) @ (x - mean) / max(n - 1, 1) + eps * torch.eye(c, dtype=torch.float64)
    # Through Cholesky (the covariance is symmetric positive definite): the batched LU inverse hit an
    # MKL error on this machine (DLASWP, 'pivots given to lu_solve').
    prec = torch.cholesky_inverse(torch.linalg.cholesky(cov)).float()
    mean = mean.squeeze(1).float()
    out = []
    for t in tests:
        d = t.reshape(len(t), h * w, c) - mean
        m = torch.einsum("npc,pcd,npd->np", d, prec, d).clamp_min(0).sqrt()
        out.append(m.amax(1).numpy())
    return out


# -- parts -----------------------------------------------------------------------------------
def run_auroc(args) -> None:
    for dataset in args.datasets:
        split = splits(dataset)
        defects = {k: v[:args.max_defects] for k, v in split["defects"].items()}
        for name in args.designs:
            design = DESIGNS[name]
            rows = []
            for seed in range(args.seeds):
                train = train_paths(split, seed, args.n_train)
                groups = [split["test_good"]] + list(defects.values())
                t0 = time.perf_counter()
                if design == "reference":
                    scores = reference_scores(train, groups)
                else:
                    cfg = DESIGNS["pc320"] if design == "padim" else design
                    feats = features_for(cfg, args.cache)
                    tests = [feats.get(g) for g in groups]
                    if design == "padim":
                        scores = padim_scores(feats.get(train), tests)
                    else:
                        tr = feats.get(train, symmetric=cfg.symmetric)
                        tr = tr if cfg.symmetric else tr.unsqueeze(1)
                        det = feats.detector
                        det.config = cfg
                        bank = det._bank_from(tr)
                        scores = [patch_scores(det, t, bank).amax((1, 2)).numpy() for t in tests]
                good, bad = scores[0], scores[1:]
                row = {"dataset": dataset, "design": name, "seed": seed, "n_train": len(train),
                       "auroc_all": auroc(good, np.concatenate(bad)),
                       **{f"auroc_{k}": auroc(good, b) for k, b in zip(defects, bad)},
                       "seconds": time.perf_counter() - t0}
                rows.append(row)
                print(json.dumps(row), flush=True)
                with open(args.log, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
            keys = [k for k in rows[0] if k.startswith("auroc")]
            summary = "  ".join(f"{k[6:]} {np.mean([r[k] for r in rows]):.3f}±{np.std([r[k] for r in rows]):.3f}"
                                for k in keys)
            print(f"SUMMARY {dataset} {name} n={args.n_train} seeds={args.seeds}: {summary}", flush=True)


def run_frr(args) -> None:
    cfg = DESIGNS[args.design]
    split = splits("magnetic-tile")
    feats = features_for(cfg, args.cache)
    det = feats.detector
    det.config = cfg
    good = feats.get(split["test_good"])
    bad = {k: feats.get(v) for k, v in split["defects"].items()}
    for seed in range(args.seeds):
        train = train_paths(split, seed, args.n_train)
        tr = feats.get(train, symmetric=cfg.symmetric)
        tr = tr if cfg.symmetric else tr.unsqueeze(1)
        # out_of_sample_scores' k-fold loop on the cached features (same folds, same code path)
        n, k = len(train), min(args.folds, len(train))
        order = np.random.default_rng(seed).permutation(n)
        fold_of = np.empty(n, dtype=np.int64)
        fold_of[order] = np.arange(n) % k
        cal = np.empty(n)
        for f in range(k):
            bank = det._bank_from(tr[torch.as_tensor(np.flatnonzero(fold_of != f))])
            held = np.flatnonzero(fold_of == f)
            cal[held] = patch_scores(det, tr[torch.as_tensor(held), 0], bank).amax((1, 2)).numpy()
        scale = calibrate(cal, args.target)
        bank = det._bank_from(tr)
        g = patch_scores(det, good, bank).amax((1, 2)).numpy()
        b = {c: patch_scores(det, v, bank).amax((1, 2)).numpy() for c, v in bad.items()}
        allbad = np.concatenate(list(b.values()))
        row = {"part": "frr", "design": args.design, "seed": seed, "n_train": n, "folds": k, "target": args.target,
               "threshold": scale.threshold, "frr": float((g > scale.threshold).mean()), "n_test_good": len(g),
               "detection": float((allbad > scale.threshold).mean()), "n_defect": len(allbad),
               **{f"detection_{c}": float((v > scale.threshold).mean()) for c, v in b.items()},
               "auroc": auroc(g, allbad), "message": frr_guarantee_message(n, args.target)}
        print(json.dumps(row), flush=True)
        with open(args.log, "a") as fh:
            fh.write(json.dumps(row) + "\n")


def run_maps(args) -> None:
    """Pixel AUROC of the anomaly map and the share of defect images whose map peaks in the mask."""
    cfg = DESIGNS[args.design]
    split = splits("magnetic-tile")
    feats = features_for(cfg, args.cache)
    det = feats.detector
    det.config = cfg
    bins = np.linspace(0, 1, 4097)
    for seed in range(args.seeds):
        tr = feats.get(train_paths(split, seed, args.n_train), symmetric=cfg.symmetric)
        bank = det._bank_from(tr if cfg.symmetric else tr.unsqueeze(1))
        paths = [p for v in split["defects"].values() for p in v] + split["test_good"][:50]
        maps = patch_scores(det, feats.get(paths), bank).numpy()
        hi = float(maps.max()) * 1.01
        pos, neg = np.zeros(4096), np.zeros(4096)
        peaks_in, n_def = 0, 0
        for p, pm in zip(paths, maps):
            mask = np.asarray(load_image(MASKS / p.parent.name / (p.stem + ".png")).convert("L")) > 127
            m = anomaly_map(pm, mask.shape, sigma=args.sigma)
            pos += np.histogram(m[mask] / hi, bins)[0]
            neg += np.histogram(m[~mask] / hi, bins)[0]
            if p.parent.name != "Free" and mask.any():
                n_def += 1
                peaks_in += bool(mask.flat[int(np.argmax(m))])
        row = {"part": "maps", "design": args.design, "seed": seed, "sigma": args.sigma,
               "pixel_auroc": binned_auroc(pos, neg), "peak_in_mask": peaks_in / n_def, "n_defect_images": n_def,
               "n_good_images": 50}
        print(json.dumps(row), flush=True)
        with open(args.log, "a") as fh:
            fh.write(json.dumps(row) + "\n")


def run_speed(args) -> None:
    """Fit on 16 good images at 256 px; scoring at batch 32; scoring vs bank size (16/200/all good)."""
    split = splits("magnetic-tile")
    cfg = replace(DESIGNS[args.design], image_size=args.size, batch_size=32)
    images16 = read_images(train_paths(split, 0, 16))
    test = read_images(split["test_good"][:64])
    for repeat in range(2):
        det = PatchDetector(cfg)
        t0 = time.perf_counter()
        det.fit(images16)
        fit_s = time.perf_counter() - t0
        det.score(test[:8])  # warm-up
        t0 = time.perf_counter()
        det.score(test)
        rate = len(test) / (time.perf_counter() - t0)
        row = {"part": "speed", "design": args.design, "image_size": args.size, "symmetric": cfg.symmetric,
               "fit_16_s": fit_s, "score_img_s_b32": rate, "bank": int(det.memory_bank_.shape[0]),
               "threads": torch.get_num_threads(), "load1": os.getloadavg()[0]}
        print(json.dumps(row), flush=True)
        with open(args.log, "a") as fh:
            fh.write(json.dumps(row) + "\n")
    # Scoring time vs bank: the bank is built by the product's coreset from n good images' patch
    # features (random tensors of the real shape: the coreset and 1-NN cost depend on sizes only;
    # embedding costs the same per image whatever the bank, see score_img_s_b32 above).
    h, w = det.feature_hw_
    c = det.memory_bank_.shape[1]
    for n in args.bank_images:
        feats = torch.randn(n, 1, h, w, c, generator=torch.Generator().manual_seed(n))
        t0 = time.perf_counter()
        bank = det._bank_from(feats)
        coreset_s = time.perf_counter() - t0
        del feats
        det._set_bank(bank, n, (h, w))
        t0 = time.perf_counter()
        det.score(test)
        rate = len(test) / (time.perf_counter() - t0)
        row = {"part": "bank_growth", "design": args.design, "image_size": args.size, "n_good": n,
               "patches": n * h * w, "bank": int(bank.shape[0]), "coreset_s": coreset_s, "score_img_s_b32": rate,
               "load1": os.getloadavg()[0]}
        print(json.dumps(row), flush=True)
        with open(args.log, "a") as fh:
            fh.write(json.dumps(row) + "\n")


def run_knn(args) -> None:
    """Exact 1-NN: the product's chunked torch matmul against faiss IndexFlatL2, same data."""
    try:
        import faiss
    except ImportError:
        print("faiss is not installed: pip install faiss-cpu")
        return
    faiss.omp_set_num_threads(torch.get_num_threads())
    gen = torch.Generator().manual_seed(0)
    queries = torch.randn(8 * 1600, 152, generator=gen)  # 8 images at 320 px (40 x 40 patches)
    for bank_size in args.knn_banks:
        bank = torch.randn(bank_size, 152, generator=gen)
        t0 = time.perf_counter()
        d_torch = nearest_distance(queries, bank)
        t_torch = time.perf_counter() - t0
        index = faiss.IndexFlatL2(152)
        index.add(bank.numpy())
        t0 = time.perf_counter()
        d2, _ = index.search(queries.numpy(), 1)
        t_faiss = time.perf_counter() - t0
        agree = float(np.abs(np.sqrt(np.maximum(d2[:, 0], 0)) - d_torch.numpy()).max())
        row = {"part": "knn", "bank": bank_size, "queries": len(queries), "torch_s": t_torch, "faiss_s": t_faiss,
               "max_abs_diff": agree, "load1": os.getloadavg()[0]}
        print(json.dumps(row), flush=True)
        with open(args.log, "a") as fh:
            fh.write(json.dumps(row) + "\n")


def run_table(args) -> None:
    """Markdown tables (mean ± std over seeds) from the JSON lines the other parts wrote."""
    rows = [json.loads(line) for line in open(args.log)]
    groups: dict = {}
    for r in rows:
        key = (r.get("part", "auroc"), r.get("dataset", ""), r["design"] if "design" in r else "", r.get("n_train"),
               r.get("image_size"), r.get("n_good"), r.get("bank"))
        groups.setdefault(key, {})[r.get("seed", len(groups.get(key, {})))] = r  # the last run of a seed wins
    for key, by_seed in groups.items():
        runs = list(by_seed.values())
        nums = {k: [r[k] for r in runs] for k, v in runs[0].items()
                if isinstance(v, float) and k not in ("seed",)}
        cells = "  ".join(f"{k} {np.mean(v):.3f}±{np.std(v):.3f}" for k, v in nums.items())
        print(f"| {' | '.join(str(k) for k in key if k not in (None, ''))} | n={len(runs)} | {cells} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=["auroc", "frr", "maps", "speed", "knn", "table"])
    parser.add_argument("--designs", nargs="+", default=["reference", "padim", "pc320", "pc320sym"])
    parser.add_argument("--design", default="pc320sym")
    parser.add_argument("--datasets", nargs="+", default=["magnetic-tile", "textile-sim"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=None, help="good training images (16; frr: 32)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-defects", type=int, default=None,
                        help="at most this many images per defect class (the first, by name); default all")
    parser.add_argument("--target", type=float, default=0.05)
    parser.add_argument("--sigma", type=float, default=4.0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--bank-images", type=int, nargs="*", default=[16, 200, 1000])
    parser.add_argument("--knn-banks", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/anomaly_features"))
    parser.add_argument("--log", default="/tmp/anomaly_benchmark.jsonl")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    args.n_train = args.n_train or (32 if args.part == "frr" else 16)
    torch.set_num_threads(args.threads)
    print(machine_header(part=args.part), flush=True)
    {"auroc": run_auroc, "frr": run_frr, "maps": run_maps, "speed": run_speed, "knn": run_knn, "table": run_table}[args.part](args)


if __name__ == "__main__":
    main()
