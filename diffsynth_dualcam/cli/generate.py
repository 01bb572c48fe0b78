"""`dualcam generate`: one camera-controlled clip (RGB + depth) from an image, its depth map and a camera path, or a
chain of clips along a path longer than one clip (``diffsynth_dualcam.world``)."""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageOps, UnidentifiedImageError

from .. import limits
from ..camera import CameraTrajectory
from ..models.depth_estimator import DEFAULT_DEPTH_MODEL
from ..pipeline.inputs import (
    EIGHT_BIT_MODES,
    check_frame_count,
    check_num_frames,
    check_same_aspect,
    check_seed,
    check_size,
    prepare_depth,
    prepare_image,
    prepare_trajectory,
    within_limit,
)
from ..pipeline.output import check_out_dir_files
from ..pipeline.setup import CLIP_FRAMES, OFFICIAL_DEFAULTS, TINY_DEFAULTS, check_device, tiny_reason
from . import parse_size

if TYPE_CHECKING:  # torch and DiffSynth load only once the arguments are checked, so that errors come at once
    from ..models.depth_estimator import DepthEstimator
    from ..pipeline.dualcam import DualCamCtrlPipeline
    from ..pipeline.output import DualCamCtrlOutput


@dataclasses.dataclass
class GenerationSetup:
    """Resolved settings of one ``dualcam generate`` call."""

    tiny: bool
    reason: str
    size: tuple[int, int]
    frames: int
    steps: int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dualcam generate``."""
    inputs = parser.add_argument_group("inputs")
    inputs.add_argument("--image", type=Path, help="first frame (image-to-video)")
    inputs.add_argument("--depth", type=Path,
                        help="8-bit grayscale disparity map of the first frame, near = bright (default: estimated "
                             "with --depth-model)")
    inputs.add_argument("--t2v", action="store_true", help="text-to-video: no --image / --depth")
    camera = inputs.add_mutually_exclusive_group()
    camera.add_argument("--trajectory", type=Path,
                        help="camera path: any format `dualcam trajectory show` reads (json, RealEstate10K .txt, "
                             "demo .torch, COLMAP model folder, transforms.json); this or --preset is required")
    camera.add_argument("--preset", choices=CameraTrajectory.preset_names(),
                        help="a named camera move (combine moves with `dualcam trajectory preset a+b`)")
    inputs.add_argument("--batch-file", type=Path,
                        help="many clips, one JSON object per line (see diffsynth_dualcam.cli.batch); under "
                             "torchrun each process generates its share; other options are defaults for every clip "
                             "(--trajectory / --preset: the camera of the clips that give none)")
    inputs.add_argument("--resample-camera", action="store_true",
                        help="stretch the whole --trajectory over --frames (default: follow the recorded path frame "
                             "by frame, its first --frames cameras; a shorter path is refused)")
    inputs.add_argument("--speed", type=float, default=1.0, help="motion per frame of --preset (default 1.0)")
    inputs.add_argument("--source-size", type=parse_size, metavar="WxH",
                        help="image size the trajectory's intrinsics describe, if its file does not say "
                             "(default: the --image size)")
    inputs.add_argument("--prompt", default="", help="text prompt")
    inputs.add_argument("--negative-prompt", default="", help="negative prompt")

    sampling = parser.add_argument_group("sampling")
    official, tiny = OFFICIAL_DEFAULTS, TINY_DEFAULTS
    official_size, tiny_size = ("{}x{}".format(*defaults["size"]) for defaults in (official, tiny))
    sampling.add_argument("--size", type=parse_size, metavar="WxH",
                          help=f"output size, multiples of 16 (default {official_size}; tiny model {tiny_size})")
    sampling.add_argument("--frames", type=int,
                          help=f"frames, 4k+1 (default {official['frames']}; tiny model {tiny['frames']})")
    sampling.add_argument("--chunk-frames", type=int, default=CLIP_FRAMES,
                          help="clip length, 4k+1: --frames beyond it are generated as clips sharing one frame, "
                               f"over a world cache saved as world.ply (default {CLIP_FRAMES})")
    sampling.add_argument("--steps", type=int,
                          help=f"denoising steps (default {official['steps']}; tiny model {tiny['steps']})")
    sampling.add_argument("--cfg", type=float, default=6.0, help="guidance scale (default 6.0, the published look)")
    sampling.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    sampling.add_argument("--step-cache", type=float, metavar="THRESHOLD",
                          help="skip DiT steps whose input changed less than THRESHOLD since the last computed one "
                               "(TeaCache-style; 0.1-0.3 trades quality for speed; default: compute every step)")
    sampling.add_argument("--fps", type=int, default=16, help="frame rate of the written videos (default 16)")
    sampling.add_argument("--out", type=Path, default=Path("outputs/generate"),
                          help="output folder (default outputs/generate)")
    sampling.add_argument("--preview-only", action="store_true",
                          help="check the inputs and prepare the camera as a generation would, write preview.glb "
                               "(the cameras in the first frame's point cloud) and preview.png into --out, and stop "
                               "before the generation models load (without --depth the depth model still estimates "
                               "one)")

    models = parser.add_argument_group("models")
    models.add_argument("--tiny", action="store_true", help="use tiny random models (a quick check, no weights)")
    models.add_argument("--checkpoint", type=Path,
                        help="DiT safetensors (default: the official one in --checkpoint-dir)")
    models.add_argument("--checkpoint-dir", type=Path, default=Path("checkpoints"),
                        help="folder with the official DiT (default checkpoints/)")
    models.add_argument("--depth-model",
                        help=f"Depth Anything model (hub id or local folder) that estimates the first frame's depth "
                             f"when --image comes without --depth (default {DEFAULT_DEPTH_MODEL}; a tiny random "
                             "one on the tiny model)")
    models.add_argument("--device", default="auto",
                        help="computation device: cpu, cuda, cuda:1, mps, ... (default auto: cuda if available, "
                             "else cpu)")
    models.add_argument("--offload", action="store_true",
                        help="keep models in CPU memory and move each to the device only while it runs (low VRAM)")
    models.add_argument("--compile", action="store_true",
                        help="torch.compile the DiT blocks (regional compilation; the first step compiles)")
    models.add_argument("--sequence-parallel", action="store_true",
                        help="split each clip's frames over the torchrun processes, one per GPU "
                             "(torchrun --nproc_per_node N -m diffsynth_dualcam generate ...)")


def resolve_setup(args: argparse.Namespace) -> GenerationSetup:
    """Check the values, then pick the model (official, given checkpoint or tiny), fill in size, frames and steps
    and resolve ``--device``."""
    check_checkpoint(args)
    check_values(args)
    reason = tiny_reason(args.tiny, args.checkpoint_dir, args.checkpoint)
    tiny = bool(reason)
    defaults = TINY_DEFAULTS if tiny else OFFICIAL_DEFAULTS
    setup = GenerationSetup(
        tiny=tiny, reason=reason, size=args.size or defaults["size"],
        frames=args.frames if args.frames is not None else defaults["frames"],
        steps=args.steps if args.steps is not None else defaults["steps"],
    )
    setup_frames = min(setup.frames, args.chunk_frames)  # a chain is generated one clip at a time
    try:
        limits.check_clip(*setup.size, setup_frames)
    except ValueError as error:
        raise ValueError(f"--size / --frames / --chunk-frames: {error}") from None
    args.device = check_device(args.device)
    return setup


def check_values(args: argparse.Namespace) -> None:
    """A ValueError naming the option for any value given that cannot work (checked without loading torch)."""
    if args.size is not None:
        try:
            width, height = args.size
            check_size(width=width, height=height)
        except ValueError as error:
            raise ValueError(f"--size: {error}") from None
    if args.frames is not None:
        try:
            check_num_frames(args.frames)
        except ValueError as error:
            raise ValueError(f"--frames: {error}") from None
    check_frame_count("--chunk-frames", args.chunk_frames, minimum=5)
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    if args.steps is not None:
        within_limit("--steps", args.steps, limits.check_steps)
    within_limit("--cfg", args.cfg, limits.check_cfg)
    try:
        check_seed(args.seed)
    except ValueError as error:
        raise ValueError(f"--seed: {error}") from None
    if args.fps < 1:
        raise ValueError(f"--fps must be at least 1, got {args.fps}")
    if args.step_cache is not None and not (math.isfinite(args.step_cache) and args.step_cache >= 0):
        raise ValueError(f"--step-cache must be a threshold >= 0, got {args.step_cache}")
    if not math.isfinite(args.speed) or args.speed <= 0:
        raise ValueError(f"--speed must be a positive number, got {args.speed}")
    check_out_dir(args.out)
    check_input_choices(args)


def check_input_choices(args: argparse.Namespace) -> None:
    """An error unless the inputs given fit together: an image (or ``--t2v`` without one) and a camera."""
    if args.t2v:
        if args.image is not None or args.depth is not None:
            raise ValueError("--t2v generates from the prompt alone: drop --image and --depth")
    elif args.image is None:
        raise ValueError("--image is required (or --t2v for text-to-video)")
    if args.trajectory is None and args.preset is None:
        raise ValueError("a camera is required: --trajectory FILE or --preset NAME (for a batch clip: its own "
                         "'trajectory' or 'preset', else the command line's)")


def check_checkpoint(args: argparse.Namespace) -> None:
    """An error unless ``--checkpoint`` is absent or an existing DiT safetensors used without ``--tiny``."""
    if args.checkpoint is None:
        return
    if args.tiny:
        raise ValueError("--tiny runs tiny random models: drop --checkpoint (or --tiny)")
    if not args.checkpoint.is_file():
        raise FileNotFoundError(f"--checkpoint: no such file: {args.checkpoint}")
    if args.checkpoint.suffix != ".safetensors":
        raise ValueError(f"--checkpoint {args.checkpoint}: give a DiT .safetensors; convert the official .pt first "
                         f"with: dualcam convert-checkpoint {args.checkpoint} {args.checkpoint_dir} (then drop "
                         "--checkpoint)")


def check_out_dir(out: Path) -> None:
    """A ValueError unless ``--out`` is a folder or can become one: not a broken link, and its nearest existing
    ancestor a folder this process may write in."""
    existing = out
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():
            raise ValueError(f"--out {out}: {existing} is a link to {os.readlink(existing)}, which does not exist")
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == out else f"is inside {existing}, which is a file"
        raise ValueError(f"--out must be a folder, {out} {where}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: this process may not write in {existing}")
    try:
        check_out_dir_files(out)
    except ValueError as error:
        raise ValueError(f"--out: {error}") from None


def load_image(option: str, path: Path) -> Image.Image:
    """An 8-bit image file (the modes the pipeline takes), fully read, or an error naming the option."""
    if not path.is_file():
        raise FileNotFoundError(f"{option}: no such file: {path}")
    try:
        with Image.open(path) as image:
            try:
                limits.check_image_pixels(*image.size)  # before the pixels are decoded
            except ValueError as error:
                raise ValueError(f"{option}: {path}: {error}") from None
            image.load()
            try:
                upright = ImageOps.exif_transpose(image)  # a phone photo's EXIF orientation, as viewers show it
            except Exception as error:  # damaged EXIF data: Pillow raises SyntaxError, struct.error, ...
                raise ValueError(f"{option}: {path} holds damaged EXIF data ({error})") from None
    except Image.DecompressionBombError:
        raise ValueError(f"{option}: {path}: the image is larger than the limit of {limits.MAX_IMAGE_PIXELS:,} "
                         "pixels (8192x8192); scale it down first") from None
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{option}: cannot read {path} as an image ({error})") from None
    if upright.mode not in EIGHT_BIT_MODES:
        hint = "; a depth map must be 8-bit grayscale disparity (near = bright)" if option == "--depth" else ""
        if upright.mode in ("CMYK", "YCbCr"):
            hint = "; convert it to RGB first"
        raise ValueError(
            f"{option}: {path} has PIL mode {upright.mode!r}, expected an 8-bit image (one of {EIGHT_BIT_MODES})"
            f"{hint}"
        )
    return upright


def load_inputs(
    args: argparse.Namespace, frames: int
) -> tuple[Image.Image | None, Image.Image | None, CameraTrajectory]:
    """(image, depth, trajectory) from the command line (whose choices ``check_input_choices`` checked), each
    checked."""
    if args.t2v:
        image = depth = None
    else:
        image = load_image("--image", args.image)
        depth = None if args.depth is None else load_image("--depth", args.depth)
    if args.trajectory is not None:
        trajectory = CameraTrajectory.load(args.trajectory)
    else:
        try:
            trajectory = CameraTrajectory.preset(args.preset, num_frames=frames, speed=args.speed)
        except ValueError as error:
            raise ValueError(f"--preset {args.preset} at --speed {args.speed:g}: {error}") from None
    if args.source_size is not None:
        trajectory = CameraTrajectory(trajectory.c2w, trajectory.intrinsics, args.source_size)
    return image, depth, trajectory


def build_pipeline(args: argparse.Namespace, setup: GenerationSetup) -> DualCamCtrlPipeline:
    """The tiny pipeline (with its notice), or the official setup (``--checkpoint`` replacing the DiT) on
    ``--device`` (``pipeline.setup.load_pipeline``)."""
    from ..pipeline.setup import load_pipeline, print_tiny_notice

    if setup.tiny:
        print_tiny_notice(setup.reason, args.checkpoint_dir)
    return load_pipeline(setup.tiny, args.device, args.checkpoint_dir, args.checkpoint, offload=args.offload)


def load_depth_estimator(args: argparse.Namespace, setup: GenerationSetup) -> DepthEstimator:
    """The depth model for ``--image`` without ``--depth``: ``--depth-model``, else the default one (the tiny random
    one on the tiny model); a ValueError saying what to do when it cannot be loaded."""
    from ..pipeline.setup import load_depth_estimator

    return load_depth_estimator(
        args.depth_model, setup.tiny, args.device, why="--depth was not given and ",
        remedy="pass --depth (an 8-bit grayscale disparity map of the image, near = bright) or --depth-model with a "
               "local copy",
    )


def prepare_clip(
    args: argparse.Namespace,
) -> tuple[GenerationSetup, Image.Image | None, Image.Image | None, CameraTrajectory]:
    """Settings and inputs of one clip, all checked (a bad trajectory fails before the models load)."""
    setup = resolve_setup(args)
    image, depth, trajectory = load_inputs(args, setup.frames)
    width, height = setup.size
    if image is not None and depth is not None:
        try:
            check_same_aspect(image, depth, width=width, height=height)
        except ValueError as error:
            raise ValueError(f"--depth: {error}") from None
    trajectory = prepare_trajectory(trajectory, setup.frames, width=width, height=height,
                                    image_size=image.size if image else None, resample=args.resample_camera)
    return setup, image, depth, trajectory


def configure_pipeline(pipe: DualCamCtrlPipeline, args: argparse.Namespace) -> None:
    """Sequence parallel and compilation as asked and, on the CPU, the allocator setting
    (``parallel.backend.configure_runtime``); then one line on stderr naming the kernels in use."""
    from ..parallel import enable_sequence_parallel
    from ..parallel.backend import configure_runtime

    if args.sequence_parallel:
        enable_sequence_parallel(pipe.dit)
    print(configure_runtime(pipe, compile=args.compile), file=sys.stderr)


def generate_clip(
    pipe: DualCamCtrlPipeline,
    args: argparse.Namespace,
    setup: GenerationSetup,
    image: Image.Image | None,
    depth: Image.Image | None,
    trajectory: CameraTrajectory,
) -> DualCamCtrlOutput:
    """Generate one prepared clip, or a chain of clips when ``--frames`` exceeds ``--chunk-frames`` (finished clips
    are kept beside ``--out`` until the run is saved, so a rerun goes on from the first missing one)."""
    width, height = setup.size
    if setup.frames > args.chunk_frames:
        from ..world.long import generate_long, resume_folder

        return generate_long(
            pipe, prompt=args.prompt, negative_prompt=args.negative_prompt, input_image=image, input_depth=depth,
            camera=trajectory, height=height, width=width, num_frames=setup.frames, chunk_frames=args.chunk_frames,
            num_inference_steps=setup.steps, cfg_scale=args.cfg, seed=args.seed, t2v=args.t2v,
            step_cache_threshold=args.step_cache, resample_camera=args.resample_camera,
            resume_dir=resume_folder(args.out),
        )
    return pipe(
        prompt=args.prompt, negative_prompt=args.negative_prompt, input_image=image, input_depth=depth,
        camera=trajectory, height=height, width=width, num_frames=setup.frames, num_inference_steps=setup.steps,
        cfg_scale=args.cfg, seed=args.seed, t2v=args.t2v, step_cache_threshold=args.step_cache,
        resample_camera=args.resample_camera,
    )


def preview_clip(args: argparse.Namespace) -> int:
    """``--preview-only``: the camera path in the scene of the first frame as the generation would see them (output
    size, prepared camera, the depth map given or estimated), written into ``--out``; no generation model loads."""
    if args.batch_file is not None:
        raise ValueError("--preview-only previews one clip: drop --batch-file (or preview a clip of it on its own)")
    setup, image, depth, trajectory = prepare_clip(args)
    width, height = setup.size
    if image is not None:
        image = prepare_image(image, width=width, height=height)
        if depth is None:
            random_model = " by the tiny random depth model (noise)" if setup.tiny and not args.depth_model else ""
            print(f"notice: no --depth: the depth map is estimated{random_model}", file=sys.stderr)
            depth = load_depth_estimator(args, setup)(image)
        depth = prepare_depth(depth, width=width, height=height).convert("L")
    from ..export.preview import write_preview

    scale = write_preview(args.out / "preview.glb", trajectory, image, depth)
    plot = trajectory.plot(args.out / "preview.png", title=f"{len(trajectory)} frames at {width}x{height}")
    print(f"scene: {(args.out / 'preview.glb').resolve()}")
    print(f"plot: {plot.resolve()}")
    print(f"scale: the camera {scale.message()}")
    if scale.warning() is not None:
        print(f"warning: {scale.warning()}", file=sys.stderr)
    if args.t2v:
        print("notice: --t2v has no first frame: the scene holds the cameras and their path only", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    """Generate, save, and print where the files went."""
    if args.preview_only:
        return preview_clip(args)
    if args.batch_file is not None:
        from .batch import run_batch

        return run_batch(args)
    setup, image, depth, trajectory = prepare_clip(args)
    rank = 0
    if args.sequence_parallel:
        from ..parallel import init_distributed, local_device

        rank, _ = init_distributed(args.device)
        args.device = local_device(args.device)
    depth_estimator = load_depth_estimator(args, setup) if image is not None and depth is None else None
    pipe = build_pipeline(args, setup)
    pipe.depth_estimator = depth_estimator
    configure_pipeline(pipe, args)
    output = generate_clip(pipe, args, setup, image, depth, trajectory)
    if rank != 0:  # every rank holds the same clip; the first one writes it
        return 0
    written = output.save(args.out, fps=args.fps)
    remove_resume_folder(args)
    print(f"wrote {len(written)} files to {args.out}:")
    for path in written.values():
        print(f"  {path}")
    return 0


def remove_resume_folder(args: argparse.Namespace) -> None:
    """Delete the finished clips of a chained run once its folder is saved."""
    from ..world.long import resume_folder

    shutil.rmtree(resume_folder(args.out), ignore_errors=True)
