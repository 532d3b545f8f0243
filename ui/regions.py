"""Where to look, drawn on a sample image: a region of interest (green) and regions to ignore (red),
with streamlit-drawable-canvas (Fabric.js), or given as mask images. Stored in the workspace as
fractions of the image (regions.json, `Workspace.save_regions`), so images of any size share them.

The conversion between the canvas's Fabric.js objects (canvas pixels) and region shapes (fractions
of the image) is plain Python here, next to the one component whose format it reads."""
from __future__ import annotations

import hashlib
import json
import logging
import math
from typing import Any

import streamlit as st
from PIL import Image

from inspector import InspectorError
from inspector.heatmap import shade_outside
from inspector.runtime.regions import Regions
from inspector.workspace import Workspace
from ui.data import rgb
from ui.state import flash, user_errors
from ui.words import count

log = logging.getLogger("inspector.app")

try:  # a component is JavaScript served by its package: without it the page says so and offers masks
    from streamlit_drawable_canvas import st_canvas
except Exception as exc:  # noqa: BLE001 - missing, or broken by a Streamlit it does not support
    st_canvas = None
    CANVAS_PROBLEM = f"{type(exc).__name__}: {exc}"
else:
    CANVAS_PROBLEM = None

ROI_COLOUR, IGNORE_COLOUR = "#00c853", "#ff1744"
FILLS = {ROI_COLOUR: "rgba(0, 200, 83, 0.15)", IGNORE_COLOUR: "rgba(255, 23, 68, 0.30)"}
KINDS = {"roi": "Region of interest (inspect only here)", "ignore": "Region to ignore"}
SHAPES = {"rect": "Rectangle (drag)", "polygon": "Polygon (click the corners, then the first one again)"}
CANVAS_WIDTH, CANVAS_HEIGHT = 540, 480  # the largest canvas, in screen pixels (fits a wide page's column)
STROKE = 2
DIGITS = 5  # fractions are stored to 1/100000 of the image: finer than any camera


# -- Fabric.js objects <-> region shapes (pure) ------------------------------------------------------
def canvas_size(height: int, width: int, max_width: int = CANVAS_WIDTH, max_height: int = CANVAS_HEIGHT
                ) -> tuple[int, int]:
    """(canvas width, canvas height): the image's aspect ratio within max_width x max_height."""
    scale = min(max_width / width, max_height / height)
    return max(16, round(width * scale)), max(16, round(height * scale))


def _fraction(value: float, size: int) -> float:
    return round(min(max(value / size, 0.0), 1.0), DIGITS)


def _centre(obj: dict[str, Any], width: float, height: float) -> tuple[float, float]:
    """The canvas point at the middle of an object of (unscaled) width x height, from its origin."""
    offsets = {"left": 0.0, "top": 0.0, "center": 0.5, "right": 1.0, "bottom": 1.0}
    # Fabric.js counts the stroke in an object's extent: scaled with it, or added after (strokeUniform).
    stroke = float(obj.get("strokeWidth") or 0)
    before, after = (0.0, stroke) if obj.get("strokeUniform") else (stroke, 0.0)
    full_w = (width + before) * float(obj.get("scaleX", 1)) + after
    full_h = (height + before) * float(obj.get("scaleY", 1)) + after
    left, top = float(obj.get("left", 0)), float(obj.get("top", 0))
    fx, fy = offsets.get(obj.get("originX", "left"), 0.0), offsets.get(obj.get("originY", "top"), 0.0)
    angle = math.radians(float(obj.get("angle", 0)))
    dx, dy = (0.5 - fx) * full_w, (0.5 - fy) * full_h  # from the origin to the centre, before rotation
    return left + dx * math.cos(angle) - dy * math.sin(angle), top + dx * math.sin(angle) + dy * math.cos(angle)


def _points_of(obj: dict[str, Any]) -> list[tuple[float, float]]:
    """A polygon's corners (a closed Path or a Polygon) in canvas pixels, its moves and scaling applied."""
    if obj["type"].lower() == "path":
        own = [(float(seg[-2]), float(seg[-1])) for seg in obj.get("path") or [] if len(seg) >= 3]
    else:
        own = [(float(p["x"]), float(p["y"])) for p in obj.get("points") or []]
    if len(own) < 3:
        return []
    xs, ys = [p[0] for p in own], [p[1] for p in own]
    mid_x, mid_y = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    cx, cy = _centre(obj, max(xs) - min(xs), max(ys) - min(ys))
    sx, sy = float(obj.get("scaleX", 1)), float(obj.get("scaleY", 1))
    angle = math.radians(float(obj.get("angle", 0)))
    cos, sin = math.cos(angle), math.sin(angle)
    points = []
    for x, y in own:
        dx, dy = (x - mid_x) * sx, (y - mid_y) * sy
        points.append((cx + dx * cos - dy * sin, cy + dx * sin + dy * cos))
    return points


def _shape_of(obj: dict[str, Any], width: int, height: int) -> dict[str, Any] | None:
    """One Fabric.js object -> a region shape in fractions of the image; None for what is not a region."""
    kind = str(obj.get("type", "")).lower()
    if kind == "rect" and not obj.get("angle"):
        sx, sy = float(obj.get("scaleX", 1)), float(obj.get("scaleY", 1))
        w, h = float(obj.get("width", 0)) * sx, float(obj.get("height", 0)) * sy
        cx, cy = _centre(obj, float(obj.get("width", 0)), float(obj.get("height", 0)))
        x0, y0 = cx - w / 2, cy - h / 2
        shape = {"type": "rect", "x0": _fraction(x0, width), "y0": _fraction(y0, height),
                 "x1": _fraction(x0 + w, width), "y1": _fraction(y0 + h, height)}
        return shape if shape["x1"] > shape["x0"] and shape["y1"] > shape["y0"] else None
    if kind == "rect":  # turned in edit mode: its four corners are a polygon
        w, h = float(obj.get("width", 0)), float(obj.get("height", 0))
        obj = {**obj, "type": "polygon", "points": [{"x": 0, "y": 0}, {"x": w, "y": 0}, {"x": w, "y": h},
                                                    {"x": 0, "y": h}]}
        kind = "polygon"
    if kind in ("path", "polygon"):
        points = [[_fraction(x, width), _fraction(y, height)] for x, y in _points_of(obj)]
        return {"type": "polygon", "points": points} if len(points) >= 3 else None
    return None


def regions_from_drawing(drawing: dict[str, Any] | None, width: int, height: int,
                         masks: Regions = Regions()) -> Regions:
    """The canvas's drawing (its `json_data`, on a width x height canvas) as Regions: green shapes are
    the region of interest, red ones regions to ignore; the mask images of `masks` are kept."""
    roi, ignore = [], []
    for obj in (drawing or {}).get("objects", []):
        shape = _shape_of(obj, width, height)
        if shape is not None:
            (roi if str(obj.get("stroke", "")).lower() == ROI_COLOUR else ignore).append(shape)
    return Regions(tuple(roi), tuple(ignore), roi_mask=masks.roi_mask, ignore_mask=masks.ignore_mask)


def drawing_from_regions(regions: Regions, width: int, height: int) -> dict[str, Any]:
    """Regions as a canvas drawing (for `initial_drawing`) on a width x height canvas."""
    objects = []
    for shapes, colour in ((regions.roi, ROI_COLOUR), (regions.ignore, IGNORE_COLOUR)):
        style = {"stroke": colour, "strokeWidth": STROKE, "fill": FILLS[colour], "strokeUniform": True}
        for s in shapes:
            if s["type"] == "rect":
                objects.append({"type": "Rect", "left": s["x0"] * width - STROKE / 2,
                                "top": s["y0"] * height - STROKE / 2,
                                "width": (s["x1"] - s["x0"]) * width, "height": (s["y1"] - s["y0"]) * height,
                                "originX": "left", "originY": "top", **style})
            else:
                corners = [(x * width, y * height) for x, y in s["points"]]
                path = [["M", *corners[0]], *(["L", *p] for p in corners[1:]), ["Z"]]
                xs, ys = [x for x, _ in corners], [y for _, y in corners]
                objects.append({"type": "Path", "path": path, "left": min(xs) - STROKE / 2, "top": min(ys) - STROKE / 2,
                                "width": max(xs) - min(xs), "height": max(ys) - min(ys), "originX": "left",
                                "originY": "top", **style})
    return {"objects": objects}


def describe(regions: Regions, height: int | None = None, width: int | None = None) -> str:
    """'1 region of interest, 2 regions to ignore: 63% of the image is inspected.' (the share only
    for an image size)."""
    if regions.empty:
        return "No regions: the whole image is inspected."
    parts = []
    for shapes, mask, one, many in ((regions.roi, regions.roi_mask, "region of interest", "regions of interest"),
                                    (regions.ignore, regions.ignore_mask, "region to ignore", "regions to ignore")):
        words = [count(len(shapes), one, many)] if shapes else []
        words += [f"a mask of the {one if shapes is regions.roi else many}"] if mask is not None else []
        if words:
            parts.append(" and ".join(words))
    text = ", ".join(parts)
    share = f": {regions.mask(height, width).mean():.0%} of the image is inspected" if height and width else ""
    return f"{text[:1].upper()}{text[1:]}{share}."


def _digest(regions: Regions) -> str:
    return hashlib.sha1(json.dumps(regions.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


# -- the Data page's section ------------------------------------------------------------------------
def _stored(ws: Workspace) -> Regions:
    try:
        return ws.regions()
    except InspectorError as exc:
        st.error(f"The stored regions cannot be read ({exc}); draw them again or clear them.")
        return Regions()


def regions_section(ws: Workspace, counts: dict[str, int]) -> None:
    """Draw a region of interest and regions to ignore on a sample image, or upload mask images."""
    st.header("Where to look")
    st.caption("Draw on a sample image the region to inspect (green) and any regions to ignore (red): a serial "
               "number, a fixture, the belt. They are stored as fractions of the image's width and height, so "
               "images of every size share them, and every training started from the app uses them.")
    stored = _stored(ws)
    a, b, c, d = st.columns([1, 2, 2, 2])
    cls = a.selectbox("Class", [k for k, v in counts.items() if v], key="regions_class")
    name = b.selectbox("Sample image", [p.name for p in ws.images(cls)] if cls else [], key="regions_image")
    kind = c.radio("Draw", list(KINDS), format_func=KINDS.get, key="regions_kind")
    shape = d.radio("Shape", list(SHAPES), format_func=SHAPES.get, key="regions_shape")
    if not name:
        return
    image = None
    with user_errors("Reading the sample image"):
        image = rgb(ws.read_image(cls, name))
    if image is None:
        return
    height, width = image.shape[:2]
    cw, ch = canvas_size(height, width)
    left, right = st.columns([3, 2])
    drawn = stored
    with left:
        if st_canvas is None:
            st.info("The drawing tool (the streamlit-drawable-canvas package) cannot be loaded here, so regions "
                    "cannot be drawn; upload mask images below instead.")
            log.warning("streamlit-drawable-canvas unavailable: %s", CANVAS_PROBLEM)
        else:
            colour = ROI_COLOUR if kind == "roi" else IGNORE_COLOUR
            result = st_canvas(fill_color=FILLS[colour], stroke_width=STROKE, stroke_color=colour,
                               background_image=Image.fromarray(image).resize((cw, ch)), height=ch, width=cw,
                               drawing_mode=shape, initial_drawing=drawing_from_regions(stored, cw, ch),
                               key=f"regions_canvas_{_digest(stored)}_{cls}_{name}")
            with user_errors("Reading the drawing"):
                drawn = regions_from_drawing(result.json_data, cw, ch, masks=stored)
            st.caption(f"{width} x {height} px image. Edit, undo or delete shapes with the canvas's toolbar.")
    with right:
        changed = _digest(drawn) != _digest(stored)
        with user_errors("The regions"):
            st.image(shade_outside(image, drawn.mask(height, width)), width="stretch",
                     caption="What is inspected (outside: darkened red)")
            st.write(describe(drawn, height, width) + (" **Not saved yet.**" if changed else ""))
        save, clear = st.columns(2)
        if save.button("Save the regions", type="primary" if changed else "secondary", disabled=not changed,
                       key="save_regions", icon=":material/save:"):
            with user_errors("Saving the regions"):
                drawn.mask(height, width)  # refuses regions that leave nothing to inspect
                ws.save_regions(drawn)
                flash(f"Saved the regions: {describe(drawn, height, width)}")
                st.rerun()
        if clear.button("Clear all regions", disabled=stored.empty and not changed, key="clear_regions",
                        icon=":material/delete:"):
            with user_errors("Clearing the regions"):
                ws.clear_regions()
                st.session_state.pop(f"regions_canvas_{_digest(stored)}_{cls}_{name}", None)
                flash("Cleared the regions: the whole image is inspected.")
                st.rerun()
    _mask_uploads(ws, stored)


def _mask_uploads(ws: Workspace, stored: Regions) -> None:
    with st.expander("Or give the regions as mask images"):
        st.caption("A black and white picture of any size, stretched over each image: white marks the region. "
                   "It is combined with the drawn shapes.")
        for kind, label in (("roi", "region of interest"), ("ignore", "regions to ignore")):
            present = getattr(stored, f"{kind}_mask") is not None
            a, b, c = st.columns([3, 1, 1], vertical_alignment="bottom")
            upload = a.file_uploader(f"Mask of the {label}", type=["png", "bmp", "tif", "tiff", "jpg", "jpeg"],
                                     key=f"{kind}_mask_upload")
            if b.button("Use it", key=f"use_{kind}_mask", disabled=upload is None):
                with user_errors("Reading the mask"):
                    ws.save_region_mask(kind, upload.getvalue())
                    flash(f"Saved the mask of the {label}.")
                    st.rerun()
            if c.button("Remove", key=f"remove_{kind}_mask", disabled=not present):
                with user_errors("Removing the mask"):
                    ws.save_region_mask(kind, None)
                    flash(f"Removed the mask of the {label}.")
                    st.rerun()
            if present:
                st.caption(f"A mask of the {label} is in use.")

