"""The world cache: every generated RGB-D frame lifted into one world frame, kept as a voxel-downsampled point set.

Depth convention (the one ``dualcam export-3d`` uses): a depth frame is relative disparity ``g`` in [0, 1] (8-bit,
near = bright). Each clip's disparity is mapped affinely onto the *world disparity* ``w = scale * g + shift``, the
convention of the first frame's input depth map, and read as an inverse-depth blend of two planes,
``1 / z = w / near + (1 - w) / far`` (``export3d.disparity_to_depth``), in the units of the camera trajectory.
Pixels at the far end (``g == 0``, or ``w <= 0`` once aligned) carry no geometry and are not lifted.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..export.export3d import (
    DEFAULT_FAR,
    DEFAULT_NEAR,
    PointCloud,
    disparity_to_depth,
    fit_scale_shift,
    lift_frames,
    voxel_downsample,
)

#: Fewest overlapping pixels with which the shared frame's disparity is fitted to the cache.
MIN_FIT_PIXELS = 16
#: Residuals beyond this many robust standard deviations (1.4826 MAD) are left out of the fit.
OUTLIER_SIGMAS = 3.0
#: Relative depth behind a cell's nearest point within which points count as the same (front) surface.
FRONT_SURFACE_TOLERANCE = 0.03
#: Smallest inlier band of the robust fit, in disparity: one 8-bit level.
MIN_INLIER_BAND = 1.0 / 255.0


@dataclass
class Alignment:
    """``world disparity = scale * generated disparity + shift`` of one clip; how it was found and on how much."""

    scale: float
    shift: float
    reference: str
    pixels: int
    inliers: float

    def as_record(self) -> dict:
        """JSON-friendly record for ``params.json``."""
        return {"scale": self.scale, "shift": self.shift, "reference": self.reference, "pixels": self.pixels,
                "inlier_fraction": self.inliers}


def robust_scale_shift(source: np.ndarray, target: np.ndarray, iterations: int = 4) -> tuple[float, float, float]:
    """``scale, shift`` with ``target ~ scale * source + shift`` by least squares, refitted on the inliers (within
    ``OUTLIER_SIGMAS`` robust deviations) a few times; returns them with the inlier fraction."""
    source, target = np.asarray(source, np.float64).ravel(), np.asarray(target, np.float64).ravel()
    keep = np.ones(source.shape, dtype=bool)
    scale, shift = fit_scale_shift(source, target)
    for _ in range(iterations):
        residual = np.abs(target - (scale * source + shift))
        band = max(OUTLIER_SIGMAS * 1.4826 * float(np.median(residual[keep])), MIN_INLIER_BAND)
        new_keep = residual <= band
        if new_keep.sum() < MIN_FIT_PIXELS or np.ptp(source[new_keep]) == 0 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
        scale, shift = fit_scale_shift(source[keep], target[keep])
    return scale, shift, float(keep.mean())


class WorldCache:
    """Coloured world points of every lifted frame, voxel-downsampled as they come in.

    Args:
        near, far: distances of world disparity 1 and 0 (see the module docstring).
        pixel_stride: every `pixel_stride`-th pixel per axis is lifted; the cache is also rendered on that grid.
        voxel_size: voxel edge; None picks the footprint of one lifted pixel at the median depth of the first frame;
            0 keeps every point.
    """

    def __init__(self, near: float = DEFAULT_NEAR, far: float = DEFAULT_FAR, pixel_stride: int = 2,
                 voxel_size: float | None = None) -> None:
        if not 0 < near < far:
            raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
        if voxel_size is not None and not voxel_size >= 0:
            raise ValueError(f"voxel_size must be >= 0 (0 keeps every point) or None (automatic), got {voxel_size!r}")
        if isinstance(pixel_stride, bool) or not isinstance(pixel_stride, int) or pixel_stride < 1:
            raise ValueError(f"pixel_stride must be a whole number >= 1, got {pixel_stride!r}")
        self.near, self.far, self.pixel_stride, self.voxel_size = near, far, pixel_stride, voxel_size
        self.cloud = PointCloud(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.uint8))

    def __len__(self) -> int:
        return len(self.cloud)

    def depth_to_disparity(self, depth: np.ndarray) -> np.ndarray:
        """World disparity of distances along the optical axis (the inverse of ``export3d.disparity_to_depth``)."""
        return (1.0 / depth - 1.0 / self.far) / (1.0 / self.near - 1.0 / self.far)

    def add_frames(self, rgb: np.ndarray, disparity: np.ndarray, c2w: np.ndarray, intrinsics: np.ndarray) -> int:
        """Lift frames (rgb [F, H, W, 3] uint8, world disparity [F, H, W], c2w [F, 4, 4], intrinsics [F, 4]) into
        the cache and voxel-downsample it; returns the number of points lifted."""
        stride = self.pixel_stride
        cloud = lift_frames(rgb, disparity, c2w, intrinsics, frame_stride=1, pixel_stride=stride,
                            near=self.near, far=self.far, voxel_size=0)
        valid = (np.asarray(disparity)[:, ::stride, ::stride] > 0).reshape(-1)
        cloud = PointCloud(cloud.points[valid], cloud.colors[valid])
        if self.voxel_size is None and len(cloud):
            sampled = np.asarray(disparity, dtype=np.float64)[:, ::stride, ::stride]
            depth = disparity_to_depth(sampled[sampled > 0], self.near, self.far)
            self.voxel_size = float(np.median(depth)) * stride / (intrinsics[0][0] * rgb.shape[2])
        merged = PointCloud(np.concatenate([self.cloud.points, cloud.points]),
                            np.concatenate([self.cloud.colors, cloud.colors]))
        self.cloud = voxel_downsample(merged, self.voxel_size) if len(merged) and self.voxel_size else merged
        return len(cloud)

    def render_depth(self, c2w: np.ndarray, intrinsics: np.ndarray, *, width: int, height: int) -> np.ndarray:
        """Depth of the cache's front surface in each `pixel_stride` x `pixel_stride` cell of a width x height frame
        seen by the camera (c2w [4, 4], normalised intrinsics [4]), on the grid of the lifted pixels; NaN where the
        cache has no point. A cell's depth is the mean over its points within ``FRONT_SURFACE_TOLERANCE`` of its
        nearest one: the nearest alone would be biased towards the camera where several points share a cell."""
        stride = self.pixel_stride
        rows, cols = len(range(0, height, stride)), len(range(0, width, stride))
        nearest = np.full(rows * cols, np.inf)
        depth = np.full(rows * cols, np.nan)
        if len(self.cloud):
            w2c = np.linalg.inv(np.asarray(c2w, dtype=np.float64))
            camera = self.cloud.points @ w2c[:3, :3].T + w2c[:3, 3]
            camera = camera[camera[:, 2] > 1e-6]
            z = camera[:, 2]
            fx, fy, cx, cy = np.asarray(intrinsics, dtype=np.float64) * np.array([width, height, width, height])
            u = fx * camera[:, 0] / z + cx
            v = fy * camera[:, 1] / z + cy
            inside = (u >= 0) & (u < cols * stride) & (v >= 0) & (v < rows * stride)
            cell = (v[inside] // stride).astype(np.int64) * cols + (u[inside] // stride).astype(np.int64)
            z = z[inside]
            np.minimum.at(nearest, cell, z)
            front = z <= nearest[cell] * (1.0 + FRONT_SURFACE_TOLERANCE)
            counts = np.bincount(cell[front], minlength=rows * cols)
            sums = np.bincount(cell[front], weights=z[front], minlength=rows * cols)
            covered = counts > 0
            depth[covered] = sums[covered] / counts[covered]
        return depth.reshape(rows, cols)

    def align(self, disparity: np.ndarray, c2w: np.ndarray, intrinsics: np.ndarray) -> Alignment | None:
        """Robust scale/shift mapping a generated disparity frame [H, W] in [0, 1] onto the cache's world disparity
        seen from its camera; None when they overlap on fewer than ``MIN_FIT_PIXELS`` pixels."""
        height, width = disparity.shape
        stride = self.pixel_stride
        cached = self.render_depth(c2w, intrinsics, width=width, height=height)
        source = np.asarray(disparity, dtype=np.float64)[::stride, ::stride]
        overlap = np.isfinite(cached) & (source > 0)
        if overlap.sum() < MIN_FIT_PIXELS or np.ptp(source[overlap]) == 0:
            return None
        scale, shift, inliers = robust_scale_shift(source[overlap], self.depth_to_disparity(cached[overlap]))
        return Alignment(scale, shift, "world cache", int(overlap.sum()), inliers)

    def disagreement(self, disparity: np.ndarray, c2w: np.ndarray, intrinsics: np.ndarray) -> tuple[float, int]:
        """Median relative depth difference ``|z - z_cache| / z_cache`` between world-disparity frames [F, H, W]
        and the cache seen from their cameras, where both have depth; returns it (NaN without overlap) and the
        number of pixels compared."""
        differences = []
        stride = self.pixel_stride
        for frame, pose, camera in zip(disparity, c2w, intrinsics, strict=True):
            height, width = frame.shape
            cached = self.render_depth(pose, camera, width=width, height=height)
            sampled = np.asarray(frame, dtype=np.float64)[::stride, ::stride]
            overlap = np.isfinite(cached) & (sampled > 0)
            depth = disparity_to_depth(sampled[overlap], self.near, self.far)
            differences.append(np.abs(depth - cached[overlap]) / cached[overlap])
        values = np.concatenate(differences) if differences else np.zeros(0)
        return (float(np.median(values)) if values.size else float("nan")), int(values.size)
