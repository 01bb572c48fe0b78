"""`dualcam app` (or `python -m diffsynth_dualcam.app`): the web page on the official weights or the tiny model."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..models.depth_estimator import DEFAULT_DEPTH_MODEL

if TYPE_CHECKING:
    from ..app.generation import PipelineGenerator
    from ..app.ui import AppSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `dualcam app`."""
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    parser.add_argument("--checkpoint-dir", type=Path, default=Path("checkpoints"),
                        help="folder with the DualCamCtrl DiT (default: checkpoints)")
    parser.add_argument("--tiny", action="store_true", help="use the tiny random model even when weights exist")
    parser.add_argument("--depth-model", default=None,
                        help=f"hub id or local folder of the automatic depth model (default {DEFAULT_DEPTH_MODEL}; "
                             "a tiny random one on the tiny model)")
    parser.add_argument("--out", type=Path, default=Path("outputs") / "app",
                        help="where each generation's folder is written (default outputs/app)")
    parser.add_argument("--output-dir", dest="out", type=Path, help=argparse.SUPPRESS)  # the former name of --out
    parser.add_argument("--device", default="auto",
                        help="torch device: cpu, cuda, cuda:1, ... (default auto: cuda when available, else cpu)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the DiT blocks (regional compilation; the first generation compiles)")


def load_generator(args: argparse.Namespace) -> tuple[PipelineGenerator, AppSettings]:
    """The pipeline generator and the page settings for it (a banner and small sizes on the tiny model).

    The DiT is compiled when `args.compile` is set and a CPU process keeps freed memory for reuse
    (``parallel.backend.configure_runtime``); a line on stderr names the device, dtype and attention kernel.
    """
    from ..app.generation import PipelineGenerator
    from ..app.ui import AppSettings
    from ..parallel.backend import configure_runtime
    from ..pipeline.setup import TINY_DEFAULTS, check_device, load_depth_estimator, load_pipeline, tiny_reason

    args.device = check_device(args.device)
    tiny = bool(tiny_reason(args.tiny, args.checkpoint_dir))
    pipe = load_pipeline(tiny, args.device, args.checkpoint_dir)
    if not tiny:
        settings = AppSettings()
    else:
        reason = "--tiny was given" if args.tiny else f"no DualCamCtrl weights in {args.checkpoint_dir}"
        if args.depth_model is None:
            pipe.depth_estimator = load_depth_estimator(None, tiny=True, device=args.device)
        (width, height), frames, steps = TINY_DEFAULTS["size"], TINY_DEFAULTS["frames"], TINY_DEFAULTS["steps"]
        settings = AppSettings(
            height=height, width=width, num_frames=frames, num_inference_steps=steps, cfg_scale=6.0,
            banner=f"Tiny random model ({reason}): the videos are noise. This mode is for trying the page; "
                   "see docs/app.md for the weights.",
        )
    print(configure_runtime(pipe, compile=args.compile), file=sys.stderr)
    return PipelineGenerator(pipe, args.out, depth_model=args.depth_model or DEFAULT_DEPTH_MODEL), settings


def run(args: argparse.Namespace) -> int:
    """Build the page and serve it until interrupted."""
    from ..app.ui import build_app, launch

    generator, settings = load_generator(args)
    print(f"Serving DualCamCtrl on http://{args.host}:{args.port} (outputs in {args.out})")
    launch(build_app(generator, settings), host=args.host, port=args.port, allowed_paths=[str(args.out)])
    return 0

