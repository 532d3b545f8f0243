"""`inspector serve RUN`: a small REST service (FastAPI + uvicorn) for the line's software."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from ..cli import class_list


def add_parser(sub: argparse._SubParsersAction, common: dict) -> None:
    p = sub.add_parser("serve", help="serve a run over HTTP: POST /predict, GET /health, GET /model, docs at /docs")
    p.add_argument("run_dir", help="a run folder (see 'inspector runs')")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s, this computer only; 0.0.0.0 for the network)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None,
                   help="require this key in the X-API-Key header (default: $INSPECTOR_API_KEY, else no key)")
    p.add_argument("--ok-classes", default=None,
                   help="classifiers: comma-separated classes that count as OK: adds a verdict")
    p.add_argument("--threshold", type=float, default=None,
                   help="classifiers: NG when P(defect) >= this (default: 0.5; anomaly runs: see --target-frr)")
    p.add_argument("--target-frr", type=float, default=None,
                   help="anomaly runs: move the threshold to this false-reject rate (default: as trained)")
    p.add_argument("--max-files", type=int, default=32, help="images per request at most (default: %(default)s)")
    p.add_argument("--max-mb", type=float, default=20.0, help="size of one image file at most, MB (default: %(default)s)")
    p.add_argument("--runtime", default="pytorch", choices=["pytorch", "onnx", "openvino"],
                   help="answer with PyTorch (default), or export the run first (parity checked, as 'inspector "
                        "export') and answer with ONNX Runtime or OpenVINO: faster on CPUs")
    p.add_argument("--device", **common["device"])
    p.add_argument("--max-megapixels", **common["max_megapixels"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from ..deploy.service import ServiceConfig, create_app, serve

    config = ServiceConfig(api_key=args.api_key or os.environ.get("INSPECTOR_API_KEY") or None,
                           ok_classes=class_list(args.ok_classes) or (),
                           threshold=args.threshold, target_frr=args.target_frr, max_files=args.max_files,
                           max_file_bytes=int(args.max_mb * 1024 * 1024))
    key = "an API key (X-API-Key)" if config.api_key else "no API key"
    if args.runtime == "pytorch":
        app = create_app(args.run_dir, config, device=args.device)
        print(f"Serving {args.run_dir} on http://{args.host}:{args.port} with {key}; docs at /docs", file=sys.stderr)
        serve(app, args.host, args.port)
        return
    from ..deploy.bundle import export_bundle
    from ..deploy.runtime import BundlePredictor

    with tempfile.TemporaryDirectory(prefix="inspector-serve-") as scratch:  # the bundle lives while the service does
        print(f"exporting {args.run_dir} for {args.runtime} (with the parity check)", file=sys.stderr)
        exported = export_bundle(args.run_dir, Path(scratch) / "bundle", args.runtime)
        print(f"parity: {exported.parity.summary()}", file=sys.stderr)
        app = create_app(args.run_dir, config, predictor=BundlePredictor(exported.path, Path(args.run_dir)))
        print(f"Serving {args.run_dir} with {args.runtime} on http://{args.host}:{args.port} with {key}; docs at /docs",
              file=sys.stderr)
        serve(app, args.host, args.port)
