"""Process-wide resources (the background runner, loaded Predictors) and small page helpers."""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import streamlit as st
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
    """Page config and the sidebar menu (Streamlit's own menu would call the home page "app")."""
    st.set_page_config(page_title=f"{title} · Defect Inspector", page_icon=icon, layout="wide")
    with st.sidebar:
        st.markdown("### Defect Inspector")
        for path, label, page_icon in NAVIGATION:
            try:
                st.page_link(path, label=label, icon=page_icon)
            except StreamlitAPIException:  # a page run on its own (AppTest) has no menu
                break


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
