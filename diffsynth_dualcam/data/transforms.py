"""Clip sampling and the geometric augmentations that must move frames and cameras together."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..camera import CameraTrajectory

# Mirrors the x axis: applied on both sides of a camera-to-world matrix it mirrors the scene and the camera.
MIRROR_X = np.diag([-1.0, 1.0, 1.0, 1.0])


def sample_clip_indices(num_available: int, num_frames: int, stride: int, rng: np.random.Generator,
                        min_stride: int = 1) -> np.ndarray:
    """Indices of ``num_frames`` frames ``stride`` apart at a random start.

    The stride is lowered to the largest one that fits when the source is too short for it, but never below
    ``min_stride``: a source too short for ``min_stride`` raises ValueError.
    """
    if num_frames < 1 or (num_frames - 1) % 4 != 0:
        raise ValueError(f"num_frames must be 4k+1 (1, 5, 9, ...), got {num_frames}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if not 1 <= min_stride <= stride:
        raise ValueError(f"min_stride must be between 1 and stride={stride}, got {min_stride}")
    needed = (num_frames - 1) * min_stride + 1
    if num_available < needed:
        at_stride = f" ({num_frames} frames at stride >= {min_stride})" if min_stride > 1 else ""
        raise ValueError(f"needs at least {needed} frames, has {num_available}{at_stride}")
    if num_frames > 1:
        stride = min(stride, (num_available - 1) // (num_frames - 1))
    span = (num_frames - 1) * stride + 1
    start = int(rng.integers(0, num_available - span + 1))
    return start + stride * np.arange(num_frames)


def cover_crop_frames(frames: np.ndarray, *, width: int, height: int) -> torch.Tensor:
    """Scale uint8 frames [F, H, W, C] to cover width x height and centre-crop: float [C, F, H, W] in [-1, 1].

    The geometry is exactly that of `CameraTrajectory.cover_crop`: output pixel centre ``j + 0.5`` samples source
    position ``(j + 0.5 + offset) / scale`` with ``scale = max(W / Ws, H / Hs)`` and the fractional centring
    ``offset = (Ws * scale - W) / 2``. Downscaling first goes through an antialiased resize to whole pixels; a
    bilinear resampling then places every output pixel at its exact source position.
    """
    source_height, source_width = frames.shape[1:3]
    scale = max(width / source_width, height / source_height)
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    if (source_height * scale, source_width * scale) == (height, width):
        if scale != 1.0:
            video = F.interpolate(video, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    else:
        if scale < 1.0:
            video = F.interpolate(video, size=(round(source_height * scale), round(source_width * scale)),
                                  mode="bilinear", antialias=True, align_corners=False)
        columns = _source_positions(width, source_width, scale)
        rows = _source_positions(height, source_height, scale)
        grid = torch.stack(torch.meshgrid(columns, rows, indexing="xy"), dim=-1)  # [H, W, (x, y)]
        video = F.grid_sample(video, grid.expand(video.shape[0], -1, -1, -1), mode="bilinear",
                              padding_mode="border", align_corners=False)
    return (video / 127.5 - 1.0).clamp(-1.0, 1.0).permute(1, 0, 2, 3).contiguous()


def _source_positions(size: int, source_size: int, scale: float) -> torch.Tensor:
    """grid_sample coordinates (align_corners=False, so independent of any intermediate resize) of the ``size``
    output pixel centres along one axis."""
    offset = (source_size * scale - size) / 2.0
    source = (torch.arange(size, dtype=torch.float64) + 0.5 + offset) / scale  # in source pixels
    return (2.0 * source / source_size - 1.0).float()


def mirror_trajectory(trajectory: CameraTrajectory) -> CameraTrajectory:
    """Cameras of the horizontally flipped video: ``c2w' = S c2w S`` with S = diag(-1, 1, 1, 1), ``cx' = 1 - cx``."""
    intrinsics = trajectory.intrinsics.copy()
    intrinsics[:, 2] = 1.0 - intrinsics[:, 2]
    return CameraTrajectory(c2w=MIRROR_X @ trajectory.c2w @ MIRROR_X, intrinsics=intrinsics,
                            source_size=trajectory.source_size)
