"""The bundled sample dataset: synthetic inspection photos of textured surfaces, with defects.

Each image is a grey metal, ceramic or plastic surface (procedural grain, machining marks,
uneven lighting, vignetting, blur, sensor noise) that is either fine ("ok") or carries one
small defect at a random place, size, orientation and contrast. A defect is one function
registered in `DEFECTS`; adding a defect kind is adding one function.

Every image draws from its own `numpy.random.Generator`, seeded from (seed, split, class,
index), so a dataset is the same pixels on every run and a smaller one is a prefix of a
larger one.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

SAMPLE_CLASSES: tuple[str, ...] = ("ok", "scratch", "dent", "crack", "stain")
IMAGE_SIZE = (320, 240)  # width, height: a line-camera crop
JPEG_QUALITY = 90
_SUPERSAMPLE = 4  # strokes are drawn this much larger, then averaged down (anti-aliasing)
_SPLITS = {"train": 0, "new_parts": 1, "good_parts": 2}

Painter = Callable[[np.ndarray, np.random.Generator], None]
"""Paints one feature in place on an (H, W, 3) float surface, values around 0..1."""
Surface = Callable[[np.random.Generator, int, int], np.ndarray]
"""Makes an (H, W) grey surface (albedo around 0..1) for the given height and width."""

DEFECTS: dict[str, Painter] = {}  # defect class name -> painter; every key is a sample class
SURFACES: dict[str, Surface] = {}
BENIGN: dict[str, Painter] = {}  # harmless features, found on good and defective parts alike


def _registers_into(table: dict[str, Callable]) -> Callable[[str], Callable]:
    def register(name: str) -> Callable:
        def decorator(fn: Callable) -> Callable:
            table[name] = fn
            return fn
        return decorator
    return register


register_defect = _registers_into(DEFECTS)
register_surface = _registers_into(SURFACES)
register_benign = _registers_into(BENIGN)


# --------------------------------------------------------------------------- public API

def generate_sample_data(out_dir: str | Path, *, seed: int = 0, images_per_class: int = 24,
                         new_parts: int = 10, good_parts: int = 40) -> Path:
    """Write the sample dataset and return `out_dir`.

    Layout: `out_dir/train/<class>/<class>_NN.jpg` (`images_per_class` per class),
    `out_dir/new_parts/<class>_NN.jpg` (`new_parts` images in all, classes taken in turn),
    fresh draws for trying a trained model; the class is in the name to check predictions; and
    `out_dir/good_parts/ok/ok_NN.jpg` (`good_parts` more good parts), to try anomaly detection
    from good parts only.
    """
    out = Path(out_dir)
    for class_index, name in enumerate(SAMPLE_CLASSES):
        folder = out / "train" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(images_per_class):
            _save(render_image(name, _rng(seed, "train", class_index, i)), folder / f"{name}_{i:02d}.jpg")
    if good_parts > 0:
        (out / "good_parts" / "ok").mkdir(parents=True, exist_ok=True)
    for i in range(good_parts):
        _save(render_image("ok", _rng(seed, "good_parts", 0, i)), out / "good_parts" / "ok" / f"ok_{i:02d}.jpg")
    if new_parts > 0:
        (out / "new_parts").mkdir(parents=True, exist_ok=True)
    for k in range(new_parts):
        class_index, i = k % len(SAMPLE_CLASSES), k // len(SAMPLE_CLASSES)
        name = SAMPLE_CLASSES[class_index]
        rng = _rng(seed, "new_parts", class_index, i)
        _save(render_image(name, rng), out / "new_parts" / f"{name}_{i:02d}.jpg")
    return out


def split_by_name(source: str | Path, out: str | Path, n_train: int = 16) -> tuple[Path, Path]:
    """Copy a folder of class sub-folders into out/train and out/test: per class, the first `n_train`
    images by file name train and the others test (the same split every time; for tests and benchmarks)."""
    import shutil

    out = Path(out)
    for folder in sorted(p for p in Path(source).iterdir() if p.is_dir()):
        images = sorted(folder.iterdir())
        for part, chosen in (("train", images[:n_train]), ("test", images[n_train:])):
            (out / part / folder.name).mkdir(parents=True, exist_ok=True)
            for image in chosen:
                shutil.copy(image, out / part / folder.name / image.name)
    return out / "train", out / "test"


def render_image(label: str, rng: np.random.Generator, size: tuple[int, int] = IMAGE_SIZE) -> np.ndarray:
    """One inspection photo as an (H, W, 3) uint8 array; `label` is "ok" or a key of DEFECTS.

    The part, the defect and the camera draw from separate streams split off `rng`, so the
    same `rng` seed gives the same part under the same light with or without each defect.
    """
    if label != "ok" and label not in DEFECTS:
        raise ValueError(f"Unknown sample class {label!r}; known: {', '.join(SAMPLE_CLASSES)}")
    part_rng, defect_rng, camera_rng = rng.spawn(3)
    width, height = size
    surface = _tint(SURFACES[part_rng.choice(sorted(SURFACES))](part_rng, height, width), part_rng)
    if part_rng.random() < 0.5:  # harmless features occur in every class alike
        BENIGN[part_rng.choice(sorted(BENIGN))](surface, part_rng)
    if label != "ok":
        DEFECTS[label](surface, defect_rng)
    return _photograph(surface, camera_rng)


def _rng(seed: int, split: str, class_index: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SPLITS[split], class_index, index])


def _save(pixels: np.ndarray, path: Path) -> None:
    Image.fromarray(pixels).save(path, quality=JPEG_QUALITY, optimize=True)


# --------------------------------------------------------------------------- surfaces

def _noise(rng: np.random.Generator, shape: tuple[int, ...], sigma) -> np.ndarray:
    """Gaussian noise smoothed by `sigma` and scaled back to unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return field / (field.std() + 1e-8)


def _grain(rng: np.random.Generator, h: int, w: int, across: float, along: float) -> np.ndarray:
    """Directional grain (unit std) at a random angle: noise stretched along one axis, rotated."""
    side = int(np.ceil(np.hypot(h, w))) + 4
    field = _noise(rng, (side, side), (across, along))
    field = ndimage.rotate(field, rng.uniform(0, 180), reshape=False, order=1, mode="wrap")
    top, left = (side - h) // 2, (side - w) // 2
    return field[top:top + h, left:left + w]


@register_surface("brushed")
def _brushed_metal(rng, h, w):
    grain = _grain(rng, h, w, rng.uniform(0.5, 0.9), rng.uniform(15, 45))
    return rng.uniform(0.35, 0.7) + rng.uniform(0.02, 0.05) * grain + 0.012 * rng.standard_normal((h, w))


@register_surface("cast")
def _cast_metal(rng, h, w):
    fine = _noise(rng, (h, w), rng.uniform(0.7, 1.2))
    mottle = _noise(rng, (h, w), rng.uniform(12, 30))
    return rng.uniform(0.3, 0.6) + rng.uniform(0.02, 0.04) * fine + rng.uniform(0.01, 0.03) * mottle


@register_surface("turned")
def _turned_metal(rng, h, w):
    """Concentric tool marks from a lathe or face mill whose centre lies outside the crop."""
    angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(350, 1500)
    cy, cx = h / 2 + dist * np.sin(angle), w / 2 + dist * np.cos(angle)
    yy, xx = np.mgrid[0:h, 0:w]
    radius = np.hypot(yy - cy, xx - cx) + 2.0 * _noise(rng, (h, w), 8)
    marks = np.sin(2 * np.pi * radius / rng.uniform(3.5, 8))
    grain = _grain(rng, h, w, 0.6, 10)
    return rng.uniform(0.35, 0.7) + rng.uniform(0.015, 0.035) * marks + 0.02 * grain


@register_surface("ceramic")
def _ceramic(rng, h, w):
    """Glazed ceramic or moulded plastic: orange-peel waviness and fine speckle."""
    peel = _noise(rng, (h, w), rng.uniform(2.5, 5))
    speckle = _noise(rng, (h, w), 0.7)
    return rng.uniform(0.5, 0.8) + rng.uniform(0.01, 0.025) * peel + rng.uniform(0.01, 0.02) * speckle


def _tint(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grey -> slightly coloured RGB (steel is bluish, cast iron warm, ceramic creamy...)."""
    tint = 1.0 + rng.normal(0, 0.025, 3)
    return grey[..., None] * tint


# --------------------------------------------------------------------------- helpers for painters

def _where(rng: np.random.Generator, h: int, w: int, margin: int) -> tuple[float, float]:
    """A random (y, x) at least `margin` pixels from the border."""
    return rng.uniform(margin, h - margin), rng.uniform(margin, w - margin)


def _walk(rng: np.random.Generator, start, heading: float, length: float, step: float,
          wiggle: float, curl: float = 0.0, pull: float = 0.0) -> np.ndarray:
    """A path of (y, x) points: heading turns by `curl` per step plus `wiggle` noise, pulled back
    towards the initial heading by `pull`."""
    n = max(2, int(length / step))
    points, (y, x), direction = [start], start, heading
    for _ in range(n):
        direction += curl + rng.normal(0, wiggle) + pull * (heading - direction)
        y, x = y + step * np.sin(direction), x + step * np.cos(direction)
        points.append((y, x))
    return np.array(points)


def _centred(path: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """`path` moved so that the middle of its bounding box lies at `centre`."""
    middle = (path.min(axis=0) + path.max(axis=0)) / 2
    return path + (np.asarray(centre) - middle)


def _stroke(h: int, w: int, path: np.ndarray, widths: np.ndarray, strengths: np.ndarray) -> np.ndarray:
    """An anti-aliased (H, W) mask in 0..1 of a polyline with per-segment width and strength."""
    s = _SUPERSAMPLE
    canvas = Image.new("L", (w * s, h * s), 0)
    draw = ImageDraw.Draw(canvas)
    for (y0, x0), (y1, x1), width, strength in zip(path[:-1], path[1:], widths, strengths):
        draw.line([(x0 * s, y0 * s), (x1 * s, y1 * s)], fill=int(255 * strength),
                  width=max(1, round(width * s)), joint="curve")
    small = canvas.resize((w, h), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64) / 255.0


def _blob(rng: np.random.Generator, h: int, w: int, centre, radius: float, rough: float) -> np.ndarray:
    """A soft irregular blob mask in 0..1 around `centre`."""
    yy, xx = np.mgrid[0:h, 0:w]
    aspect, angle = rng.uniform(0.5, 1.0), rng.uniform(0, np.pi)
    dy, dx = yy - centre[0], xx - centre[1]
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / aspect
    field = 1.0 - np.hypot(u, v) / radius + rough * _noise(rng, (h, w), radius / 3)
    return np.clip(field / 0.35, 0.0, 1.0) ** 1.5


def _smooth_profile(rng: np.random.Generator, n: int, low: float) -> np.ndarray:
    """Values in low..1 that vary smoothly along n points and fade out at both ends."""
    wobble = ndimage.gaussian_filter1d(rng.standard_normal(n + 1), max(1.0, n / 8), mode="nearest")
    wobble = low + (1 - low) * (wobble - wobble.min()) / (np.ptp(wobble) + 1e-8)
    t = np.linspace(0, 1, n + 1)
    return (wobble * np.clip(np.minimum(t, 1 - t) * 8, 0, 1))[:n]


# --------------------------------------------------------------------------- defects

@register_defect("scratch")
def _scratch(surface: np.ndarray, rng: np.random.Generator) -> None:
    """A thin long line, straight or gently curved, brighter or darker than the surface."""
    h, w, _ = surface.shape
    path = _walk(rng, (0.0, 0.0), rng.uniform(0, 2 * np.pi), rng.uniform(110, 220),
                 step=2.0, wiggle=0.01, curl=rng.normal(0, 0.012))
    path = _centred(path, _where(rng, h, w, 50))
    n = len(path) - 1
    mask = _stroke(h, w, path, np.full(n, rng.uniform(2.2, 3.6)), _smooth_profile(rng, n, 0.7))
    sign = 1.0 if rng.random() < 0.6 else -1.0
    surface *= (1.0 + sign * rng.uniform(0.5, 0.75) * mask)[..., None]


@register_defect("dent")
def _dent(surface: np.ndarray, rng: np.random.Generator) -> None:
    """A small round pit, lit from one side: a highlight on one rim, a shadow on the other."""
    h, w, _ = surface.shape
    cy, cx = _where(rng, h, w, 25)
    radius, light = rng.uniform(10, 18), rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    depth = -np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2 * rng.uniform(0.7, 1.0)) / radius ** 2))
    gy, gx = np.gradient(depth)
    shading = (gx * np.cos(light) + gy * np.sin(light)) * radius  # ~ -1..1 around the rim
    amp = rng.uniform(0.5, 0.75)
    surface *= (1.0 + amp * shading + 0.15 * amp * depth)[..., None]


@register_defect("crack")
def _crack(surface: np.ndarray, rng: np.random.Generator) -> None:
    """A thin dark jagged path with a few thinner branches."""
    h, w, _ = surface.shape
    heading = rng.uniform(0, 2 * np.pi)
    main = _walk(rng, (0.0, 0.0), heading, rng.uniform(100, 190), step=2.5, wiggle=0.45, pull=0.25)
    main = _centred(main, _where(rng, h, w, 50))
    paths = [(main, rng.uniform(2.5, 3.5))]
    for _ in range(rng.integers(1, 4)):
        start = tuple(main[rng.integers(len(main) // 4, len(main))])
        turn = rng.choice([-1, 1]) * rng.uniform(0.4, 1.1)
        branch = _walk(rng, start, heading + turn, rng.uniform(20, 50), step=2.0, wiggle=0.5, pull=0.25)
        paths.append((branch, rng.uniform(1.0, 1.6)))
    mask = np.zeros((h, w))
    for path, width in paths:
        n = len(path) - 1
        tapered = width * np.linspace(1.0, 0.5, n)
        mask = np.maximum(mask, _stroke(h, w, path, tapered, _smooth_profile(rng, n, 0.6)))
    surface *= (1.0 - rng.uniform(0.6, 0.8) * mask)[..., None]


_STAIN_TINTS = np.array([[0.92, 0.8, 0.66],   # rust / oxide
                         [0.82, 0.82, 0.86],  # oil film
                         [0.95, 0.9, 0.78],   # dried coolant
                         [0.86, 0.84, 0.8]])  # dark inclusion


@register_defect("stain")
def _stain(surface: np.ndarray, rng: np.random.Generator) -> None:
    """A soft irregular discoloured blob that dulls the texture under it; dried ones have a
    darker rim where the liquid's edge deposited more."""
    h, w, _ = surface.shape
    mask = _blob(rng, h, w, _where(rng, h, w, 35), rng.uniform(26, 42), rough=0.35)
    mask = ndimage.gaussian_filter(mask, rng.uniform(1, 3))
    rim = 4 * mask * (1 - mask) * rng.uniform(0.0, 1.0)  # peaks halfway up the soft edge
    tint = _STAIN_TINTS[rng.integers(len(_STAIN_TINTS))] ** rng.uniform(1.0, 1.8)
    dull = ndimage.gaussian_filter(surface, (3, 3, 0))
    m, r = mask[..., None], rim[..., None]
    surface[:] = (surface * (1 - 0.5 * m) + dull * 0.5 * m) * (1 + (0.8 * m + r) * (tint - 1))


# --------------------------------------------------------------------------- harmless features

@register_benign("specular")
def _specular(surface: np.ndarray, rng: np.random.Generator) -> None:
    """A broad soft reflection of the light source: large, bright, colourless."""
    h, w, _ = surface.shape
    mask = _blob(rng, h, w, _where(rng, h, w, 20), rng.uniform(40, 100), rough=0.1)
    mask = ndimage.gaussian_filter(mask, 15)
    surface *= (1.0 + rng.uniform(0.05, 0.15) * mask)[..., None]


@register_benign("tool_band")
def _tool_band(surface: np.ndarray, rng: np.random.Generator) -> None:
    """A faint wide band across the whole part where the tool pressure changed."""
    h, w, _ = surface.shape
    angle, offset = rng.uniform(0, np.pi), rng.uniform(-0.3, 0.3) * min(h, w)
    yy, xx = np.mgrid[0:h, 0:w]
    dist = (xx - w / 2) * np.sin(angle) - (yy - h / 2) * np.cos(angle) - offset
    band = np.exp(-0.5 * (dist / rng.uniform(6, 20)) ** 2)
    surface *= (1.0 + rng.choice([-1, 1]) * rng.uniform(0.02, 0.05) * band)[..., None]


@register_benign("polish_spot")
def _polish_spot(surface: np.ndarray, rng: np.random.Generator) -> None:
    """A small area where the grain is smoother: a blob, but not a defect."""
    h, w, _ = surface.shape
    mask = _blob(rng, h, w, _where(rng, h, w, 35), rng.uniform(10, 22), rough=0.3)[..., None]
    smooth = ndimage.gaussian_filter(surface, (2, 2, 0))
    surface[:] = surface * (1 - 0.7 * mask) + smooth * 0.7 * mask


# --------------------------------------------------------------------------- camera

def _photograph(surface: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Light the surface unevenly, then blur, add sensor noise and quantise to uint8."""
    h, w, _ = surface.shape
    yy, xx = np.mgrid[0:h, 0:w]
    ny, nx = (yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2)
    angle = rng.uniform(0, 2 * np.pi)
    gradient = rng.uniform(0.0, 0.25) * (nx * np.cos(angle) + ny * np.sin(angle))
    vignette = rng.uniform(0.05, 0.25) * (nx ** 2 + ny ** 2) / 2
    light = rng.uniform(0.75, 1.25) * (1.0 + gradient - vignette)
    image = ndimage.gaussian_filter(surface * light[..., None], (rng.uniform(0.4, 0.9),) * 2 + (0,))
    noise = rng.uniform(0.004, 0.012) * rng.standard_normal((h, w, 1))
    image = image + noise + 0.003 * rng.standard_normal((h, w, 3))
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)
