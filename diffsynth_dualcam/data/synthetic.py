"""A small synthetic dataset with exact geometry: glowing 3D points seen by a moving camera.

Used to smoke-test the data and training path without downloading anything: every clip is written in the
RealEstate10K layout (PNG frames or an MP4, a ``<clip>.txt`` pose file, a depth folder) with a caption.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ..camera import CameraTrajectory

BLOB_SIGMA = 1.5


def orbit_trajectory(num_frames: int, rng: np.random.Generator, intrinsics: tuple[float, float, float, float]
                     ) -> CameraTrajectory:
    """A camera sliding sideways and turning slightly, with a random start pose."""
    c2w = np.tile(np.eye(4), (num_frames, 1, 1))
    yaw0, step, turn = rng.uniform(-0.3, 0.3), rng.uniform(0.03, 0.08), rng.uniform(-0.02, 0.02)
    for i in range(num_frames):
        angle = yaw0 + turn * i
        c2w[i, :3, :3] = [[np.cos(angle), 0.0, np.sin(angle)], [0.0, 1.0, 0.0], [-np.sin(angle), 0.0, np.cos(angle)]]
        c2w[i, :3, 3] = [step * i, 0.02 * i, 0.0]
    return CameraTrajectory(c2w, np.tile(np.asarray(intrinsics, dtype=np.float64), (num_frames, 1)))


def render_points(camera: CameraTrajectory, points: np.ndarray, colors: np.ndarray, *, width: int, height: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs at the projections of ``points`` [P, 3]: RGB uint8 [F, H, W, 3] and disparity uint8 [F, H, W].

    Pixel ``(j, i)`` covers [j, j+1) x [i, i+1), so its centre is at (j + 0.5, i + 0.5); the disparity of a blob
    is ``255 / z`` clipped to 255 on a dark background.
    """
    columns = np.arange(width) + 0.5
    rows = np.arange(height) + 0.5
    pixel = camera.pixel_intrinsics(width=width, height=height)
    rgb = np.zeros((len(camera), height, width, 3))
    disparity = np.full((len(camera), height, width), 10.0)
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1)
    for frame, w2c in enumerate(camera.w2c):
        in_camera = homogeneous @ w2c.T
        for (x, y, z, _), color in zip(in_camera, colors):
            if z <= 0.1:
                continue
            u = pixel[frame, 0] * x / z + pixel[frame, 2]
            v = pixel[frame, 1] * y / z + pixel[frame, 3]
            blob = np.exp(-((columns[None, :] - u) ** 2 + (rows[:, None] - v) ** 2) / (2 * BLOB_SIGMA**2))
            rgb[frame] += blob[..., None] * color
            disparity[frame] = np.maximum(disparity[frame], blob * min(255.0, 255.0 / z))
    return np.clip(rgb, 0, 255).round().astype(np.uint8), np.clip(disparity, 0, 255).round().astype(np.uint8)


def write_synthetic_dataset(
    root: str | Path,
    num_clips: int = 3,
    num_frames: int = 9,
    *,
    width: int = 96,
    height: int = 64,
    num_points: int = 24,
    video: bool = False,
    seed: int = 0,
    points: np.ndarray | None = None,
    intrinsics: tuple[float, float, float, float] = (0.6, 0.9, 0.5, 0.5),
) -> dict[str, CameraTrajectory]:
    """Write ``num_clips`` clips under ``root``; returns each clip's cameras by clip name.

    ``points`` [P, 3] replaces the random scene (world coordinates of the first camera of every clip).
    ``video`` writes ``video.mp4`` and ``depth.mp4`` instead of PNG folders.
    """
    import imageio.v3 as iio

    root = Path(root)
    rng = np.random.default_rng(seed)
    captions, cameras = {}, {}
    for index in range(num_clips):
        name = f"clip{index:03d}"
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        camera = orbit_trajectory(num_frames, rng, intrinsics)
        scene = points if points is not None else np.stack([
            rng.uniform(-1.5, 1.5, num_points), rng.uniform(-1.0, 1.0, num_points), rng.uniform(2.0, 5.0, num_points)
        ], axis=1)
        colors = rng.uniform(120, 255, (len(scene), 3))
        rgb, disparity = render_points(camera, scene, colors, width=width, height=height)
        if video:
            iio.imwrite(folder / "video.mp4", rgb, fps=10, codec="libx264", macro_block_size=1)
            iio.imwrite(folder / "depth.mp4", np.repeat(disparity[..., None], 3, axis=-1), fps=10,
                        codec="libx264", macro_block_size=1)
        else:
            for sub, frames in (("frames", rgb), ("depth", disparity)):
                (folder / sub).mkdir(exist_ok=True)
                for frame_index, frame in enumerate(frames):
                    Image.fromarray(frame).save(folder / sub / f"{frame_index:05d}.png")
        rows = camera.to_realestate10k()
        lines = [f"https://www.youtube.com/watch?v=synthetic{index}"]
        lines += [" ".join(f"{value:.10g}" for value in row) for row in rows]
        (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")
        captions[name] = f"synthetic scene {index} with {len(scene)} glowing points"
        cameras[name] = camera
    (root / "captions.json").write_text(json.dumps(captions, indent=1, allow_nan=False))
    return cameras
