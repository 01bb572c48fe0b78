"""Names of the DualCamCtrl checkpoint files, where the official DiT is looked for, and `dualcam convert-checkpoint`.

Nothing here imports torch, so that the command line finds the files and checks its arguments at once; the
conversion itself is in :mod:`diffsynth_dualcam.checkpoints`.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

DIT_FILE_NAME = "dualcamctrl_dit.safetensors"
OFFICIAL_FILE_NAME = "dualcamctrl_diffusion_transformer.pt"
OFFICIAL_REPO_ID = "FayeHongfeiZhang/DualCamCtrl"


def local_official_dit(checkpoint_dir: str | os.PathLike = "checkpoints") -> Path | None:
    """The official DiT in ``checkpoint_dir`` (converted safetensors, else the released ``.pt``), or None."""
    for name in (DIT_FILE_NAME, OFFICIAL_FILE_NAME):
        if (Path(checkpoint_dir) / name).is_file():
            return Path(checkpoint_dir) / name
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dualcam convert-checkpoint``."""
    parser.add_argument("input", help=f"the official {OFFICIAL_FILE_NAME} (or another training-module .pt)")
    parser.add_argument("out_dir", help=f"folder for {DIT_FILE_NAME} and the other components' safetensors")


def run(args: argparse.Namespace) -> int:
    """Convert a checkpoint and print where each component went."""
    from .checkpoints import convert_official_checkpoint

    for component, path in convert_official_checkpoint(args.input, args.out_dir).items():
        print(f"{component}: {path}")
    return 0
