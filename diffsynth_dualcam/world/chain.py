"""Chained generation: a camera path longer than one clip as clips that share one frame, over a world cache.

Clip k+1 starts where clip k ends: it is conditioned on clip k's last RGB frame and last depth frame (as generated,
8-bit disparity, near = bright) and gets the cameras of its part of the path relative to its own first frame.
Its disparity is aligned to the world cache on that shared frame before its frames are lifted into the cache (see
:mod:`diffsynth_dualcam.world.cache` for the depth convention).
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..camera import CameraTrajectory
from ..export.export3d import DEFAULT_FAR, DEFAULT_NEAR
from ..io import atomic_output, atomic_write
from ..pipeline.inputs import check_frame_count, cover_resize, image_digest
from ..pipeline.setup import CLIP_FRAMES
from .cache import Alignment, WorldCache, robust_scale_shift

#: A clip generator: ``clip_fn(image, depth, trajectory) -> (rgb_frames, depth_frames)``; with ``seed=`` as well when
#: :func:`generate_chained` is given a seed. It may return a third item, a JSON-friendly dict kept in the clip's
#: record under ``generation``.
ClipFn = Callable[..., tuple]
#: File of a resume folder that names the run its clips belong to.
RESUME_MANIFEST = "chain.json"


def clip_ranges(num_frames: int, chunk_frames: int) -> list[tuple[int, int]]:
    """``(first, last)`` frame of each clip (inclusive): clips of ``chunk_frames`` sharing their end frames; the last
    one is shorter when the path does not divide evenly (still 4k+1 frames)."""
    num_frames = check_frame_count("num_frames", num_frames)
    chunk_frames = check_frame_count("chunk_frames", chunk_frames, minimum=5)
    ranges, first = [], 0
    while True:
        last = min(first + chunk_frames - 1, num_frames - 1)
        ranges.append((first, last))
        if last == num_frames - 1:
            return ranges
        first = last


@dataclass
class ClipRecord:
    """What ``params.json`` records of one clip of a chain."""

    index: int
    first_frame: int
    last_frame: int
    seed: int | None
    alignment: Alignment
    consistency: float | None
    compared_pixels: int
    lifted_frames: list[int]
    resumed: bool
    generation: dict[str, Any] = field(default_factory=dict)

    def as_record(self) -> dict[str, Any]:
        """JSON-friendly record (a missing consistency figure, as for the first clip, is null)."""
        return {
            "index": self.index, "frames": [self.first_frame, self.last_frame],
            "num_frames": self.last_frame - self.first_frame + 1, "seed": self.seed,
            "depth_alignment": self.alignment.as_record(),
            "consistency": {"median_relative_depth_difference": self.consistency, "pixels": self.compared_pixels},
            "lifted_frames": self.lifted_frames, "resumed": self.resumed, "generation": self.generation,
        }


@dataclass
class ChainResult:
    """A chained generation.

    ``video`` [N, H, W, 3] uint8; ``depth_video`` [N, H, W] uint8 world disparity (each clip aligned, near = bright);
    ``trajectory`` the whole path relative to its first frame (the shared frames once); ``cache`` the world cache;
    ``clips`` one record per clip.
    """

    video: np.ndarray
    depth_video: np.ndarray
    trajectory: CameraTrajectory
    cache: WorldCache
    clips: list[ClipRecord]


def frames_array(frames: Sequence | np.ndarray, channels: int, what: str) -> np.ndarray:
    """PIL frames or an array as uint8 [F, H, W, 3] (``channels`` 3) or [F, H, W] (``channels`` 1)."""
    mode = "RGB" if channels == 3 else "L"
    if isinstance(frames, np.ndarray):
        array = frames
    else:
        array = np.stack([np.asarray(frame.convert(mode)) if isinstance(frame, Image.Image) else np.asarray(frame)
                          for frame in frames])
    if channels == 1 and array.ndim == 4 and array.shape[-1] in (1, 3):
        array = array.mean(axis=-1).round()
    expected = 4 if channels == 3 else 3
    if array.ndim != expected or (channels == 3 and array.shape[-1] != 3):
        shape = "[F, H, W, 3]" if channels == 3 else "[F, H, W]"
        raise ValueError(f"clip_fn returned {what} of shape {list(array.shape)}, expected {shape}")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise ValueError(f"clip_fn returned {what} with NaN or infinite values")
        array = np.clip(np.round(array), 0, 255).astype(np.uint8)
    return array


class ResumeFolder:
    """Finished clips of a chain, one ``clip_NNN.npz`` each (frames as generated), under a manifest naming the run.

    A folder whose manifest names another run is emptied of its clips first, so only clips of the same run load.
    """

    def __init__(self, folder: str | Path, key: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.key = hashlib.sha256(json.dumps(key, sort_keys=True, allow_nan=False).encode()).hexdigest()
        manifest = self.folder / RESUME_MANIFEST
        try:
            same_run = json.loads(manifest.read_text()).get("key") == self.key
        except (OSError, ValueError, AttributeError):
            same_run = False
        if not same_run:
            for stale in self.folder.glob("clip_*.npz"):
                stale.unlink(missing_ok=True)  # another process of the run may have removed it first
            atomic_write(manifest, (json.dumps({"key": self.key}) + "\n").encode())

    def path(self, index: int) -> Path:
        return self.folder / f"clip_{index:03d}.npz"

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]] | None:
        """A finished clip's (rgb, depth, generation record), or None."""
        path = self.path(index)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return data["rgb"], data["depth"], json.loads(str(data["generation"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # a damaged file is generated again
            return None

    def save(self, index: int, rgb: np.ndarray, depth: np.ndarray, generation: dict[str, Any]) -> None:
        with atomic_output(self.path(index)) as temporary:
            np.savez(temporary, rgb=rgb, depth=depth, generation=np.array(json.dumps(generation, allow_nan=False)))


def lifted_frame_indices(first: int, last: int, frame_stride: int, include_first: bool) -> list[int]:
    """Frames of a clip (global indices) that go into the cache: every ``frame_stride``-th frame of the path and the
    clip's last frame (the next clip's shared frame); its first frame only for the first clip."""
    start = first if include_first else first + 1
    return [index for index in range(start, last + 1) if index % frame_stride == 0 or index == last]


def generate_chained(
    clip_fn: ClipFn,
    *,
    image: Image.Image | None,
    depth: Image.Image | None,
    trajectory: CameraTrajectory,
    num_frames: int,
    chunk_frames: int = CLIP_FRAMES,
    seed: int | None = None,
    near: float = DEFAULT_NEAR,
    far: float = DEFAULT_FAR,
    frame_stride: int = 4,
    pixel_stride: int = 2,
    voxel_size: float | None = None,
    resume_dir: str | Path | None = None,
    resume_key: dict[str, Any] | None = None,
    on_clip: Callable[[ClipRecord], None] | None = None,
) -> ChainResult:
    """Generate ``num_frames`` (4k+1) frames along ``trajectory`` as clips of ``chunk_frames`` (4k+1) sharing a frame.

    ``image`` / ``depth`` condition the first clip (None / None: text-to-video, which ``clip_fn`` handles); ``depth``
    (8-bit disparity, near = bright) also fixes the world disparity (see :mod:`.cache`). ``trajectory`` has exactly
    ``num_frames`` cameras with intrinsics for the generated frames; the result's is made relative to its first one.
    Clip k gets ``seed + k`` when ``seed`` is given. ``near``, ``far``, ``frame_stride``, ``pixel_stride`` and
    ``voxel_size`` set the world cache (``export3d.lift_frames``'s meaning). With ``resume_dir``, each finished clip
    is kept there and a rerun with the same inputs and ``resume_key`` (whatever else decides the clips: prompt,
    model, steps, ...) loads it instead of generating it again. ``on_clip`` is called with each clip's record.
    """
    ranges = clip_ranges(num_frames, chunk_frames)
    if not isinstance(trajectory, CameraTrajectory):
        raise TypeError(f"trajectory must be a CameraTrajectory, got {type(trajectory).__name__}")
    if len(trajectory) != num_frames:
        raise ValueError(f"trajectory has {len(trajectory)} cameras, num_frames={num_frames} are needed")
    if isinstance(frame_stride, bool) or not isinstance(frame_stride, int) or frame_stride < 1:
        raise ValueError(f"frame_stride must be a whole number >= 1, got {frame_stride!r}")
    if image is None and depth is not None:
        raise ValueError("depth without image: give the first frame with its depth map (or neither, text-to-video)")
    trajectory = trajectory.relative()
    cache = WorldCache(near=near, far=far, pixel_stride=pixel_stride, voxel_size=voxel_size)
    resume = None
    if resume_dir is not None:
        key = {"num_frames": num_frames, "chunk_frames": chunk_frames, "seed": seed, "image": image_digest(image),
               "depth": image_digest(depth), "trajectory": np.round(trajectory.to_realestate10k(), 8).tolist(),
               "extra": resume_key}
        resume = ResumeFolder(resume_dir, key)
    pass_seed = seed is not None
    video, depth_video, records = [], [], []
    condition_image, condition_depth = image, depth
    alignment: Alignment | None = None
    frame_shape: tuple[int, int] | None = None
    for index, (first, last) in enumerate(ranges):
        clip_seed = None if seed is None else seed + index
        clip_trajectory = trajectory[first:last + 1].relative()
        loaded = resume.load(index) if resume is not None else None
        if loaded is not None:
            rgb, raw, generation = loaded
        else:
            arguments = {"seed": clip_seed} if pass_seed else {}
            returned = clip_fn(condition_image, condition_depth, clip_trajectory, **arguments)
            generation = returned[2] if len(returned) > 2 else {}
            rgb = frames_array(returned[0], 3, "rgb_frames")
            raw = frames_array(returned[1], 1, "depth_frames")
        expected = last - first + 1
        if len(rgb) != expected or raw.shape != rgb.shape[:3]:
            raise ValueError(f"clip {index}: clip_fn returned {len(rgb)} RGB frames of {list(rgb.shape[1:3])} and "
                             f"{len(raw)} depth frames of {list(raw.shape[1:3])}; {expected} of each, the same size, "
                             "were asked for")
        if frame_shape is not None and rgb.shape[1:3] != frame_shape:
            raise ValueError(f"clip {index}: frames of {list(rgb.shape[1:3])}, the first clip's were "
                             f"{list(frame_shape)}")
        frame_shape = rgb.shape[1:3]
        if resume is not None and loaded is None:
            resume.save(index, rgb, raw, generation)
        disparity = raw / 255.0
        if index == 0:
            alignment = first_alignment(disparity[0], depth)
        else:
            fitted = cache.align(disparity[0], trajectory.c2w[first], trajectory.intrinsics[first])
            alignment = fitted or Alignment(alignment.scale, alignment.shift, "previous clip (no overlap)", 0, 0.0)
        world = np.where(raw > 0, alignment.scale * disparity + alignment.shift, 0.0)
        lifted = lifted_frame_indices(first, last, frame_stride, include_first=index == 0)
        local = [frame - first for frame in lifted]
        consistency, compared = None, 0
        if index > 0:
            figure, compared = cache.disagreement(world[local], trajectory.c2w[lifted], trajectory.intrinsics[lifted])
            consistency = figure if compared else None
        cache.add_frames(rgb[local], world[local], trajectory.c2w[lifted], trajectory.intrinsics[lifted])
        start = 0 if index == 0 else 1
        video.append(rgb[start:])
        depth_video.append(np.round(np.clip(world[start:], 0.0, 1.0) * 255.0).astype(np.uint8))
        record = ClipRecord(index, first, last, clip_seed, alignment, consistency, compared, lifted,
                            resumed=loaded is not None, generation=generation)
        records.append(record)
        if on_clip is not None:
            on_clip(record)
        condition_image = Image.fromarray(rgb[-1])
        condition_depth = Image.fromarray(raw[-1])
    return ChainResult(np.concatenate(video), np.concatenate(depth_video), trajectory, cache, records)


def first_alignment(disparity: np.ndarray, depth: Image.Image | None) -> Alignment:
    """The first clip's map onto the world disparity: fitted on frame 0 to the input depth map (at the frame size),
    or the identity without one."""
    if depth is None:
        return Alignment(1.0, 0.0, "generated (no input depth map)", 0, 1.0)
    height, width = disparity.shape
    reference = np.asarray(cover_resize(depth.convert("L"), width=width, height=height), dtype=np.float64) / 255.0
    valid = disparity > 0
    if valid.sum() < 2 or np.ptp(disparity[valid]) == 0:
        return Alignment(1.0, 0.0, "generated (flat first depth frame)", 0, 1.0)
    scale, shift, inliers = robust_scale_shift(disparity[valid], reference[valid])
    return Alignment(scale, shift, "input depth map", int(valid.sum()), inliers)

