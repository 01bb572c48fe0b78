"""What every example shares: loading the pipeline (official weights, or tiny random models for a quick check)
and the sampling size that goes with it. Run the examples from the repository root: ``python examples/NAME.py``.
Without the official DualCamCtrl weights in ``checkpoints/`` an example runs on the tiny models, with the notice
``dualcam generate`` prints."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from diffsynth_dualcam.checkpoint_files import local_official_dit
from diffsynth_dualcam.pipeline import DualCamCtrlPipeline
from diffsynth_dualcam.pipeline.cli import TINY_NOTICE
from diffsynth_dualcam.testing import tiny_pipeline

REPO_ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_DIR = REPO_ROOT / "checkpoints"
DEMO_DIR = REPO_ROOT / "demo_assets"
OUTPUT_DIR = REPO_ROOT / "outputs" / "examples"
#: Sampling settings of the published demo, and a CPU-sized version for the tiny models.
OFFICIAL_SIZE = {"height": 320, "width": 480, "num_frames": 61, "num_inference_steps": 50}
TINY_SIZE = {"height": 64, "width": 96, "num_frames": 9, "num_inference_steps": 3}


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
    if tiny:
        reason = "--tiny was given."
    elif local_official_dit(CHECKPOINT_DIR) is None:
        reason = f"the official DualCamCtrl weights were not found in {CHECKPOINT_DIR}/."
    else:
        return False
    print(TINY_NOTICE.format(reason=reason, checkpoint_dir=CHECKPOINT_DIR), file=sys.stderr)
    return True


def load_pipeline(tiny: bool) -> tuple[DualCamCtrlPipeline, dict[str, int]]:
    """The official pipeline (DiT from checkpoints/, base models from PAI/Wan2.1-Fun-V1.1-1.3B-Control-Camera)
    on the GPU in bfloat16, or the tiny one (see ``use_tiny``); with the matching sampling size."""
    if use_tiny(tiny):
        return tiny_pipeline(), TINY_SIZE
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_dtype = torch.bfloat16 if device == "cuda" else torch.float32
    pipe = DualCamCtrlPipeline.from_pretrained(device=device, torch_dtype=torch_dtype, checkpoint_dir=CHECKPOINT_DIR)
    return pipe, OFFICIAL_SIZE
