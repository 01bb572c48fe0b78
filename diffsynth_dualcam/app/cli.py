"""`dualcam app` / `python -m diffsynth_dualcam.app`: serve the web page on the official weights or the tiny model."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..depth import DEFAULT_DEPTH_MODEL

if TYPE_CHECKING:
    from .generation import PipelineGenerator
    from .ui import AppSettings


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
    parser.add_argument("--output-dir", type=Path, default=Path("outputs") / "app",
                        help="where each generation's folder is written (default outputs/app)")
    parser.add_argument("--device", default="auto",
                        help="torch device: cpu, cuda, cuda:1, ... (default auto: cuda when available, else cpu)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the DiT blocks (regional compilation; the first generation compiles)")


def has_weights(checkpoint_dir: Path) -> bool:
    """Whether `checkpoint_dir` holds the DualCamCtrl DiT, converted or as released."""
    from ..checkpoints import DIT_FILE_NAME, OFFICIAL_FILE_NAME

    return (checkpoint_dir / DIT_FILE_NAME).is_file() or (checkpoint_dir / OFFICIAL_FILE_NAME).is_file()


def load_generator(args: argparse.Namespace) -> tuple[PipelineGenerator, AppSettings]:
    """The pipeline generator and the page settings for it (a banner and small sizes on the tiny model).

    The DiT is compiled when `args.compile` is set and a CPU process keeps freed memory for reuse
    (``parallel.backend.configure_runtime``); a line on stderr names the device, dtype and attention kernel.
    """
    import torch

    from ..parallel.backend import configure_runtime
    from ..pipeline import DualCamCtrlPipeline
    from ..pipeline.cli import check_device
    from ..testing import tiny_depth_estimator, tiny_pipeline
    from .generation import PipelineGenerator
    from .ui import AppSettings

    args.device = check_device(args.device)
    if not args.tiny and has_weights(args.checkpoint_dir):
        dtype = torch.bfloat16 if str(args.device).startswith("cuda") else torch.float32
        pipe = DualCamCtrlPipeline.from_pretrained(checkpoint_dir=args.checkpoint_dir, device=args.device,
                                                   torch_dtype=dtype)
        settings = AppSettings()
    else:
        reason = "--tiny was given" if args.tiny else f"no DualCamCtrl weights in {args.checkpoint_dir}"
        pipe = tiny_pipeline(device=args.device)
        if args.depth_model is None:
            pipe.depth_estimator = tiny_depth_estimator(device=args.device)
        settings = AppSettings(
            height=64, width=96, num_frames=9, num_inference_steps=3, cfg_scale=6.0,
            banner=f"Tiny random model ({reason}): the videos are noise. This mode is for trying the page; "
                   "see docs/app.md for the weights.",
        )
    print(configure_runtime(pipe, compile=args.compile), file=sys.stderr)
    return PipelineGenerator(pipe, args.output_dir, depth_model=args.depth_model or DEFAULT_DEPTH_MODEL), settings


def run(args: argparse.Namespace) -> int:
    """Build the page and serve it until interrupted."""
    from .ui import build_app, launch

    generator, settings = load_generator(args)
    print(f"Serving DualCamCtrl on http://{args.host}:{args.port} (outputs in {args.output_dir})")
    launch(build_app(generator, settings), host=args.host, port=args.port, allowed_paths=[str(args.output_dir)])
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m diffsynth_dualcam.app`."""
    parser = argparse.ArgumentParser(prog="python -m diffsynth_dualcam.app", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
