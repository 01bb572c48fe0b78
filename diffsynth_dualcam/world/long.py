"""Long camera paths with the pipeline: ``generate_long(pipe, ...)`` and the run folder it writes."""
from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image
from tqdm import tqdm

from ..camera import CameraTrajectory
from ..export.export3d import DEFAULT_FAR, DEFAULT_NEAR, write_ply
from ..pipeline.dualcam import image_digest
from ..pipeline.inputs import (
    check_frame_count,
    check_image,
    check_num_frames,
    check_same_aspect,
    check_seed,
    check_size,
    prepare_depth,
    prepare_image,
    prepare_trajectory,
)
from ..pipeline.output import DualCamCtrlOutput
from .cache import WorldCache
from .chain import clip_ranges, generate_chained

if TYPE_CHECKING:
    from ..pipeline import DualCamCtrlPipeline

#: The world cache's file in a run folder.
WORLD_FILE = "world.ply"
#: Clip length of the released model, the default length of a chain's clips.
DEFAULT_CHUNK_FRAMES = 61


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


def generate_long(
    pipe: DualCamCtrlPipeline,
    prompt: str,
    negative_prompt: str = "",
    input_image: Image.Image | None = None,
    input_depth: Image.Image | None = None,
    camera: CameraTrajectory | None = None,
    height: int = 480,
    width: int = 720,
    num_frames: int = 121,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    num_inference_steps: int = 50,
    cfg_scale: float = 6.0,
    seed: int | None = None,
    t2v: bool = False,
    resample_camera: bool = False,
    progress_bar_cmd: Callable[[Iterable], Iterable] = tqdm,
    resume_dir: str | Path | None = None,
    near: float = DEFAULT_NEAR,
    far: float = DEFAULT_FAR,
    frame_stride: int = 4,
    pixel_stride: int = 2,
    voxel_size: float | None = None,
    **clip_options: Any,
) -> ChainedOutput:
    """Generate a camera path of any ``num_frames`` (4k+1) as clips of ``chunk_frames`` sharing one frame.

    The arguments are the pipeline call's (``clip_options``: ``tiled``, ``cfg_merge``, ``sigma_shift``,
    ``tile_size``, ``tile_stride``, ``step_cache_threshold``), and: ``camera`` a ``CameraTrajectory`` (followed
    frame by frame, its first ``num_frames`` cameras, unless ``resample_camera`` stretches it, as in the pipeline
    call); clip k is seeded with ``seed + k``; text-to-video makes the first clip from the prompt and the others from
    the previous clip's last frame. ``progress_bar_cmd`` wraps one iterable over the steps of all clips.
    ``resume_dir`` keeps finished clips so that an interrupted call, repeated with the same arguments, goes on from
    the first missing clip. ``near``, ``far``, ``frame_stride``, ``pixel_stride`` and ``voxel_size`` set the world
    cache (see ``diffsynth_dualcam.world.cache``).
    """
    height, width = check_size(height, width)
    num_frames = check_num_frames(num_frames)
    chunk_frames = check_frame_count("chunk_frames", chunk_frames, minimum=5)
    ranges = clip_ranges(num_frames, chunk_frames)
    if not isinstance(camera, CameraTrajectory):
        raise TypeError(f"camera must be a CameraTrajectory for a chained generation, got {type(camera).__name__}")
    seed = secrets.randbelow(2**31) if check_seed(seed) is None else seed
    check_seed(seed + len(ranges) - 1)
    original_image, original_depth = input_image, input_depth
    image = depth = None
    if t2v:
        if input_image is not None or input_depth is not None:
            raise ValueError("t2v=True generates from the prompt alone: leave input_image and input_depth None")
    else:
        if input_image is None:
            raise ValueError("input_image is required for image-to-video (or pass t2v=True)")
        check_image("input_image", input_image)
        image = prepare_image(input_image, width, height)
        if input_depth is None:  # estimated on the first frame at the output size, as the pipeline does
            if pipe.depth_estimator is None:
                raise ValueError("input_depth is required for image-to-video (an 8-bit grayscale disparity map, near = "
                                 "bright) unless pipe.depth_estimator is set")
            input_depth = pipe.depth_estimator(image)
        else:
            check_same_aspect(input_image, check_image("input_depth", input_depth), width, height)
        check_image("the depth map of pipe.depth_estimator", input_depth)
        depth = prepare_depth(input_depth, width, height).convert("L")
    trajectory = prepare_trajectory(camera, num_frames, width, height, input_image.size if input_image else None,
                                    resample_camera)
    clip_steps, advance = step_progress(progress_bar_cmd, len(ranges) * num_inference_steps)

    def clip_fn(clip_image: Image.Image | None, clip_depth: Image.Image | None, clip_trajectory: CameraTrajectory,
                seed: int) -> tuple[list[Image.Image], list[Image.Image], dict[str, Any]]:
        output = pipe(
            prompt=prompt, negative_prompt=negative_prompt, input_image=clip_image, input_depth=clip_depth,
            camera=clip_trajectory, height=height, width=width, num_frames=len(clip_trajectory),
            num_inference_steps=num_inference_steps, cfg_scale=cfg_scale, seed=seed, t2v=clip_image is None,
            resample_camera=False, progress_bar_cmd=clip_steps, **clip_options,
        )
        params = {key: value for key, value in output.params.items() if key not in ("camera", "seed")}
        return output.video, output.depth_video, {"t2v": clip_image is None, "params": params}

    def on_clip(record: Any) -> None:
        if record.resumed:
            advance(num_inference_steps)

    resume_key = {"prompt": prompt, "negative_prompt": negative_prompt, "steps": num_inference_steps,
                  "cfg_scale": cfg_scale, "t2v": t2v, "models": pipe.model_source,
                  "clip_options": {key: repr(value) for key, value in sorted(clip_options.items())}}
    result = generate_chained(
        clip_fn, image=image, depth=depth, trajectory=trajectory, num_frames=num_frames, chunk_frames=chunk_frames,
        seed=seed, near=near, far=far, frame_stride=frame_stride, pixel_stride=pixel_stride, voxel_size=voxel_size,
        resume_dir=resume_dir, resume_key=resume_key, on_clip=on_clip,
    )
    clip_params = [record.generation.pop("params", {}) for record in result.clips]
    params = {
        **clip_params[0], "t2v": t2v, "seed": seed, "num_frames": num_frames, "resample_camera": resample_camera,
        "input_image": image_digest(original_image), "input_depth": image_digest(original_depth),
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

