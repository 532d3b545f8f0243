"""Inspecting at the camera's scale (issue 22, item 5): whole-image scoring beside tiles.

    python benchmarks/tiling.py textile  --seeds 3        # 1. textile-sim local / global flaws
    python benchmarks/tiling.py strips   --build          # 2. large images: strips of 8 magnetic-tile photos
    python benchmarks/tiling.py strips   --whole          #    whole-image AUROC (library) on the strips
    python benchmarks/tiling.py strips   --cli            #    tiled AUROC through `inspector train` + `evaluate`
    python benchmarks/tiling.py magnetic --seeds 3        # 3. magnetic-tile, 16 Free to train
    python benchmarks/tiling.py speed    ...              # 4. seconds per megapixel and peak memory
    python benchmarks/tiling.py cli16k   [--steps ...]    # 5. 16000 x 3000 through train, predict, export, bundle,
                                                          #    serve (`--steps predict,serve --run-dir RUN` reuses a run)

Data are read from ../shared/datasets beside the checkout (never copied); generated images (strips,
large mosaics) are written under /tmp/tiling_bench. Each detector is the product's PatchDetector with
the CLI's anomaly settings (256 px input, lite0 stages 2+3, bank 4096, coreset 10 %); `tiled` uses the
tiling `inspector.scale.choose_tiling` picks for the given --defect-size (the CLI's choice).

Within a seed both settings see the same images. The test images are fixed for all seeds (the seeds
change the training images and the coreset), so the test images' tile features are computed once and
scored against every seed's memory bank (`score_shared`: the detector's own stream, distances and
stitching, checked equal to `PatchDetector.score` on a few images). Every figure is printed; the
machine has 2 CPU cores shared with other work, so timings are indicative (the load is printed).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _common import DATASETS, auroc, machine_header, photo_strip, read_images

MT, TEX = DATASETS / "magnetic-tile", DATASETS / "textile-sim"
TMP = Path("/tmp/tiling_bench")
DEFECTS = ("Blowhole", "Break", "Crack", "Fray", "Uneven")
INPUT = 256  # the CLI's anomaly input size (tasks/anomaly/task.py DEFAULT_IMAGE_SIZE)


def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png", ".bmp"))


def log(record: dict, path: Path) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    with open(path, "a") as f:
        f.write(line + "\n")


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def detector(tiling: dict | None, seed: int, symmetric: bool = False):
    from inspector.tasks.anomaly.detector import DetectorConfig, PatchDetector

    return PatchDetector(DetectorConfig(image_size=INPUT, tiling=tiling, seed=seed, symmetric=symmetric))


def tiling_for(sizes: list[tuple[int, int]], defect_size: float | None) -> tuple[dict | None, str]:
    from inspector.scale import choose_tiling

    choice = choose_tiling(sizes, INPUT, defect_size)
    return choice.tiling, choice.reason


def score_shared(detectors: list, images: list[np.ndarray]) -> list[np.ndarray]:
    """Raw scores of `images` by each fitted detector (same backbone and tiling): the first one's
    stream of model inputs and features, each detector's bank distances, the library's stitching."""
    from inspector.runtime.tiling import ImageMaps
    from inspector.tasks.anomaly.detector import _distances

    collected = [ImageMaps(images) for _ in detectors]
    for pairs, feats in detectors[0]._stream(images, 1, None):
        for d, maps_of in zip(detectors, collected):
            maps = _distances(feats[:, 0], d.memory_bank_, d._bank_sq).cpu().numpy()
            for (i, item), patch_map in zip(pairs, maps):
                maps_of.add(i, item, patch_map)
    return [m.results()[0] for m in collected]


def fit_seeds(tiling: dict | None, train_sets: list[list[np.ndarray]], seeds: list[int]) -> tuple[list, list[float]]:
    dets, secs = [], []
    for seed, train in zip(seeds, train_sets):
        t0 = time.perf_counter()
        dets.append(detector(tiling, seed).fit(train))
        secs.append(time.perf_counter() - t0)
    return dets, secs


def check_and_time(det, images: list[np.ndarray], shared: np.ndarray) -> tuple[float, float]:
    """PatchDetector.score on a few images: seconds per image, and its largest gap to score_shared."""
    t0 = time.perf_counter()
    raw, _ = det.score(images)
    return (time.perf_counter() - t0) / len(images), float(np.abs(raw - shared[:len(images)]).max())


def compare(name: str, settings: dict, train_sets, seeds, test: list[np.ndarray], groups: dict[str, slice],
            good: slice, logfile: Path, n_check: int = 6) -> dict:
    """Fit every setting on every seed's training images, score the fixed test images, print AUROCs."""
    summary = {}
    for label, tiling in settings.items():
        dets, fit_s = fit_seeds(tiling, train_sets, seeds)
        t0 = time.perf_counter()
        scores = score_shared(dets, test)
        shared_s = time.perf_counter() - t0
        per_image_s, gap = check_and_time(dets[0], test[:n_check], scores[0])
        rows = []
        for seed, s, fs in zip(seeds, scores, fit_s):
            row = {"bench": name, "setting": label, "tiling": tiling, "seed": seed, "n_train": len(train_sets[0]),
                   "fit_s_per_image": round(fs / len(train_sets[0]), 3)}
            for g, sl in groups.items():
                row[f"auroc_{g}"] = round(auroc(s[good], s[sl]), 4)
            rows.append(row)
            log(row, logfile)
        mean = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0] if k.startswith("auroc_")}
        summary[label] = {"bench": name, "setting": label, "seeds": seeds, "mean": mean,
                          "per_seed": {k: [r[k] for r in rows] for k in mean},
                          "fit_s_per_image": round(float(np.mean(fit_s)) / len(train_sets[0]), 3),
                          "score_s_per_image": round(per_image_s, 3),
                          "shared_score_s_per_image_all_seeds": round(shared_s / len(test), 3),
                          "score_shared_vs_score_max_gap": gap, "peak_rss_mib": round(rss_mib())}
        log({"summary": summary[label]}, logfile)
    return summary


# -- 1. textile-sim --------------------------------------------------------------------------------
def textile(args) -> None:
    nominal = files(TEX / "nominal")
    order = np.random.default_rng(1234).permutation(len(nominal))
    test_good = [nominal[i] for i in order[:50]]
    pool = [nominal[i] for i in order[50:]]
    rng = np.random.default_rng(4321)
    local = [files(TEX / "local")[i] for i in sorted(rng.choice(100, 50, replace=False))]
    glob_ = [files(TEX / "global")[i] for i in sorted(rng.choice(100, 50, replace=False))]
    seeds = list(range(args.seeds))
    train_sets = [read_images(pool[16 * s: 16 * s + 16]) for s in seeds]
    test = read_images(test_good + local + glob_)
    sizes = [im.shape[:2] for im in train_sets[0]]
    tiled, reason = tiling_for(sizes, args.defect_size)
    print(f"# --defect-size {args.defect_size:g}: {reason}", flush=True)
    settings = {"whole": None, f"defect_size_{args.defect_size:g}": tiled}
    if args.only:
        settings = {k: v for k, v in settings.items() if k == args.only}
    compare("textile", settings, train_sets, seeds, test, {"local": slice(50, 100), "global": slice(100, 150)},
            slice(0, 50), Path(args.log))


# -- 3. magnetic-tile ------------------------------------------------------------------------------
def magnetic(args) -> None:
    free = files(MT / "Free")
    order = np.random.default_rng(1234).permutation(len(free))
    test_good = [free[i] for i in order[:50]]
    pool = [free[i] for i in order[50:]]
    defects = [p for c in DEFECTS for p in files(MT / c)]
    rng = np.random.default_rng(4321)
    test_bad = [defects[i] for i in sorted(rng.choice(len(defects), args.n_defects, replace=False))]
    seeds = list(range(args.seeds))
    train_sets = [read_images(pool[16 * s: 16 * s + 16]) for s in seeds]
    test = read_images(test_good + test_bad)
    sizes = [im.shape[:2] for t in train_sets for im in t]
    tiled, reason = tiling_for(sizes, args.defect_size)
    print(f"# --defect-size {args.defect_size:g}: {reason}", flush=True)
    counts = {c: sum(p.parent.name == c for p in test_bad) for c in DEFECTS}
    print(f"# test: 50 Free + {len(test_bad)} defects {counts}", flush=True)
    compare("magnetic-tile", {"whole": None, f"defect_size_{args.defect_size:g}": tiled}, train_sets, seeds, test,
            {"defects": slice(50, len(test))}, slice(0, 50), Path(args.log))


# -- 2. strips of 8 real photos --------------------------------------------------------------------
STRIPS = TMP / "strips"


def build_strips(seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    free = [files(MT / "Free")[i] for i in rng.permutation(len(files(MT / "Free")))]
    defects = [p for c in DEFECTS for p in files(MT / c)]
    bad = [defects[i] for i in rng.choice(len(defects), 50, replace=False)]
    manifest, k = [], 0
    for split, cls, n in (("train", "Free", 16), ("test", "Free", 50), ("test", "defect", 50)):
        for j in range(n):
            photos = free[k: k + 8] if cls == "Free" else free[k: k + 7]
            k += len(photos)
            where = None
            if cls != "Free":
                where = int(rng.integers(8))
                photos = photos[:where] + [bad[j]] + photos[where:]
            label = "Free" if cls == "Free" else bad[j].parent.name
            out = STRIPS / f"seed{seed}" / split / label / f"{split}_{cls}_{j:03d}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            strip = photo_strip(photos)
            Image.fromarray(strip).save(out)
            manifest.append({"file": str(out), "split": split, "class": label, "defect_at": where,
                             "photos": [str(p.relative_to(DATASETS)) for p in photos], "hw": list(strip.shape)})
    used_train = {p for m in manifest if m["split"] == "train" for p in m["photos"]}
    used_test = {p for m in manifest if m["split"] == "test" for p in m["photos"]}
    assert not used_train & used_test, "a photo is in both train and test"
    (STRIPS / f"seed{seed}" / "manifest.json").write_text(json.dumps(manifest, indent=1))
    widths = [m["hw"][1] for m in manifest]
    classes = {c: sum(m["class"] == c for m in manifest) for c in DEFECTS}
    print(json.dumps({"strips": len(manifest), "width_px": [min(widths), int(np.median(widths)), max(widths)],
                      "height_px": 512, "defect_classes": classes, "photos_used": k + 50,
                      "train_test_overlap": 0}), flush=True)


def strip_sets(seed: int) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    manifest = json.loads((STRIPS / f"seed{seed}" / "manifest.json").read_text())
    train = read_images([Path(m["file"]) for m in manifest if m["split"] == "train"])
    good = [Path(m["file"]) for m in manifest if m["split"] == "test" and m["class"] == "Free"]
    bad = [Path(m["file"]) for m in manifest if m["split"] == "test" and m["class"] != "Free"]
    return train, read_images(good + bad), len(good)


def strips(args) -> None:
    logfile = Path(args.log)
    for seed in range(args.seed0, args.seed0 + args.seeds):
        if args.build:
            build_strips(seed)
        if args.whole or args.tiled:
            train, test, n_good = strip_sets(seed)
            settings = {}
            if args.whole:
                settings["whole"] = None
            if args.tiled:
                tiling, reason = tiling_for([im.shape[:2] for im in train], args.defect_size)
                print(f"# strips, --defect-size {args.defect_size}: {reason}", flush=True)
                settings["auto" if args.defect_size is None else f"defect_size_{args.defect_size:g}"] = tiling
            compare(f"strips_seed{seed}", settings, [train], [seed], test,
                    {"defects": slice(n_good, len(test))}, slice(0, n_good), logfile, n_check=2)
        if args.cli:
            strips_cli(seed, args, logfile)


def _trim(value):
    """A JSON result with every list over 20 items replaced by its length (no maps in the log)."""
    if isinstance(value, dict):
        return {k: _trim(v) for k, v in value.items()}
    if isinstance(value, list):
        return f"<{len(value)} items>" if len(value) > 20 else [_trim(v) for v in value]
    return value


def run_cli(cmd: list[str], logfile: Path) -> dict:
    """One `inspector ... --json` command: its last JSON line, wall seconds, peak RSS of the process."""
    print("$ " + " ".join(cmd), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode:
        print(proc.stdout[-3000:], proc.stderr[-3000:], flush=True)
        raise SystemExit(f"failed: {' '.join(cmd)}")
    last = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    out = _trim(json.loads(last[-1])) if last else {"stdout": proc.stdout[-2000:]}
    return {"result": out, "wall_s": round(wall, 1),
            "peak_rss_mib": round(after / 1024) if after > before else "<= earlier child"}


def strips_cli(seed: int, args, logfile: Path) -> None:
    root = STRIPS / f"seed{seed}"
    runs = TMP / "runs"
    cmd = ["inspector", "train", str(root / "train"), "--task", "anomaly", "--seed", str(seed), "--runs-dir", str(runs),
           "--name", f"strips_seed{seed}", "--json"]
    if args.defect_size is not None:
        cmd[-1:-1] = ["--defect-size", f"{args.defect_size:g}"]
    train = run_cli(cmd, logfile)
    log({"bench": f"strips_seed{seed}", "cli": "train", **train}, logfile)
    run_dir = train["result"].get("run_dir") or str(runs / f"strips_seed{seed}")
    ev = run_cli(["inspector", "evaluate", run_dir, str(root / "test"), "--ok-classes", "Free", "--json"], logfile)
    log({"bench": f"strips_seed{seed}", "cli": "evaluate", **ev}, logfile)


# -- 4. seconds per megapixel and memory -----------------------------------------------------------
def mosaic(height: int, width: int, seed: int) -> np.ndarray:
    """A height x width grey surface of real Free photos (each at 512 px high), mirrored where they meet."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    free = files(MT / "Free")
    rows, y = [], 0
    while y < height:
        row, x = [], 0
        while x < width:
            im = Image.open(free[int(rng.integers(len(free)))]).convert("L")
            part = np.asarray(im.resize((round(im.width * 512 / im.height), 512), Image.BILINEAR))
            if len(row) % 2:
                part = part[:, ::-1]
            row.append(part)
            x += part.shape[1]
        strip = np.concatenate(row, 1)[:, :width]
        rows.append(strip if len(rows) % 2 == 0 else strip[::-1])
        y += 512
    return np.ascontiguousarray(np.concatenate(rows, 0)[:height])


def speed(args) -> None:
    from PIL import Image

    h, w = args.size
    root = TMP / f"large_{w}x{h}"
    folder = root / "train" / "Free"  # a dataset of one class (good), as `inspector train` reads it
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(args.n_train + 1):
        p = root / "test.png" if i == args.n_train else folder / f"train_{i}.png"
        if not p.exists():
            Image.fromarray(mosaic(h, w, 100 + i)).save(p)
        paths.append(p)
    logfile = Path(args.log)
    if args.cli:
        runs = TMP / "runs"
        name = f"large_{w}x{h}"
        train = run_cli(["inspector", "train", str(folder.parent), "--task", "anomaly", "--runs-dir", str(runs), "--name", name,
                         "--max-megapixels", "200", "--json"], logfile)
        log({"bench": name, "cli": "train", "n_train": args.n_train, "megapixels": h * w / 1e6, **train}, logfile)
        run_dir = train["result"].get("run_dir") or str(runs / name)
        out = TMP / f"bundle_{name}"
        exp = run_cli(["inspector", "export", run_dir, "--out", str(out), "--max-megapixels", "200", "--json"], logfile)
        log({"bench": name, "cli": "export", **exp}, logfile)
        pred = run_cli([sys.executable, str(out / "predict.py"), str(paths[-1]), "--json"], logfile)
        log({"bench": name, "cli": "bundle predict.py", "megapixels": h * w / 1e6, **pred}, logfile)
        return
    import torch

    from inspector.data import load_image, to_rgb_array

    train = [to_rgb_array(load_image(p)) for p in paths[:-1]]
    test = [to_rgb_array(load_image(paths[-1]))]
    tiling, reason = tiling_for([im.shape[:2] for im in train], args.defect_size)
    print(f"# {w} x {h}: {reason}", flush=True)
    base = rss_mib()
    det = detector(tiling, 0, symmetric=args.symmetric)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    det.fit(train)
    fit_s = time.perf_counter() - t0
    after_fit = rss_mib()
    t0 = time.perf_counter()
    raw, maps = det.score(test)
    score_s = time.perf_counter() - t0
    mp = h * w / 1e6
    log({"bench": f"large_{w}x{h}", "symmetric": args.symmetric, "tiling": tiling, "n_train": len(train),
         "megapixels_per_image": round(mp, 2), "fit_s_per_image": round(fit_s / len(train), 1),
         "fit_s_per_megapixel": round(fit_s / len(train) / mp, 2), "score_s_per_image": round(score_s, 1),
         "score_s_per_megapixel": round(score_s / mp, 2), "bank": list(det.memory_bank_.shape),
         "map_shape": list(maps[0].shape), "peak_rss_mib_images_loaded": round(base),
         "peak_rss_mib_after_fit": round(after_fit), "peak_rss_mib_after_score": round(rss_mib())}, logfile)


# -- 5. 16000 x 3000 through the CLI ---------------------------------------------------------------
def with_defect(image: np.ndarray, y: int, x: int, radius: int) -> np.ndarray:
    """A dark round blemish (a pit) of `radius` px at (y, x), edges softened over 3 px."""
    out = image.astype(np.float32)
    yy, xx = np.mgrid[y - radius - 4: y + radius + 5, x - radius - 4: x + radius + 5]
    dist = np.sqrt((yy - y) ** 2 + (xx - x) ** 2)
    weight = np.clip((radius + 2 - dist) / 3.0, 0.0, 1.0)
    patch = out[yy[0, 0]: yy[-1, 0] + 1, xx[0, 0]: xx[0, -1] + 1]
    patch -= weight * 0.7 * patch  # 70 % darker at the centre
    return np.clip(out, 0, 255).astype(np.uint8)


def run_timed(cmd: list[str], logfile: Path, extra: dict) -> dict:
    """One command under /usr/bin/time -v: its last JSON line, wall seconds and its own peak RSS."""
    stats = TMP / "time_v.txt"
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", "-o", str(stats), *cmd], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "2"})
    wall = time.perf_counter() - t0
    text = stats.read_text() if stats.exists() else ""
    peak = [ln.split(":")[-1].strip() for ln in text.splitlines() if "Maximum resident set size" in ln]
    record = {**extra, "rc": proc.returncode, "wall_s": round(wall, 1),
              "peak_rss_mib": round(int(peak[0]) / 1024) if peak else None}
    if proc.returncode:
        record["stdout_tail"] = proc.stdout[-2000:]
        record["stderr_tail"] = proc.stderr[-4000:]
        log(record, logfile)
        raise SystemExit(f"failed: {' '.join(cmd)}")
    last = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    record["result"] = _trim(json.loads(last[-1])) if last else {"stdout": proc.stdout[-2000:]}
    log(record, logfile)
    return record


def _row(result: dict) -> dict:
    rows = result.get("predictions") or []
    row = rows[0] if rows else {}
    return {k: row.get(k) for k in ("verdict", "raw_score", "score", "threshold", "familiarity", "reason") if k in row}


SERVE_APP = """import sys
from inspector.deploy.service import ServiceConfig, create_app, serve
serve(create_app(sys.argv[1], ServiceConfig(max_file_bytes=int(sys.argv[3]) * 2**20)), '127.0.0.1', int(sys.argv[2]))
"""


def serve_once(cmd: list[str], label: str, port: int, image: Path, logfile: Path) -> None:
    """A service started by `cmd`: start-up until /health answers, one POST /predict of the image,
    peak RSS of the server process (psutil, polled every 0.2 s, children included)."""
    import threading

    import psutil
    import requests

    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "2", "INSPECTOR_MAX_MEGAPIXELS": "200"})
    peak, done = [0], threading.Event()

    def poll() -> None:
        proc = psutil.Process(server.pid)
        while not done.is_set():
            try:
                rss = sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
                peak[0] = max(peak[0], rss)
            except psutil.Error:
                pass
            time.sleep(0.2)

    threading.Thread(target=poll, daemon=True).start()
    record: dict = {"bench": "large_16000x3000", "cli": label}
    try:
        while True:
            if server.poll() is not None:
                record["exited"] = server.returncode
                record["output_tail"] = server.stdout.read()[-3000:]
                return
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=5).ok:
                    break
            except requests.RequestException:
                pass
            if time.perf_counter() - t0 > 600:
                record["error"] = "no answer on /health within 600 s"
                return
            time.sleep(1)
        record["startup_s"] = round(time.perf_counter() - t0, 1)
        t1 = time.perf_counter()
        with open(image, "rb") as f:
            answer = requests.post(f"http://127.0.0.1:{port}/predict", files=[("files", (image.name, f, "image/png"))],
                                   timeout=1800)
        record["request_s"] = round(time.perf_counter() - t1, 1)
        record["status"] = answer.status_code
        record["row"] = _row(answer.json()) if answer.ok else answer.text[-2000:]
    finally:
        done.set()
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        record["peak_rss_mib"] = round(peak[0] / 2**20)
        log(record, logfile)


def cli16k(args) -> None:
    from PIL import Image

    h, w = 3000, 16000
    root = TMP / f"large_{w}x{h}"
    folder = root / "train" / "Free"  # as `speed --size 3000 16000` writes them: seeds 100, 101 to train
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        p = folder / f"train_{i}.png"
        if not p.exists():
            Image.fromarray(mosaic(h, w, 100 + i)).save(p)
    clean = root / "test.png"  # seed 102, never trained on
    if not clean.exists():
        Image.fromarray(mosaic(h, w, 102)).save(clean)
    test = root / "test_defect.png"
    y, x, radius = 1700, 9300, args.radius
    if not test.exists():
        Image.fromarray(with_defect(np.asarray(Image.open(clean).convert("L")), y, x, radius)).save(test)
    logfile = Path(args.log)
    name = "large_16000x3000_cli"
    base = {"bench": "large_16000x3000", "megapixels": h * w / 1e6}
    log({**base, "train_images": 2, "test_image": str(test), "defect": {"y": y, "x": x, "radius_px": radius},
         "test_png_mib": round(test.stat().st_size / 2**20, 1)}, logfile)
    run_dir = args.run_dir or str(TMP / "runs" / name)
    steps = set(args.steps.split(","))
    if "train" in steps:
        train = run_timed(["inspector", "train", str(folder.parent), "--task", "anomaly", "--runs-dir", str(TMP / "runs"),
                           "--name", name, "--max-megapixels", "200", "--json"], logfile, {**base, "cli": "train"})
        run_dir = train["result"].get("run_dir") or run_dir
    out = TMP / f"bundle_{name}"
    if "predict" in steps:
        pred = run_timed(["inspector", "predict", run_dir, str(test), "--max-megapixels", "200", "--json"], logfile,
                         {**base, "cli": "predict"})
    if "predict_control" in steps:  # the same mosaic without the pit, through `inspector predict` of the run
        run_timed(["inspector", "predict", run_dir, str(clean), "--max-megapixels", "200", "--json"], logfile,
                  {**base, "cli": "predict (clean control)"})
    if "export" in steps:
        run_timed(["inspector", "export", run_dir, "--out", str(out), "--max-megapixels", "200", "--json"], logfile,
                  {**base, "cli": "export"})
    if "bundle" in steps:
        bundle = run_timed([sys.executable, str(out / "predict.py"), str(test), "--max-megapixels", "200", "--json"],
                           logfile, {**base, "cli": "bundle predict.py"})
        if "predict" in steps:
            a, b = _row(pred["result"]), _row(bundle["result"])
            rel = None
            if a.get("raw_score") is not None and b.get("raw_score") is not None:
                rel = abs(a["raw_score"] - b["raw_score"]) / max(abs(a["raw_score"]), 1e-12)
            log({**base, "agreement": {"predict": a, "bundle": b, "same_verdict": a.get("verdict") == b.get("verdict"),
                                       "raw_score_rel_diff": rel}}, logfile)
    if "control" in steps:  # the same mosaic without the pit, through the bundle: is the NG the pit's?
        run_timed([sys.executable, str(out / "predict.py"), str(clean), "--max-megapixels", "200", "--json"],
                  logfile, {**base, "cli": "bundle predict.py (clean control)"})
    max_mb = str(max(20, test.stat().st_size // 2**20 + 5))
    if "serve" in steps:  # the CLI's service
        serve_once(["inspector", "serve", run_dir, "--port", "8765", "--max-megapixels", "200", "--max-mb", max_mb],
                   "serve", 8765, test, logfile)
    if "serve_app" in steps:  # the same service built from the library with its defaults (no CLI flags)
        serve_once([sys.executable, "-c", SERVE_APP, run_dir, "8766", max_mb], "service create_app", 8766, test, logfile)

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="part", required=True)
    for name in ("textile", "strips", "magnetic", "speed", "cli16k"):
        p = sub.add_parser(name)
        p.add_argument("--log", default=f"/tmp/tiling_{name}.jsonl")
        p.add_argument("--seeds", type=int, default=1)
    sub.choices["textile"].add_argument("--defect-size", type=float, default=3.0)
    sub.choices["textile"].add_argument("--only", default=None, help="one setting: whole or defect_size_3")
    sub.choices["magnetic"].add_argument("--defect-size", type=float, default=8.0)
    sub.choices["magnetic"].add_argument("--n-defects", type=int, default=100)
    s = sub.choices["strips"]
    s.add_argument("--seed0", type=int, default=0)
    s.add_argument("--build", action="store_true", help="write the strips under /tmp/tiling_bench/strips")
    s.add_argument("--whole", action="store_true", help="library: whole strip squeezed to 256 px")
    s.add_argument("--tiled", action="store_true", help="library: the tiling choose_tiling picks")
    s.add_argument("--cli", action="store_true", help="inspector train + evaluate (the tiling the CLI picks)")
    s.add_argument("--defect-size", type=float, default=None)
    s = sub.choices["speed"]
    s.add_argument("--size", type=int, nargs=2, default=(2000, 8000), metavar=("H", "W"))
    s.add_argument("--n-train", type=int, default=2)
    s.add_argument("--symmetric", action="store_true")
    s.add_argument("--cli", action="store_true", help="inspector train, export, and the bundle's predict.py")
    s.add_argument("--defect-size", type=float, default=None)
    s = sub.choices["cli16k"]
    s.add_argument("--radius", type=int, default=12, help="radius in px of the dark pit painted into the test image")
    s.add_argument("--steps", default="train,predict,predict_control,export,bundle,control,serve,serve_app",
                   help="comma-separated: train, predict, predict_control, export, bundle, control, serve, serve_app")
    s.add_argument("--run-dir", default=None, help="the run trained earlier (without the train step)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    print(machine_header(part=args.part), flush=True)
    {"textile": textile, "strips": strips, "magnetic": magnetic, "speed": speed, "cli16k": cli16k}[args.part](args)


if __name__ == "__main__":
    main()
