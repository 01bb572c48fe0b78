"""What every example shares: loading the pipeline (official weights, or tiny random models for a quick check)
and the sampling size that goes with it. Run the examples from the repository root: ``python examples/NAME.py``.
Without the official DualCamCtrl weights in ``checkpoints/`` an example runs on the tiny models, with the notice
``dualcam generate`` prints."""
from __future__ import annotations

import argparse
from pathlib import Path

from diffsynth_dualcam.pipeline import DualCamCtrlPipeline, setup
from diffsynth_dualcam.pipeline.setup import TINY_DEFAULTS

REPO_ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_DIR = REPO_ROOT / "checkpoints"
DEMO_DIR = REPO_ROOT / "demo_assets"
OUTPUT_DIR = REPO_ROOT / "outputs" / "examples"
#: Sampling settings of the published demo, and a CPU-sized version for the tiny models.
OFFICIAL_SIZE = {"height": 320, "width": 480, "num_frames": 61, "num_inference_steps": 50}
TINY_SIZE = {"height": TINY_DEFAULTS["size"][1], "width": TINY_DEFAULTS["size"][0],
             "num_frames": TINY_DEFAULTS["frames"], "num_inference_steps": TINY_DEFAULTS["steps"]}


def argument_parser(description: str) -> argparse.ArgumentParser:
    """The options every example takes: ``--tiny`` (tiny random models: seconds on a CPU, noise-like output) and
    ``--out`` (the folder that receives the example's output folder)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--tiny", action="store_true", help="tiny random models instead of the official weights")
    parser.add_argument("--out", type=Path, default=OUTPUT_DIR, help=f"output folder (default {OUTPUT_DIR})")
    return parser


def parse_args(description: str) -> argparse.Namespace:
    """The command line of an example with only the common options."""
    return argument_parser(description).parse_args()


def use_tiny(tiny: bool) -> bool:
    """Whether to run the tiny models: with ``--tiny``, or when the official DiT is not in ``CHECKPOINT_DIR``
    (then with ``dualcam generate``'s notice, before anything is loaded or downloaded)."""
    reason = setup.tiny_reason(tiny, CHECKPOINT_DIR)
    if reason:
        setup.print_tiny_notice(reason, CHECKPOINT_DIR)
    return bool(reason)


def load_pipeline(tiny: bool) -> tuple[DualCamCtrlPipeline, dict[str, int]]:
    """The official pipeline (DiT from checkpoints/, base models from PAI/Wan2.1-Fun-V1.1-1.3B-Control-Camera)
    on the GPU in bfloat16 (``pipeline.setup``), or the tiny one (see ``use_tiny``); with the matching sampling size."""
    if use_tiny(tiny):
        return setup.load_pipeline(tiny=True), TINY_SIZE
    device = setup.check_device("auto")
    return setup.load_pipeline(tiny=False, device=device, checkpoint_dir=CHECKPOINT_DIR), OFFICIAL_SIZE
