"""Process-wide resources (the background runner, loaded Predictors) and small page helpers."""
from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from pathlib import Path

import streamlit as st
from PIL import Image, ImageDraw
from streamlit.errors import StreamlitAPIException

from inspector import InspectorError, RunInfo, RunStore, load_predictor
from inspector.jobs import BackgroundRunner
from inspector.tasks.base import create_task
from inspector.workspace import Workspace

log = logging.getLogger("inspector.app")


NAVIGATION = (("app.py", "Home", ":material/home:"), ("pages/1_Data.py", "Data", ":material/photo_library:"),
              ("pages/2_Train.py", "Train", ":material/model_training:"),
              ("pages/3_Compare.py", "Compare", ":material/compare:"),
              ("pages/4_Inspect.py", "Inspect", ":material/search:"))


def page_setup(title: str, icon: str = ":material/search:") -> None:
    """Page config and the sidebar menu (Streamlit's own menu would call the home page "app").

    The browser tab's icon is the app's own image, served by the app: Streamlit fetches a
    ":material/...:" page icon from fonts.gstatic.com, which a plant without internet cannot reach
    (the menu's material icons are fine: they come from the font bundled with Streamlit)."""
    favicon = app_icon() if icon.startswith(":material/") else icon
    st.set_page_config(page_title=f"{title} · Defect Inspector", page_icon=favicon, layout="wide")
    with st.sidebar:
        st.markdown("### Defect Inspector")
        for path, label, page_icon in NAVIGATION:
            try:
                st.page_link(path, label=label, icon=page_icon)
            except StreamlitAPIException:  # a page run on its own (AppTest) has no menu
                break


@functools.lru_cache(maxsize=1)
def app_icon() -> Image.Image:
    """The app's icon, drawn here (no file, no font, no network): a magnifier over a part."""
    icon = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(icon)
    draw.rounded_rectangle((2, 2, 62, 62), radius=12, fill=(25, 118, 210))
    draw.ellipse((12, 10, 44, 42), outline="white", width=6)
    draw.line((40, 38, 54, 52), fill="white", width=8)
    return icon


def workspace() -> Workspace:
    """The workspace folder (INSPECTOR_WORKSPACE or ~/DefectInspector). Cheap: nothing is cached."""
    return Workspace()


@st.cache_resource(show_spinner=False)
def runner() -> BackgroundRunner:
    """ONE background runner per server process, for trainings, short work and exports: they
    survive reruns, page changes and refreshes, and every session sees the same ones."""
    return BackgroundRunner()


@st.cache_resource(show_spinner="Loading the model...", max_entries=6)
def _predictor(run_dir: str, weights_mtime: float):
    return load_predictor(run_dir)


def predictor(run: RunInfo | str | Path):
    """The run's loaded, shared (read-only) predictor, of its task; reloaded when its weights change."""
    path = Path(run.path if isinstance(run, RunInfo) else run)
    weights = path / "model.safetensors"
    mtime = weights.stat().st_mtime if weights.is_file() else 0.0
    return _predictor(str(path), mtime)


def runs(ws: Workspace) -> list[RunInfo]:
    return RunStore(ws.runs_dir).list_runs()


BEST_HELP = "The best run by its task's main figure is chosen first (validation accuracy, or AUROC)."


def run_label(info: RunInfo) -> str:
    """'name (status, headline)': the headline is the run's task's main figure, e.g. '93%'."""
    headline = create_task(info.task).headline(info.run_summary)
    return f"{info.name} ({info.status}{', ' + headline if headline else ''})"


@contextlib.contextmanager
def user_errors(action: str = "That") -> Iterator[None]:
    """Show a user's mistake as a plain error box; unexpected failures as a short message."""
    try:
        yield
    except InspectorError as exc:
        st.error(str(exc), icon=":material/error:")
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError) as exc:
        log.exception("%s failed", action)
        st.error(f"{action} failed unexpectedly: {exc}. The details are in the app's log.",
                 icon=":material/error:")


def flash(message: str, kind: str = "success") -> None:
    """A message shown once on the next rerun (after st.rerun())."""
    st.session_state.setdefault("_flash", []).append((kind, message))


def show_flashes() -> None:
    for kind, message in st.session_state.pop("_flash", []):
        getattr(st, kind)(message)


def show_work(key: str, running_text: str, show_result, failed_text: str = "It failed") -> None:
    """Draw the latest background work under `key`: progress while it runs, its error, or its result."""
    work = runner().latest(key)
    if work is None:
        return
    if not work.finished:
        st.progress(work.fraction, text=running_text)
    elif work.status == "failed":
        st.error(f"{failed_text}: {work.error}")
    else:
        show_result(work.result)
