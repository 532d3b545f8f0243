#!/usr/bin/env python3
"""Predict with this exported Defect Inspector model; needs onnxruntime (or openvino), numpy, pillow.

    python predict.py IMAGE_OR_FOLDER... [--json] [--ok-classes ok] [--threshold 0.5]   (classifier)
    python predict.py IMAGE_OR_FOLDER... [--json] [--target-frr 0.05]                   (anomaly model)

From Python, with this folder on sys.path:

    import predict
    bundle = predict.load_bundle()                            # this folder's model
    rows = predict.predict(bundle, ["part.png", rgb_array])   # one dict per image, as --json gives

The code is the package inspector_runtime/ beside this file (a copy of inspector/runtime/). It is
loaded on first use, under a module name of its own for every import of this file, so two bundles
used in one process never share a cached copy of each other's code.
"""
# `inspector export` copies this file (inspector/deploy/predict_entry.py) unchanged as predict.py.
import importlib.util
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _load_runtime():
    package = HERE / "inspector_runtime"
    name = f"inspector_runtime_{uuid.uuid4().hex}"
    if not (package / "__init__.py").is_file():
        raise ImportError(f"{package} is missing: copy the whole bundle folder.")
    spec = importlib.util.spec_from_file_location(name, package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its modules import each other relatively, by this name
    spec.loader.exec_module(module)
    return module


_NAMES = ("Bundle", "ImageLoadError", "InspectorError", "collect_images", "load_image", "predict", "predict_paths",
          "to_rgb_array")
_loaded = []


def runtime():
    """This bundle's inspector_runtime package (documented in its __init__.py)."""
    if not _loaded:
        _loaded.append(_load_runtime())
    return _loaded[0]


def __getattr__(name):  # predict.Bundle, predict.predict, ...: the runtime's own objects
    if name in _NAMES:
        return getattr(runtime(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_bundle(folder=HERE, threads=None, target_frr=None):
    """This folder's model (or another bundle's): a Bundle, see inspector_runtime/bundle.py."""
    return runtime().load_bundle(folder, threads, target_frr)


def main(argv=None):
    return runtime().main(argv, folder=HERE)


if __name__ == "__main__":
    sys.exit(main())
