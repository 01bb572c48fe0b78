"""Long camera paths with the pipeline: ``generate_long(pipe, ...)`` and the run folder it writes."""
from __future__ import annotations

import inspect
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from ..camera import CameraTrajectory
from ..export.export3d import DEFAULT_FAR, DEFAULT_NEAR, write_ply
from ..pipeline.arguments import GenerationArguments
from ..pipeline.inputs import (
    check_first_frame,
    check_frame_count,
    check_image,
    check_num_frames,
    check_seed,
    prepare_depth,
    prepare_image,
    prepare_trajectory,
)
from ..pipeline.output import DualCamCtrlOutput
from ..pipeline.setup import CLIP_FRAMES
from .cache import WorldCache
from .chain import clip_ranges, generate_chained

if TYPE_CHECKING:
    from ..pipeline import DualCamCtrlPipeline

#: The world cache's file in a run folder.
WORLD_FILE = "world.ply"


def resume_folder(out_dir: str | Path) -> Path:
    """Where the finished clips of a chain written to ``out_dir`` are kept until the run folder is saved: a hidden
    folder beside it."""
    out_dir = Path(out_dir)
    return out_dir.parent / f".{out_dir.name or 'run'}.clips"


@dataclass
class ChainedOutput(DualCamCtrlOutput):
    """A chained generation as a run folder: the whole path's video, depth video (world disparity, each clip aligned)
    and trajectory, ``params["clips"]`` one record per clip, and ``cache``, the world cache, saved as ``world.ply``.
    A chain keeps no latents (``latents`` / ``depth_latents`` are empty): each clip had its own."""

    cache: WorldCache | None = field(default=None)

    def write_files(self, folder: Path, fps: int) -> None:
        """The files of a clip's run folder and ``world.ply`` (binary PLY: x, y, z, red, green, blue)."""
        super().write_files(folder, fps)
        if self.cache is not None:
            write_ply(folder / WORLD_FILE, self.cache.cloud)


def step_progress(progress_bar_cmd: Callable[[Iterable], Iterable], total: int) -> tuple[Callable, Callable]:
    """One progress bar over ``total`` steps shared by the clips: returns the ``progress_bar_cmd`` to give each clip
    and a function advancing it by a number of steps (for clips loaded instead of generated). The bar ends with the
    last step."""
    ticks = iter(progress_bar_cmd(range(total)))
    next(ticks, None)

    def advance(steps: int) -> None:
        for _ in range(steps):
            next(ticks, None)

    def clip_steps(timesteps: Iterable) -> Iterable:
        for timestep in timesteps:
            yield timestep
            advance(1)

    return clip_steps, advance


#: Arguments the chain sets per clip or its resume key names one by one; the others are its ``clip_options``.
CHAIN_ARGUMENTS = ("prompt", "negative_prompt", "input_image", "input_depth", "camera", "height", "width", "num_frames",
                   "num_inference_steps", "cfg_scale", "seed", "t2v", "resample_camera", "progress_bar_cmd")


def generate_long(
    pipe: DualCamCtrlPipeline,
    prompt: str,
    *,
    num_frames: int = 121,
    chunk_frames: int = CLIP_FRAMES,
    resume_dir: str | Path | None = None,
    near: float = DEFAULT_NEAR,
    far: float = DEFAULT_FAR,
    frame_stride: int = 4,
    pixel_stride: int = 2,
    voxel_size: float | None = None,
    **arguments: Any,
) -> ChainedOutput:
    """Generate a camera path of any ``num_frames`` (4k+1) as clips of ``chunk_frames`` sharing one frame.

    ``arguments`` are the pipeline call's (the fields of ``pipe.arguments_class``, all checked before the first clip),
    with: ``camera`` a ``CameraTrajectory`` (followed frame by frame, its first ``num_frames`` cameras, unless
    ``resample_camera`` stretches it, as in the pipeline call); clip k is seeded with ``seed + k``; text-to-video
    makes the first clip from the prompt and the others from the previous clip's last frame. ``progress_bar_cmd``
    wraps one iterable over the steps of all clips. ``resume_dir`` keeps finished clips so that an interrupted call,
    repeated with the same arguments, goes on from the first missing clip. ``near``, ``far``, ``frame_stride``,
    ``pixel_stride`` and ``voxel_size`` set the world cache (see ``diffsynth_dualcam.world.cache``).
    """
    num_frames = check_num_frames(num_frames)
    chunk_frames = check_frame_count("chunk_frames", chunk_frames, minimum=5)
    # The per-clip limits hold for one clip at a time: the arguments are checked as those of the longest clip.
    clip = pipe.arguments_class.from_call(prompt, num_frames=min(num_frames, chunk_frames), **arguments).checked()
    arguments = replace(clip, num_frames=num_frames)
    width, height, seed = arguments.width, arguments.height, arguments.seed
    input_image, input_depth, camera, t2v = (arguments.input_image, arguments.input_depth, arguments.camera,
                                             arguments.t2v)
    if resume_dir is not None and seed is None:
        raise ValueError("resume_dir needs a seed: a run drawing a random seed cannot be repeated, so its clips could "
                         "never be resumed")
    ranges = clip_ranges(num_frames, chunk_frames)
    if not isinstance(camera, CameraTrajectory):
        raise TypeError(f"camera must be a CameraTrajectory for a chained generation, got {type(camera).__name__}")
    seed = secrets.randbelow(2**31) if seed is None else seed
    check_seed(seed + len(ranges) - 1)
    original_depth = input_depth
    image = depth = None
    check_first_frame(t2v=t2v, input_image=input_image, input_depth=input_depth,
                      can_estimate_depth=pipe.depth_estimator is not None, width=width, height=height)
    if not t2v:
        image = prepare_image(input_image, width=width, height=height)
        if input_depth is None:  # estimated on the first frame at the output size, as the pipeline does
            input_depth = pipe.depth_estimator(image)
        check_image("the depth map of pipe.depth_estimator", input_depth)
        depth = prepare_depth(input_depth, width=width, height=height).convert("L")
    trajectory = prepare_trajectory(camera, num_frames, width=width, height=height,
                                    image_size=input_image.size if input_image else None,
                                    resample=arguments.resample_camera)
    num_inference_steps = arguments.num_inference_steps
    clip_steps, advance = step_progress(arguments.progress_bar_cmd, len(ranges) * num_inference_steps)

    def clip_fn(clip_image: Image.Image | None, clip_depth: Image.Image | None, clip_trajectory: CameraTrajectory,
                seed: int) -> tuple[list[Image.Image], list[Image.Image], dict[str, Any]]:
        clip_arguments = replace(
            arguments, input_image=clip_image, input_depth=clip_depth, camera=clip_trajectory,
            num_frames=len(clip_trajectory), seed=seed, t2v=clip_image is None, resample_camera=False,
            progress_bar_cmd=clip_steps,
        )
        output = pipe(**clip_arguments.values())
        params = {key: value for key, value in output.params.items() if key not in ("camera", "seed")}
        return output.video, output.depth_video, {"t2v": clip_image is None, "params": params}

    def on_clip(record: Any) -> None:
        if record.resumed:
            advance(num_inference_steps)

    clip_options = {name: value for name, value in arguments.values().items() if name not in CHAIN_ARGUMENTS}
    resume_key = {"size": [width, height], "prompt": arguments.prompt, "negative_prompt": arguments.negative_prompt,
                  "steps": num_inference_steps, "cfg_scale": arguments.cfg_scale, "t2v": t2v,
                  "models": pipe.model_source,
                  "clip_options": {key: repr(value) for key, value in sorted(clip_options.items())}}
    result = generate_chained(
        clip_fn, image=image, depth=depth, trajectory=trajectory, num_frames=num_frames, chunk_frames=chunk_frames,
        seed=seed, near=near, far=far, frame_stride=frame_stride, pixel_stride=pixel_stride, voxel_size=voxel_size,
        resume_dir=resume_dir, resume_key=resume_key, on_clip=on_clip,
    )
    clip_params = [record.generation.pop("params", {}) for record in result.clips]
    params = {
        # The whole path's arguments over those of the first clip (its frames, seed, conditioning, ...).
        **clip_params[0], **replace(arguments, seed=seed).record(),
        "depth_estimated": not t2v and original_depth is None,
        "camera": pipe.camera_description(camera, result.trajectory, None),
        "chain": {
            "chunk_frames": chunk_frames, "num_clips": len(result.clips),
            "depth_video": "world disparity: each clip's depth aligned to the world cache (near = bright)",
            "world_cache": {"file": WORLD_FILE, "points": len(result.cache), "near": near, "far": far,
                            "frame_stride": frame_stride, "pixel_stride": pixel_stride,
                            "voxel_size": result.cache.voxel_size},
        },
        "clips": [record.as_record() for record in result.clips],
    }
    return ChainedOutput(
        video=[Image.fromarray(frame) for frame in result.video],
        depth_video=[Image.fromarray(frame) for frame in result.depth_video],
        latents=torch.empty(0), depth_latents=torch.empty(0), params=params, trajectory=result.trajectory,
        input_image=image, input_depth=depth, cache=result.cache,
    )


def long_signature() -> inspect.Signature:
    """``generate_long``'s signature for introspection: the pipeline call's arguments (``GenerationArguments``, a
    whole path of 121 frames by default) after ``prompt``, as keywords, then the chain's own."""
    own = inspect.signature(generate_long).parameters
    forwarded = [
        parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for name, parameter in GenerationArguments.signature().parameters.items() if name not in own
    ]
    return inspect.Signature([*(parameter for name, parameter in own.items() if name != "arguments"), *forwarded],
                             return_annotation="ChainedOutput")


generate_long.__signature__ = long_signature()
