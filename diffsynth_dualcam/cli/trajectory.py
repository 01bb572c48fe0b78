"""`dualcam trajectory {show,convert,preset}`: inspect, convert and create camera trajectories."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.spatial.transform import Rotation

from ..camera.formats import FORMATS
from ..camera.presets import DEFAULT_FX, DEFAULT_SOURCE_SIZE, PRESETS, make_preset
from ..camera.trajectory import CameraTrajectory
from ..export.export3d import DEFAULT_FAR, DEFAULT_NEAR
from . import parse_size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the show / convert / preset actions."""
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    show = actions.add_parser("show", help="print a summary of a trajectory and plot its frusta to a PNG")
    show.add_argument("path", type=Path, help="trajectory file or COLMAP model directory")
    show.add_argument("--format", choices=FORMATS, help="input format (default: detected from the content)")
    show.add_argument("--plot", type=Path, help="PNG to write (default: <input name>_trajectory.png beside the input)")
    _add_scene_arguments(show, "the plot")

    convert = actions.add_parser("convert", help="convert between trajectory formats")
    convert.add_argument("input", type=Path, help="trajectory file or COLMAP model directory")
    convert.add_argument("output", type=Path, help="output path; its name picks the format unless --to is given")
    convert.add_argument("--from", dest="input_format", choices=FORMATS, help="input format (default: detected)")
    convert.add_argument("--to", dest="output_format", choices=FORMATS, help="output format (default: from the name)")
    convert.add_argument("--source-size", type=parse_size, metavar="WxH",
                         help="image size the intrinsics describe, replacing the file's (colmap and nerf output "
                              "need one)")
    convert.add_argument("--num-frames", type=int, help="resample to this many frames")
    convert.add_argument("--relative", action="store_true", help="make the first frame the identity pose")
    convert.add_argument("--scale", type=float, help="multiply camera positions by this factor")

    preset = actions.add_parser("preset", help="write a preset camera move (and its plot)")
    preset.add_argument("name", nargs="?", help="preset name; join names with + for simultaneous moves, "
                                                "e.g. dolly_in+pan_left (see --list)")
    preset.add_argument("-o", "--output", type=Path, help="output file (default: <name>.json)")
    preset.add_argument("--num-frames", type=int, default=61, help="number of frames (default 61)")
    preset.add_argument("--speed", type=float, default=1.0, help="motion per frame relative to the default")
    preset.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a preset parameter, e.g. distance=2 (repeatable; see --list)")
    preset.add_argument("--fx", type=float, default=DEFAULT_FX, help=f"normalised focal length (default {DEFAULT_FX})")
    preset.add_argument("--source-size", type=parse_size, default=DEFAULT_SOURCE_SIZE, metavar="WxH",
                        help="image size of the intrinsics (default {}x{})".format(*DEFAULT_SOURCE_SIZE))
    preset.add_argument("--no-plot", action="store_true", help="do not write <output>.png")
    preset.add_argument("--list", action="store_true", help="list presets with their parameters and exit")
    _add_scene_arguments(preset, "the trajectory file")


def _add_scene_arguments(parser: argparse.ArgumentParser, beside: str) -> None:
    """Options of the 3D preview scene (``diffsynth_dualcam.export.preview``)."""
    scene = parser.add_argument_group("3D preview (a .glb scene of the cameras in the first frame's point cloud)")
    scene.add_argument("--image", type=Path,
                       help=f"first frame: also write a .glb scene beside {beside} (cameras, path, and with a depth "
                            "map the frame lifted into a point cloud)")
    scene.add_argument("--depth", type=Path, help="8-bit grayscale disparity map of --image, near = bright")
    scene.add_argument("--depth-model", help="Depth Anything model (hub id or local folder) that estimates the depth "
                                             "map when --depth is not given (default: no point cloud)")
    scene.add_argument("--near", type=float, default=DEFAULT_NEAR,
                       help=f"distance of disparity 1, as export-3d (default {DEFAULT_NEAR:g})")
    scene.add_argument("--far", type=float, default=DEFAULT_FAR,
                       help=f"distance of disparity 0, as export-3d (default {DEFAULT_FAR:g})")


def run(args: argparse.Namespace) -> int:
    """Run the chosen action; returns the exit code."""
    return {"show": _show, "convert": _convert, "preset": _preset}[args.action](args)


def describe(trajectory: CameraTrajectory) -> str:
    """Multi-line human summary: frames, size, intrinsics range, motion per frame and in total."""
    relative = trajectory.relative()
    steps = np.linalg.inv(relative.c2w[:-1]) @ relative.c2w[1:]
    step_lengths = np.linalg.norm(steps[:, :3, 3], axis=1) if len(steps) else np.zeros(1)
    step_turns = np.degrees(Rotation.from_matrix(steps[:, :3, :3]).magnitude()) if len(steps) else np.zeros(1)
    final = relative.c2w[-1]
    size = "unknown" if trajectory.source_size is None else "{}x{}".format(*trajectory.source_size)
    low, high = trajectory.intrinsics.min(axis=0), trajectory.intrinsics.max(axis=0)
    lines = [
        f"frames:            {len(trajectory)}",
        f"source size:       {size}",
        "intrinsics:        " + ", ".join(f"{name} {lo:.4g}..{hi:.4g}" for name, lo, hi in zip("fx fy cx cy".split(),
                                                                                               low, high)),
        f"step per frame:    mean {step_lengths.mean():.4g}, max {step_lengths.max():.4g} (scene units)",
        f"turn per frame:    mean {step_turns.mean():.3f} deg, max {step_turns.max():.3f} deg",
        "last frame centre: ({:.4g}, {:.4g}, {:.4g}) in first-frame camera axes (x right, y down, z forward)".format(
            *final[:3, 3]),
        "last view axis:    ({:.3f}, {:.3f}, {:.3f})".format(*final[:3, 2]),
    ]
    return "\n".join(lines)


def _show(args: argparse.Namespace) -> int:
    trajectory = CameraTrajectory.load(args.path, args.format)
    scene_inputs = _scene_inputs(args, trajectory)
    print(describe(trajectory))
    source = args.path.resolve()
    plot_path = args.plot or source.parent / f"{source.stem if source.is_file() else source.name}_trajectory.png"
    print(f"plot: {trajectory.plot(plot_path).resolve()}")
    _write_scene(args, scene_inputs, plot_path.with_suffix(".glb"))
    return 0


def _scene_inputs(args: argparse.Namespace, trajectory: CameraTrajectory) -> tuple | None:
    """(trajectory, image, depth) of the 3D preview, checked before anything is written; None without --image."""
    if args.image is None:
        for option in ("depth", "depth_model"):
            if getattr(args, option) is not None:
                raise ValueError(f"--{option.replace('_', '-')} belongs to the 3D preview: give --image too")
        return None
    from ..export.export3d import check_lift_options
    from ..export.preview import load_scene_inputs

    check_lift_options(1, 1, args.near, args.far, None)
    estimate_depth = None
    if args.depth_model is not None:
        def estimate_depth(image: Image.Image) -> Image.Image:
            from ..pipeline.setup import load_depth_estimator

            return load_depth_estimator(
                args.depth_model, tiny=False, why="--depth-model: ",
                remedy="pass --depth (an 8-bit grayscale disparity map of the image, near = bright) or a local copy "
                       "of the model",
            )(image)
    return load_scene_inputs(trajectory, args.image, args.depth, estimate_depth)


def _write_scene(args: argparse.Namespace, scene_inputs: tuple | None, path: Path) -> None:
    """Write the 3D preview to ``path`` and print its path and the camera path's scale."""
    if scene_inputs is None:
        return
    from ..export.preview import write_preview

    trajectory, image, depth = scene_inputs
    scale = write_preview(path, trajectory, image, depth, near=args.near, far=args.far)
    print(f"scene: {path.resolve()}")
    print(f"scale: the camera {scale.message()}")
    if depth is None:
        print("notice: no --depth (or --depth-model): the scene holds the cameras and their path only",
              file=sys.stderr)
    if scale.warning() is not None:
        print(f"warning: {scale.warning()}", file=sys.stderr)


def _convert(args: argparse.Namespace) -> int:
    trajectory = CameraTrajectory.load(args.input, args.input_format)
    if args.source_size is not None:
        trajectory = CameraTrajectory(trajectory.c2w, trajectory.intrinsics, args.source_size)
    if args.relative:
        trajectory = trajectory.relative()
    if args.scale is not None:
        trajectory = trajectory.scaled(args.scale)
    if args.num_frames is not None:
        trajectory = trajectory.resampled(args.num_frames)
    print(f"wrote {len(trajectory)} frames to {trajectory.save(args.output, args.output_format)}")
    return 0


def _preset(args: argparse.Namespace) -> int:
    if args.list:
        for name in sorted(PRESETS):
            params = ", ".join(f"{key}={value}" for key, value in PRESETS[name].parameters().items())
            print(f"{name:14s} {PRESETS[name].description}" + (f" [{params}]" if params else ""))
        print("In brackets: each preset's own parameters and their defaults, set with --param KEY=VALUE. Every preset "
              "also takes --num-frames, --speed, --fx and --source-size (see --help).")
        return 0
    if not args.name:
        raise ValueError("give a preset name (or --list to see them)")
    params = parse_params(args.param)
    names = args.name.split("+")
    unused = set(params) - {key for name in names if name in PRESETS for key in PRESETS[name].parameters()}
    if unused:
        raise ValueError(f"no preset among {', '.join(names)} takes parameter(s) {', '.join(sorted(unused))}; "
                         "see --list")
    trajectory = None
    for name in names:
        own = {key: value for key, value in params.items() if name in PRESETS and key in PRESETS[name].parameters()}
        move = make_preset(name, args.num_frames, args.speed, fx=args.fx, source_size=args.source_size, **own)
        trajectory = move if trajectory is None else trajectory.compose(move)
    scene_inputs = _scene_inputs(args, trajectory)
    output = args.output or Path(f"{args.name.replace('+', '_')}.json")
    print(f"trajectory: {trajectory.save(output)}")
    if not args.no_plot:
        print(f"plot: {trajectory.plot(output.with_suffix('.png'), title=f'{args.name}, {len(trajectory)} frames')}")
    _write_scene(args, scene_inputs, output.with_suffix(".glb"))
    return 0


def parse_params(items: list[str]) -> dict[str, float]:
    """``["distance=2", "step=0.02"]`` -> {"distance": 2.0, "step": 0.02}."""
    params = {}
    for item in items:
        key, separator, value = item.partition("=")
        try:
            if not separator or not key:
                raise ValueError
            params[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--param expects KEY=NUMBER such as distance=2, got {item!r}") from None
    return params
