"""`dualcam convert-checkpoint`: the official DualCamCtrl ``.pt`` as safetensors (``models.checkpoints``)."""
from __future__ import annotations

import argparse

from ..models.checkpoints import DIT_FILE_NAME, OFFICIAL_FILE_NAME


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dualcam convert-checkpoint``."""
    parser.add_argument("input", help=f"the official {OFFICIAL_FILE_NAME} (or another training-module .pt)")
    parser.add_argument("out_dir", help=f"folder for {DIT_FILE_NAME} and the other components' safetensors")


def run(args: argparse.Namespace) -> int:
    """Convert a checkpoint and print where each component went."""
    from ..models.checkpoints import convert_official_checkpoint

    for component, path in convert_official_checkpoint(args.input, args.out_dir).items():
        print(f"{component}: {path}")
    return 0
