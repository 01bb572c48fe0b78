"""Lift generated RGB + depth frames into a coloured point cloud and export the scene for other 3D tools.

Depth model: the depth video is relative inverse depth (disparity) ``g`` in [0, 1], near = 1. It is first mapped
onto the input depth map ``r`` of frame 0 by the affine fit ``r ~ a * g + b`` (least squares on frame 0, the same
``a, b`` for every frame), then read as an inverse-depth blend between two planes: ``1 / z = d / near + (1 - d) / far``,
so disparity 1 lies at distance ``near`` and disparity 0 at ``far``, in the units of the camera trajectory.
"""
from __future__ import annotations

import io
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from PIL import Image
from plyfile import PlyData, PlyElement
from tqdm import tqdm

from ..camera import CameraTrajectory
from ..camera.formats import colmap_image_name, write_colmap
from ..io import atomic_write

#: File of a run folder holding the frame-0 depth map the generation was conditioned on (output size, 8-bit).
INPUT_DEPTH_FILE = "input_depth.png"
#: Default distances of disparity 1 (the nearest depth value) and 0 (the farthest) when depth maps are lifted.
DEFAULT_NEAR, DEFAULT_FAR = 1.0, 10.0
#: Per-axis signs from OpenCV camera axes (x right, y down, z forward) to the y-up axes of 3D viewers.
VIEWER_AXES = np.array([1.0, -1.0, -1.0])
#: Degree-0 spherical-harmonic constant of 3D Gaussian Splatting: a colour c in [0, 1] is stored as (c - 0.5) / SH_C0.
SH_C0 = 0.28209479177387814
#: Standard deviation of an exported Gaussian, in footprints of the point it stands for.
GAUSSIAN_SIGMA_PER_FOOTPRINT = 0.5
#: Opacity of every exported Gaussian (stored as its logit).
GAUSSIAN_OPACITY = 0.95
#: What `dualcam export-3d --format` can write, and what it writes by default.
EXPORT_FORMATS = ("points", "colmap", "gaussians")
DEFAULT_EXPORT_FORMATS = ("points", "colmap")
#: Relative depth difference within which a point counts as lying on a surface a frame shows (:func:`seen_by`).
SEEN_DEPTH_TOLERANCE = 0.05


@dataclass
class PointCloud:
    """World points [N, 3] (float64) and their colours [N, 3] (uint8).

    `footprints` [N] (float64, optional): the width of surface each point stands for, in world units (a sampled
    pixel's footprint at its depth, at least the voxel edge after merging); :func:`lift_frames` fills it in.
    """

    points: np.ndarray
    colors: np.ndarray
    footprints: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.points)


def fit_scale_shift(source: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Least-squares ``scale, shift`` with ``target ~ scale * source + shift`` over all pixels."""
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.shape != target.shape:
        raise ValueError(f"source and target must have the same shape, got {source.shape} and {target.shape}")
    source, target = source.ravel(), target.ravel()
    if source.size < 2 or np.ptp(source) == 0:
        raise ValueError("scale/shift fit needs at least two distinct source values")
    design = np.stack([source, np.ones_like(source)], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(design, target, rcond=None)
    return float(scale), float(shift)


def disparity_to_depth(disparity: np.ndarray, near: float, far: float) -> np.ndarray:
    """Distance along the optical axis of normalised disparity in [0, 1]: ``1/z = d/near + (1-d)/far``."""
    if not 0 < near < far:
        raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
    disparity = np.clip(np.asarray(disparity, dtype=np.float64), 0.0, 1.0)
    return 1.0 / (disparity / near + (1.0 - disparity) / far)


def pixel_footprint(depth: np.ndarray, intrinsics: np.ndarray, width: int, pixel_stride: int = 1) -> np.ndarray:
    """World-space width of one sampled pixel at distance `depth`: ``depth / fx_pixels * pixel_stride``.

    `intrinsics` is the normalised (fx, fy, cx, cy) of a frame `width` pixels wide.
    """
    return np.asarray(depth, dtype=np.float64) * pixel_stride / (float(intrinsics[0]) * width)


def unproject(depth: np.ndarray, intrinsics: np.ndarray, c2w: np.ndarray, pixel_stride: int = 1) -> np.ndarray:
    """World points [h, w, 3] of the pixel centres ``(u + 0.5, v + 0.5)`` sampled every `pixel_stride` pixels.

    `depth` [H, W] is the distance along the optical axis, `intrinsics` the normalised (fx, fy, cx, cy) and
    `c2w` the 4x4 camera-to-world pose in OpenCV axes.
    """
    height, width = depth.shape
    fx, fy, cx, cy = np.asarray(intrinsics, dtype=np.float64) * np.array([width, height, width, height])
    rows = np.arange(0, height, pixel_stride)
    cols = np.arange(0, width, pixel_stride)
    u, v = np.meshgrid(cols + 0.5, rows + 0.5)
    z = np.asarray(depth, dtype=np.float64)[np.ix_(rows, cols)]
    camera_points = np.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], axis=-1)
    c2w = np.asarray(c2w, dtype=np.float64)
    return camera_points @ c2w[:3, :3].T + c2w[:3, 3]


def seen_by(points: np.ndarray, depth: np.ndarray, intrinsics: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """Which world `points` [N, 3] a frame shows: they project into its image, in front of the camera, onto a
    pixel whose `depth` [H, W] agrees with theirs within :data:`SEEN_DEPTH_TOLERANCE` (relative)."""
    height, width = depth.shape
    fx, fy, cx, cy = np.asarray(intrinsics, dtype=np.float64) * np.array([width, height, width, height])
    w2c = np.linalg.inv(np.asarray(c2w, dtype=np.float64))
    camera_points = points @ w2c[:3, :3].T + w2c[:3, 3]
    z = camera_points[:, 2]
    seen = z > 0
    safe_z = np.where(seen, z, 1.0)
    # Pixel (row, col) covers [col, col + 1) x [row, row + 1): unproject puts its centre at (col + 0.5, row + 0.5).
    cols = np.floor(fx * camera_points[:, 0] / safe_z + cx)
    rows = np.floor(fy * camera_points[:, 1] / safe_z + cy)
    seen &= (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    surface = depth[rows[seen].astype(np.int64), cols[seen].astype(np.int64)]
    seen[seen] = np.abs(z[seen] - surface) <= SEEN_DEPTH_TOLERANCE * surface
    return seen


def voxel_downsample(cloud: PointCloud, voxel_size: float) -> PointCloud:
    """One point per occupied voxel of edge `voxel_size`: the mean position and mean colour of its points."""
    if voxel_size <= 0:
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")
    if len(cloud) == 0:
        return cloud
    cells = np.floor(cloud.points / voxel_size).astype(np.int64)
    cells -= cells.min(axis=0)
    grid = cells.max(axis=0) + 1
    if np.prod(grid.astype(np.float64)) >= 2.0**62:
        raise ValueError(f"voxel_size {voxel_size} is too small for a cloud spanning {np.ptp(cloud.points, axis=0)}")
    # One integer per voxel makes the grouping a 1-D unique, several times faster than unique over rows.
    keys = np.ravel_multi_index(cells.T, tuple(grid))
    _, voxel_of_point, counts = np.unique(keys, return_inverse=True, return_counts=True)
    points = np.stack([np.bincount(voxel_of_point, cloud.points[:, axis]) for axis in range(3)], axis=1)
    colors = np.stack([np.bincount(voxel_of_point, cloud.colors[:, axis]) for axis in range(3)], axis=1)
    points /= counts[:, None]
    colors = np.round(colors / counts[:, None]).astype(np.uint8)
    footprints = None
    if cloud.footprints is not None:
        # Merged points lie about one voxel apart, so each stands for at least a voxel's width of surface.
        footprints = np.maximum(np.bincount(voxel_of_point, cloud.footprints) / counts, voxel_size)
    return PointCloud(points, colors, footprints)


def check_lift_options(frame_stride: int, pixel_stride: int, near: float, far: float,
                       voxel_size: float | None) -> None:
    """A ValueError naming the first option of :func:`lift_frames` / :func:`export_run` that is out of range."""
    strides = (("frame_stride (--frame-stride)", frame_stride), ("pixel_stride (--pixel-stride)", pixel_stride))
    for name, value in strides:
        if not _is_number(value, whole=True) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    for name, value in (("near (--near)", near), ("far (--far)", far)):
        if not _is_number(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not 0 < near < far:
        raise ValueError(f"need 0 < near < far (--near, --far), got near={near}, far={far}")
    if voxel_size is not None and (not _is_number(voxel_size) or voxel_size < 0):
        raise ValueError(f"voxel_size (--voxel-size) must be a finite number >= 0 (0 keeps every point) or None "
                         f"(automatic), got {voxel_size!r}")


def _is_number(value: object, whole: bool = False) -> bool:
    """Whether `value` is a finite real number (an integer when `whole`), not a bool."""
    if isinstance(value, bool):
        return False
    if whole:
        return isinstance(value, (int, np.integer))
    return isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value)


def lift_frames(
    rgb: np.ndarray,
    disparity: np.ndarray,
    c2w: np.ndarray,
    intrinsics: np.ndarray,
    reference_disparity: np.ndarray | None = None,
    frame_stride: int = 4,
    pixel_stride: int = 2,
    near: float = DEFAULT_NEAR,
    far: float = DEFAULT_FAR,
    voxel_size: float | None = None,
    drop_seen: bool = False,
) -> PointCloud:
    """Coloured point cloud of every `frame_stride`-th frame.

    rgb [F, H, W, 3] uint8; disparity [F, H, W] in [0, 1] (near = 1); c2w [F, 4, 4]; intrinsics [F, 4] normalised.
    `reference_disparity` [H, W] in [0, 1] is the input depth of frame 0 that fixes the affine disparity scale
    (none: the generated disparity is used as is). `voxel_size` None picks the footprint of one sampled pixel at
    the median depth of frame 0; 0 keeps every point. `drop_seen` keeps of each frame only the points that no
    earlier lifted frame already shows (:func:`seen_by`), so that every surface is held once. The cloud carries each
    point's footprint (:func:`pixel_footprint`, merged by :func:`voxel_downsample`).
    """
    check_lift_options(frame_stride, pixel_stride, near, far, voxel_size)
    rgb = np.asarray(rgb)
    disparity = np.asarray(disparity, dtype=np.float64)
    num_frames = len(rgb)
    if rgb.ndim != 4 or rgb.shape[-1] != 3:
        raise ValueError(f"rgb must be [F, H, W, 3], got shape {rgb.shape}")
    if disparity.shape != rgb.shape[:3]:
        raise ValueError(f"disparity must be [F, H, W] = {rgb.shape[:3]}, got shape {disparity.shape}")
    if len(c2w) != num_frames or len(intrinsics) != num_frames:
        raise ValueError(
            f"need one camera per frame: {num_frames} frames, {len(c2w)} poses, {len(intrinsics)} intrinsics rows"
        )
    if reference_disparity is not None:
        scale, shift = fit_scale_shift(disparity[0], reference_disparity)
        disparity = scale * disparity + shift
    width = rgb.shape[2]
    points, colors, footprints, lifted = [], [], [], []
    # Comparing each frame with every earlier one is what takes time; a plain lift is quick.
    for index in tqdm(range(0, num_frames, frame_stride), desc="Lifting frames", leave=False, disable=not drop_seen):
        depth = disparity_to_depth(disparity[index], near, far)
        frame_points = unproject(depth, intrinsics[index], c2w[index], pixel_stride).reshape(-1, 3)
        keep = np.ones(len(frame_points), dtype=bool)
        if drop_seen:
            for earlier in reversed(lifted):  # the latest frames share the most with this one
                keep[keep] = ~seen_by(frame_points[keep], *earlier)
            lifted.append((depth, intrinsics[index], c2w[index]))
        points.append(frame_points[keep])
        colors.append(rgb[index, ::pixel_stride, ::pixel_stride].reshape(-1, 3)[keep])
        footprints.append(pixel_footprint(depth[::pixel_stride, ::pixel_stride], intrinsics[index], width,
                                          pixel_stride).ravel()[keep])
    cloud = PointCloud(np.concatenate(points), np.concatenate(colors).astype(np.uint8), np.concatenate(footprints))
    if voxel_size is None:
        first_depth = disparity_to_depth(disparity[0], near, far)
        voxel_size = float(pixel_footprint(np.median(first_depth), intrinsics[0], width, pixel_stride))
    return voxel_downsample(cloud, voxel_size) if voxel_size > 0 else cloud


def write_ply(path: str | Path, cloud: PointCloud) -> Path:
    """Binary PLY with float32 x, y, z and uint8 red, green, blue per vertex."""
    vertices = np.empty(len(cloud), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"),
                                           ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    for axis, name in enumerate("xyz"):
        vertices[name] = cloud.points[:, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        vertices[name] = cloud.colors[:, channel]
    buffer = io.BytesIO()
    PlyData([PlyElement.describe(vertices, "vertex")], byte_order="<").write(buffer)
    path = Path(path)
    atomic_write(path, buffer.getvalue())
    return path


def read_ply(path: str | Path) -> PointCloud:
    """The vertices and colours of a PLY written by :func:`write_ply`."""
    vertex = PlyData.read(str(path))["vertex"]
    points = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1).astype(np.float64)
    colors = np.stack([vertex["red"], vertex["green"], vertex["blue"]], axis=1).astype(np.uint8)
    return PointCloud(points, colors)


def write_colmap_points(path: str | Path, cloud: PointCloud) -> Path:
    """COLMAP `points3D.txt` of the cloud: one point per line, no 2-D observations (empty tracks)."""
    lines = ["# 3D point list: POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] (empty: lifted from depth)"]
    if len(cloud):
        table = np.column_stack([np.arange(1, len(cloud) + 1), cloud.points, cloud.colors, np.zeros(len(cloud))])
        buffer = io.StringIO()
        np.savetxt(buffer, table, fmt=["%d", "%.7g", "%.7g", "%.7g", "%d", "%d", "%d", "%d"])
        lines.append(buffer.getvalue().rstrip("\n"))
    path = Path(path)
    atomic_write(path, ("\n".join(lines) + "\n").encode())
    return path


def write_gaussians_ply(path: str | Path, cloud: PointCloud, sh_degree: int = 3) -> Path:
    """Binary PLY of one isotropic 3D Gaussian per point, in the attribute layout of 3D Gaussian Splatting.

    float32 ``x y z nx ny nz f_dc_0..2 f_rest_0..K opacity scale_0..2 rot_0..3``: normals zero, ``f_dc`` the colour
    as a degree-0 SH coefficient ``(rgb / 255 - 0.5) / SH_C0``, ``f_rest`` the ``3 ((sh_degree + 1)^2 - 1)`` higher
    coefficients (zero: no view dependence), ``opacity`` the logit of :data:`GAUSSIAN_OPACITY`, ``scale_*`` the log
    standard deviation ``GAUSSIAN_SIGMA_PER_FOOTPRINT * footprint`` on every axis and ``rot`` the identity
    quaternion (w, x, y, z). The cloud needs footprints (a cloud from :func:`lift_frames` has them).
    """
    _check_sh_degree(sh_degree)
    if cloud.footprints is None:
        raise ValueError("the point cloud has no footprints to size its Gaussians (lift it with lift_frames)")
    footprints = np.asarray(cloud.footprints, dtype=np.float64)
    if footprints.shape != (len(cloud),) or not np.all(np.isfinite(footprints) & (footprints > 0)):
        raise ValueError(f"need one finite positive footprint per point ({len(cloud)}), got shape {footprints.shape}")
    num_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{index}" for index in range(num_rest)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    vertices = np.zeros(len(cloud), dtype=[(name, "f4") for name in names])
    for axis, name in enumerate("xyz"):
        vertices[name] = cloud.points[:, axis]
    for channel in range(3):
        vertices[f"f_dc_{channel}"] = (cloud.colors[:, channel] / 255.0 - 0.5) / SH_C0
    vertices["opacity"] = math.log(GAUSSIAN_OPACITY / (1.0 - GAUSSIAN_OPACITY))
    log_sigma = np.log(GAUSSIAN_SIGMA_PER_FOOTPRINT * footprints)
    for axis in range(3):
        vertices[f"scale_{axis}"] = log_sigma
    vertices["rot_0"] = 1.0
    buffer = io.BytesIO()
    PlyData([PlyElement.describe(vertices, "vertex")], byte_order="<").write(buffer)
    path = Path(path)
    atomic_write(path, buffer.getvalue())
    return path


def _check_sh_degree(sh_degree: int) -> None:
    """A ValueError unless `sh_degree` is a whole number from 0 to 3 (the degrees 3D Gaussian Splatting uses)."""
    if not _is_number(sh_degree, whole=True) or not 0 <= sh_degree <= 3:
        raise ValueError(f"sh_degree (--sh-degree) must be a whole number from 0 to 3, got {sh_degree!r}")


@dataclass
class GeneratedRun:
    """What a run folder holds: frames, depth frames as disparity in [0, 1], cameras and the frame-0 input depth."""

    rgb: np.ndarray
    disparity: np.ndarray
    trajectory: CameraTrajectory
    input_disparity: np.ndarray | None


def _read_video(path: Path) -> np.ndarray:
    """All frames of a video as [F, H, W, 3] uint8."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a run folder holds video.mp4, depth.mp4 and params.json")
    try:
        frames = imageio.mimread(path, memtest=False)
    except Exception as error:  # imageio's backends raise OSError, RuntimeError, ... for damaged videos
        raise ValueError(f"{path}: not a readable video ({str(error).splitlines()[0]})") from None
    return np.stack([np.asarray(frame)[..., :3] for frame in frames])


def load_run(run_dir: str | Path, input_depth: str | Path | None = None) -> GeneratedRun:
    """Read a folder written by ``DualCamCtrlOutput.save``; `input_depth` overrides its `input_depth.png`."""
    run_dir = Path(run_dir)
    params_path = run_dir / "params.json"
    if not params_path.is_file():
        raise FileNotFoundError(f"{params_path} not found: RUN_DIR must be a folder written by a generation")
    camera = json.loads(params_path.read_text()).get("camera") or {}
    if camera.get("type") != "trajectory":
        raise ValueError(f"{params_path}: the run's cameras are unknown (camera type {camera.get('type')!r}); "
                         "3D export needs a run generated from a camera trajectory")
    trajectory = CameraTrajectory.from_realestate10k(camera["realestate10k"])
    rgb = _read_video(run_dir / "video.mp4")
    disparity = _read_video(run_dir / "depth.mp4").mean(axis=-1) / 255.0
    if rgb.shape[:3] != disparity.shape or len(rgb) != len(trajectory):
        raise ValueError(f"{run_dir}: video {list(rgb.shape[:3])}, depth video {list(disparity.shape)} and "
                         f"{len(trajectory)} cameras do not match")
    depth_path = Path(input_depth) if input_depth is not None else run_dir / INPUT_DEPTH_FILE
    input_disparity = None
    if input_depth is None and not depth_path.is_file():
        warnings.warn(f"{depth_path} not found: the depth video is lifted without fitting it to the input depth",
                      stacklevel=2)
    else:
        if not depth_path.is_file():
            raise FileNotFoundError(f"input depth map {depth_path} not found")
        try:
            with Image.open(depth_path) as image:
                depth_image = image.convert("L")
        except Exception as error:  # Pillow raises several types for files that are not (whole) images
            raise ValueError(f"{depth_path}: not a readable image ({error})") from None
        if depth_image.size != (rgb.shape[2], rgb.shape[1]):
            raise ValueError(f"{depth_path}: input depth is {depth_image.width}x{depth_image.height}, "
                             f"the video is {rgb.shape[2]}x{rgb.shape[1]}")
        input_disparity = np.asarray(depth_image, dtype=np.float64) / 255.0
    return GeneratedRun(rgb, disparity, trajectory.relative(), input_disparity)


def export_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    input_depth: str | Path | None = None,
    frame_stride: int = 4,
    pixel_stride: int = 2,
    near: float = DEFAULT_NEAR,
    far: float = DEFAULT_FAR,
    voxel_size: float | None = None,
    formats: str | Sequence[str] = DEFAULT_EXPORT_FORMATS,
    sh_degree: int = 3,
) -> dict[str, Path]:
    """Write the run as each of `formats` (names from :data:`EXPORT_FORMATS`) into `out_dir` (default: the run).

    "points": `points.ply`; "colmap": the frames as `images/frame_NNNNN.png` and the COLMAP text model `sparse/0/`
    with the points; "gaussians": `gaussians.ply`, 3D Gaussian Splatting with SH degree `sh_degree`
    (:func:`write_gaussians_ply`) of the points no earlier lifted frame shows (``drop_seen``: one Gaussian per
    surface, as Gaussians of several frames on one surface would blend their colours where they overlap; no
    voxel merging unless `voxel_size` is given). Returns the written paths by name ("points.ply", "images",
    "sparse", "gaussians.ply"). The options are checked before anything is read or written (see
    :func:`check_lift_options`).
    """
    check_lift_options(frame_stride, pixel_stride, near, far, voxel_size)
    formats = check_export_formats(formats)
    if "gaussians" in formats:
        _check_sh_degree(sh_degree)
    run = load_run(run_dir, input_depth)
    out_dir = Path(out_dir) if out_dir is not None else Path(run_dir)

    def lift(drop_seen: bool) -> PointCloud:
        # Automatic voxels merge the overlapping views of a surface; with drop_seen there are none to merge.
        voxel = 0.0 if drop_seen and voxel_size is None else voxel_size
        return lift_frames(
            run.rgb, run.disparity, run.trajectory.c2w, run.trajectory.intrinsics, run.input_disparity,
            frame_stride=frame_stride, pixel_stride=pixel_stride, near=near, far=far, voxel_size=voxel,
            drop_seen=drop_seen,
        )

    cloud = lift(drop_seen=False) if {"points", "colmap"} & set(formats) else None
    written = {}
    if "colmap" in formats:
        # Image names follow CameraTrajectory.save(format="colmap"), which writes cameras.txt and images.txt.
        for index, frame in enumerate(tqdm(run.rgb, desc="Writing frames", leave=False)):
            png = io.BytesIO()
            Image.fromarray(frame).save(png, format="PNG", compress_level=1)
            atomic_write(out_dir / "images" / colmap_image_name(index, len(run.rgb)), png.getvalue())
        height, width = run.rgb.shape[1:3]
        sparse = out_dir / "sparse" / "0"
        # An earlier export's points are replaced by this export's just below.
        write_colmap(CameraTrajectory(run.trajectory.c2w, run.trajectory.intrinsics, (width, height)), sparse,
                     replace_points=True)
        write_colmap_points(sparse / "points3D.txt", cloud)
    if "points" in formats:
        written["points.ply"] = write_ply(out_dir / "points.ply", cloud)
    if "colmap" in formats:
        written.update({"images": out_dir / "images", "sparse": sparse})
    if "gaussians" in formats:
        written["gaussians.ply"] = write_gaussians_ply(out_dir / "gaussians.ply", lift(drop_seen=True), sh_degree)
    return written


def check_export_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """The export formats as a tuple of names from :data:`EXPORT_FORMATS`; a ValueError for anything else."""
    names = (formats,) if isinstance(formats, str) else tuple(formats)
    unknown = [name for name in names if name not in EXPORT_FORMATS]
    if not names or unknown:
        raise ValueError(f"formats (--format) must be one or more of {', '.join(EXPORT_FORMATS)}, "
                         f"got {', '.join(map(repr, unknown)) if unknown else 'none'}")
    return names
