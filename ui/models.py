"""Predictions and heatmaps for the pages, cached per (run weights, image content)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import streamlit as st

from inspector import Prediction, RunInfo, overlay_heatmap
from inspector.data import load_image, to_rgb_array

from .state import predictor


def _key(run: RunInfo) -> tuple[str, float]:
    weights = Path(run.path) / "model.safetensors"
    return str(run.path), weights.stat().st_mtime if weights.is_file() else 0.0


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@st.cache_data(show_spinner=False, max_entries=5000)
def _predict(run_dir: str, mtime: float, sha: str, _data: bytes) -> dict:
    return predictor(run_dir).predict(_data).to_dict() | {"classes": predictor(run_dir).classes}


def predict(run: RunInfo, data: bytes) -> Prediction:
    result = _predict(*_key(run), digest(data), data)
    probs = result["probabilities"]
    return Prediction(result["label"], result["classes"].index(result["label"]), probs)


@st.cache_data(show_spinner=False, max_entries=300)
def _overlay(run_dir: str, mtime: float, sha: str, _data: bytes) -> np.ndarray:
    image = to_rgb_array(load_image(_data))
    return overlay_heatmap(image, predictor(run_dir).heatmap(image))


def heatmap_overlay(run: RunInfo, data: bytes) -> np.ndarray:
    """The image with the model's Grad-CAM heatmap (for its predicted class) blended over it."""
    return _overlay(*_key(run), digest(data), data)


@st.cache_data(show_spinner=False, max_entries=5000)
def _anomaly(run_dir: str, mtime: float, target_frr: float, sha: str, _data: bytes) -> dict:
    return predictor(run_dir).with_target_frr(target_frr).predict(_data).to_dict()


def anomaly_score(run: RunInfo, data: bytes, target_frr: float) -> dict:
    """score (0.5 = threshold), raw_score and verdict of an anomaly run at a false-reject target."""
    return _anomaly(*_key(run), target_frr, digest(data), data)


@st.cache_data(show_spinner=False, max_entries=300)
def _anomaly_overlay(run_dir: str, mtime: float, target_frr: float, sha: str, _data: bytes) -> np.ndarray:
    image = to_rgb_array(load_image(_data))
    return overlay_heatmap(image, predictor(run_dir).with_target_frr(target_frr).heatmap(image))


def anomaly_overlay(run: RunInfo, data: bytes, target_frr: float) -> np.ndarray:
    """The image with its anomaly map blended over it (red where it passes the threshold)."""
    return _anomaly_overlay(*_key(run), target_frr, digest(data), data)
