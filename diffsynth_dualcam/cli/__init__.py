"""`dualcam` command line: one sub-command per part of the project.

Each entry of ``COMMANDS`` names a module that defines ``add_arguments(parser)`` and ``run(args) -> int``. Only the
module of the command given is imported, and those modules import torch, DiffSynth and the like inside ``run``, so
that ``--help`` and argument errors answer at once.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable

COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("diffsynth_dualcam.cli.generate", "Generate a camera-controlled video and its depth video"),
    "convert-checkpoint": ("diffsynth_dualcam.cli.convert_checkpoint",
                           "Convert the official DualCamCtrl .pt to safetensors"),
    "trajectory": ("diffsynth_dualcam.cli.trajectory", "Show, convert and create camera trajectories (presets, plots)"),
    "export-3d": ("diffsynth_dualcam.cli.export3d", "A generated run as a point cloud, COLMAP model or 3D Gaussians"),
    "app": ("diffsynth_dualcam.cli.app", "Serve the web app (official weights, or the tiny model when none)"),
    "eval": ("diffsynth_dualcam.cli.eval", "Camera accuracy (RotErr, TransErr, CamMC) of videos against trajectories"),
    "train": ("diffsynth_dualcam.cli.train", "Train one stage (decoupled or fusion) from a YAML/JSON config"),
    "check-dataset": ("diffsynth_dualcam.cli.check_dataset", "Validate a training dataset folder clip by clip"),
    "prepare-data": ("diffsynth_dualcam.cli.prepare_data",
                     "Write missing depth videos and merge captions of a dataset"),
}


def parse_size(text: str) -> tuple[int, int]:
    """``"720x480"`` (WIDTHxHEIGHT) -> (720, 480)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 720x480, got {text!r}") from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"width and height must be positive, got {text!r}")
    return width, height


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The top-level parser listing every sub-command, with the arguments of ``commands`` (default: all of them;
    each one's module is imported)."""
    parser = argparse.ArgumentParser(prog="dualcam", description="DualCamCtrl: camera-controlled RGB + depth video.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    with_arguments = set(COMMANDS if commands is None else commands)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name in with_arguments:
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `dualcam` console script; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # The first word that is not an option names the command: only its module is needed to parse the rest.
    command = next((word for word in argv if not word.startswith("-")), None)
    parser = build_parser([command] if command in COMMANDS else [])
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        print(f"dualcam {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the file system refused (a full disk, permissions): the cause, not a traceback
        print(f"dualcam {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
