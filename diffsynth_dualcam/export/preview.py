"""See a camera path inside the scene of its first frame before generating: a glTF (``.glb``) scene and its scale.

The scene (written with ``trimesh``) is in the y-up axes of 3D viewers, the axes ``export-3d`` writes
(:data:`~.export3d.VIEWER_AXES` applied to the first camera's OpenCV axes: x right, y up, z toward
the viewer, so the first camera looks down -z). Its nodes:

- ``points``: the first frame lifted into a coloured point cloud with its depth map, by export-3d's own lifting
  (:func:`~diffsynth_dualcam.export.export3d.lift_frames`, the same near/far reading of the disparity);
- ``frustum_NNNNN``: one frustum per camera (every k-th on long paths, the last always), its apex at the node's
  origin, so the node's transform is the camera's pose; coloured from first (purple) to last (yellow) frame as in
  the trajectory plot;
- ``path``: the polyline through every camera centre, in the same colours;
- ``axes``: the viewer axes at the first camera, x red, y (up) green, z (backward) blue.

Scale: the path length divided by the median scene depth of the first frame. "Scene depth" is the distance along
the first camera's viewing axis that export-3d gives each pixel: the 8-bit disparity ``d`` (near = bright) read as
``1/z = d/near + (1-d)/far`` with near 1 and far 10 unless told otherwise, in the units of the trajectory. The depth
maps are relative, so this is a convention, not a measurement; it is the one the 3D export uses, and the published
camera paths move :data:`PUBLISHED_STEP_RANGE` of it per frame (see ``benchmarks/path_scale.py``).

Layering: this module builds on ``camera`` and ``export3d`` and never imports ``pipeline``; the commands
(``dualcam trajectory show/preset --image``, ``dualcam generate --preview-only``) and the app prepare the images and
the cameras and call :func:`write_preview`.
"""
from __future__ import annotations

import io
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from matplotlib import colormaps
from PIL import Image, ImageOps, UnidentifiedImageError
from trimesh.path import Path3D
from trimesh.path.entities import Line

from ..camera import CameraTrajectory
from ..camera.plot import COLORMAP, frustum_depth, frustum_points
from ..camera.trajectory import aspects_differ
from ..io import atomic_write
from .export3d import DEFAULT_FAR, DEFAULT_NEAR, VIEWER_AXES, PointCloud, disparity_to_depth, lift_frames

#: At most this many points are lifted: the pixel stride grows until the first frame fits (a light file to view).
MAX_SCENE_POINTS = 100_000
#: At most this many frustums; longer paths show every k-th camera (the path itself goes through every centre).
MAX_SCENE_FRUSTA = 81
#: Frustum depth as a fraction of the median depth of the lifted points (with a scene; at most the trajectory plot's
#: frustum depth on a moving path).
FRUSTUM_FRACTION = 0.1
#: Motion per frame as a fraction of the median scene depth (path length / median depth / steps) of the published
#: camera paths: the three demo paths followed frame by frame, whole and their first 61 cameras, each against its own
#: depth map (``benchmarks/path_scale.py`` measures it; the presets at speed 1 move 0.0016-0.0031 on those scenes).
PUBLISHED_STEP_RANGE = (0.0013, 0.0020)
#: Paths whose motion per frame is more than this factor beyond the published range (either side) get a warning.
STEP_WARNING_FACTOR = 4.0
STEP_WARNING_RANGE = (PUBLISHED_STEP_RANGE[0] / STEP_WARNING_FACTOR, PUBLISHED_STEP_RANGE[1] * STEP_WARNING_FACTOR)


def scene_pixel_stride(*, width: int, height: int) -> int:
    """Smallest pixel stride that lifts at most :data:`MAX_SCENE_POINTS` points of a ``width`` x ``height`` frame."""
    stride = max(1, math.ceil(math.sqrt(width * height / MAX_SCENE_POINTS)))
    while math.ceil(width / stride) * math.ceil(height / stride) > MAX_SCENE_POINTS:
        stride += 1
    return stride


def lift_first_frame(
    image: Image.Image, depth: Image.Image, intrinsics: np.ndarray, near: float = DEFAULT_NEAR,
    far: float = DEFAULT_FAR,
) -> PointCloud:
    """The first frame as a coloured point cloud in its own camera's OpenCV axes (export3d's lifting).

    ``image`` and ``depth`` (8-bit disparity, near = bright) have the same size, the one the normalised
    ``intrinsics`` (fx, fy, cx, cy) describe; every :func:`scene_pixel_stride`-th pixel is kept, no voxel merging.
    """
    if image.size != depth.size:
        raise ValueError(f"image and depth map must have the same size, got {image.size} and {depth.size}")
    rgb = np.asarray(image.convert("RGB"))
    disparity = np.asarray(depth.convert("L"), dtype=np.float64) / 255.0
    return lift_frames(rgb[None], disparity[None], np.eye(4)[None], np.asarray(intrinsics, dtype=np.float64)[None],
                       frame_stride=1, pixel_stride=scene_pixel_stride(width=image.width, height=image.height),
                       near=near, far=far, voxel_size=0)


def median_scene_depth(depth: Image.Image, near: float = DEFAULT_NEAR, far: float = DEFAULT_FAR) -> float:
    """Median over the pixels of the distance export-3d gives an 8-bit disparity map (see the module docstring)."""
    disparity = np.asarray(depth.convert("L"), dtype=np.float64) / 255.0
    return float(np.median(disparity_to_depth(disparity, near, far)))


@dataclass(frozen=True)
class PathScale:
    """How far a camera path moves: its length, its frame count and the median scene depth (None: no depth map)."""

    length: float
    frames: int
    median_depth: float | None

    @property
    def ratio(self) -> float | None:
        """Path length over median scene depth."""
        return None if self.median_depth is None else self.length / self.median_depth

    @property
    def ratio_per_frame(self) -> float | None:
        """:attr:`ratio` per step from one frame to the next."""
        return None if self.ratio is None or self.frames < 2 else self.ratio / (self.frames - 1)

    def message(self) -> str:
        """One line, e.g. ``moves 0.12x the median scene depth over 61 frames (...)``."""
        if self.length == 0:
            return f"does not move (it may turn or zoom in place) over {self.frames} frames"
        if self.ratio is None:
            return (f"moves {self.length:.3g} trajectory units over {self.frames} frames (no depth map: no scale "
                    "against the scene)")
        return (f"moves {self.ratio:.2g}x the median scene depth over {self.frames} frames (path {self.length:.3g}, "
                f"median depth {self.median_depth:.3g} trajectory units)")

    def warning(self) -> str | None:
        """A warning when the motion per frame is far outside what the published camera paths do, else None."""
        step = self.ratio_per_frame
        if step is None or step == 0:
            return None
        low, high = PUBLISHED_STEP_RANGE
        measured = (f"the camera moves {step:.2g}x the median scene depth per frame, the published camera paths "
                    f"{low:g}x-{high:g}x")
        if step > STEP_WARNING_RANGE[1]:
            return (f"{measured}: this path may fly through the scene; scale it down (dualcam trajectory convert "
                    "--scale, or a lower --speed for a preset)")
        if step < STEP_WARNING_RANGE[0]:
            return (f"{measured}: the video will show little parallax; scale the path up (dualcam trajectory "
                    "convert --scale, or a higher --speed for a preset)")
        return None


def shown_cameras(num_frames: int) -> np.ndarray:
    """Indices of the cameras drawn as frustums: every k-th so that at most :data:`MAX_SCENE_FRUSTA`, and the last."""
    step = max(1, math.ceil((num_frames - 1) / (MAX_SCENE_FRUSTA - 1)))  # the last camera is always drawn
    shown = np.arange(0, num_frames, step)
    return shown if shown[-1] == num_frames - 1 else np.append(shown, num_frames - 1)


def frame_colors(num_frames: int) -> np.ndarray:
    """[F, 4] uint8 RGBA colours of the frames, first to last along the trajectory plot's colour map."""
    positions = np.arange(num_frames) / max(num_frames - 1, 1)
    return np.round(colormaps[COLORMAP](positions) * 255).astype(np.uint8)


def _viewer_pose(c2w: np.ndarray) -> np.ndarray:
    """A camera-to-world pose whose world is in viewer axes (the camera axes stay OpenCV)."""
    return np.diag([*VIEWER_AXES, 1.0]) @ c2w


def build_scene(trajectory: CameraTrajectory, cloud: PointCloud | None = None) -> trimesh.Scene:
    """The scene of ``trajectory`` and ``cloud`` (both in the same OpenCV world, normally the first camera's);
    see the module docstring for its nodes."""
    scene = trimesh.Scene()
    num_frames = len(trajectory)
    colors = frame_colors(num_frames)
    if cloud is not None and len(cloud):
        alpha = np.full((len(cloud), 1), 255, dtype=np.uint8)
        points = trimesh.PointCloud(cloud.points * VIEWER_AXES, colors=np.hstack([cloud.colors, alpha]))
        scene.add_geometry(points, node_name="points", geom_name="points")
        # A tenth of the scene's depth, or less on a short path, whose cameras would otherwise hide each other.
        depth = FRUSTUM_FRACTION * float(np.median(cloud.points[:, 2]))
        if np.ptp(trajectory.centres, axis=0).max() > 1e-9:
            depth = min(depth, frustum_depth(trajectory.centres))
    else:
        depth = frustum_depth(trajectory.centres)
    # Apex and image-plane corners in each camera's own axes; the node transform places them.
    local = frustum_points(CameraTrajectory(np.tile(np.eye(4), (num_frames, 1, 1)), trajectory.intrinsics), depth)
    edges = [Line([0, corner]) for corner in range(1, 5)] + [Line([1, 2, 3, 4, 1])]
    for index in shown_cameras(num_frames):
        frustum = Path3D(entities=[Line(edge.points) for edge in edges], vertices=local[index],
                         colors=np.tile(colors[index], (len(edges), 1)))
        name = f"frustum_{index:05d}"
        scene.add_geometry(frustum, node_name=name, geom_name=name, transform=_viewer_pose(trajectory.c2w[index]))
    if num_frames > 1:
        segments = [Line([step, step + 1]) for step in range(num_frames - 1)]
        path = Path3D(entities=segments, vertices=trajectory.centres * VIEWER_AXES, colors=colors[:-1])
        scene.add_geometry(path, node_name="path", geom_name="path")
    axes = Path3D(entities=[Line([0, 1]), Line([0, 2]), Line([0, 3])],
                  vertices=np.vstack([np.zeros(3), np.eye(3) * depth]),
                  colors=np.array([[220, 40, 40, 255], [40, 180, 40, 255], [40, 80, 230, 255]], dtype=np.uint8))
    scene.add_geometry(axes, node_name="axes", geom_name="axes", transform=_viewer_pose(trajectory.c2w[0]) @
                       np.diag([*VIEWER_AXES, 1.0]))
    return scene


def _unlit_materials(tree: dict) -> None:
    """Mark every material unlit (KHR_materials_unlit): points and lines show their own colours, unshaded."""
    for material in tree.get("materials", []):
        material.setdefault("extensions", {})["KHR_materials_unlit"] = {}
    if tree.get("materials"):
        tree["extensionsUsed"] = sorted({*tree.get("extensionsUsed", []), "KHR_materials_unlit"})


def write_scene(path: str | Path, trajectory: CameraTrajectory, cloud: PointCloud | None = None) -> Path:
    """Write :func:`build_scene` as a binary glTF (``.glb``) atomically; returns the path."""
    data = build_scene(trajectory, cloud).export(file_type="glb", tree_postprocessor=_unlit_materials)
    return atomic_write(path, data)


def write_preview(
    path: str | Path,
    trajectory: CameraTrajectory,
    image: Image.Image | None = None,
    depth: Image.Image | None = None,
    near: float = DEFAULT_NEAR,
    far: float = DEFAULT_FAR,
) -> PathScale:
    """Write the preview scene of ``trajectory`` (made relative to its first frame) to ``path``; returns its scale.

    With ``image`` and ``depth`` (same size, the one the intrinsics describe) the first frame is lifted into the
    scene; without either, the scene holds the cameras and the path only.
    """
    relative = trajectory.relative()
    cloud = median = None
    if image is not None and depth is not None:
        cloud = lift_first_frame(image, depth, relative.intrinsics[0], near, far)
        median = median_scene_depth(depth, near, far)
    write_scene(path, relative, cloud)
    return PathScale(relative.path_length(), len(relative), median)


def read_image(option: str, path: Path, mode: str) -> Image.Image:
    """An image file turned upright by its EXIF orientation and converted to ``mode``; errors name ``option``."""
    if not path.is_file():
        raise FileNotFoundError(f"{option}: no such file: {path}")
    try:
        with Image.open(path) as image:
            if image.mode.startswith(("I", "F")):
                raise ValueError(f"{option}: {path} has {image.mode!r} pixels, expected an 8-bit image (a depth map "
                                 "is 8-bit grayscale disparity, near = bright)")
            return ImageOps.exif_transpose(image).convert(mode)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError, struct.error) as error:
        # struct.error and SyntaxError: Pillow's errors for damaged EXIF data
        raise ValueError(f"{option}: cannot read {path} as an image ({error})") from None


def load_scene_inputs(
    trajectory: CameraTrajectory,
    image_path: Path,
    depth_path: Path | None,
    estimate_depth: Callable[[Image.Image], Image.Image] | None = None,
) -> tuple[CameraTrajectory, Image.Image, Image.Image | None]:
    """(trajectory, image, depth) for ``trajectory show/preset --image``: the scene is lifted at the image's own
    size, so the intrinsics are cover-cropped from the trajectory's ``source_size`` to it and the depth map (given,
    estimated with ``estimate_depth``, or None) is resized to it. Everything is checked before anything is written."""
    image = read_image("--image", image_path, "RGB")
    if depth_path is not None:
        depth = read_image("--depth", depth_path, "L")
        image_aspect, depth_aspect = image.width / image.height, depth.width / depth.height
        if aspects_differ(image.size, depth.size):
            raise ValueError(f"--depth is {depth.width}x{depth.height} (aspect {depth_aspect:.3f}), --image is "
                             f"{image.width}x{image.height} (aspect {image_aspect:.3f}): a depth map must show the "
                             "image's frame")
        depth = depth.resize(image.size, Image.Resampling.BICUBIC)
    elif estimate_depth is not None:
        depth = estimate_depth(image)
    else:
        depth = None
    if trajectory.source_size is not None and tuple(trajectory.source_size) != image.size:
        trajectory = trajectory.cover_crop(target_size=image.size)
    return trajectory, image, depth


#: Frustums drawn by :func:`render_scene` (evenly spaced, first and last included), so that they stay apart.
RENDERED_FRUSTA = 12
#: (elevation, azimuth) in degrees of the two panels of :func:`render_scene`.
RENDER_VIEWS = ((25.0, -70.0), (35.0, -125.0))


def render_scene(scene: trimesh.Scene, path: str | Path, title: str | None = None) -> Path:
    """A PNG picture of a scene of :func:`build_scene` drawn with matplotlib, for places without a 3D viewer (such as
    the docs): the whole scene, and a close-up of the box around the cameras with the points inside it; at most
    :data:`RENDERED_FRUSTA` frustums. y (up) is drawn upward, -z (the first camera's viewing direction) as "ahead"."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    frusta = sorted(node for node in scene.graph.nodes_geometry if node.startswith("frustum_"))
    drawn_frusta = {frusta[index] for index in np.linspace(0, len(frusta) - 1, min(len(frusta), RENDERED_FRUSTA))
                    .round().astype(int)} if frusta else set()
    points, colors, lines = np.zeros((0, 3)), np.zeros((0, 3)), []
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geometry = scene.geometry[name]
        vertices = trimesh.transform_points(np.asarray(geometry.vertices, dtype=np.float64), transform)
        if isinstance(geometry, trimesh.PointCloud):
            points, colors = vertices, np.asarray(geometry.colors)[:, :3] / 255
        elif not node.startswith("frustum_") or node in drawn_frusta:
            width = 2.0 if node == "path" else 1.0
            lines += [(vertices[entity.points], color[:3], width)
                      for entity, color in zip(geometry.entities, np.asarray(geometry.colors) / 255)]
    cameras = np.concatenate([segment for segment, _, _ in lines])
    low, high = cameras.min(axis=0), cameras.max(axis=0)
    margin = 0.5 * float(np.max(high - low))
    near_box = np.all((points >= low - margin) & (points <= high + margin), axis=1)
    panels = [("whole scene", points, colors, np.concatenate([points, cameras])),
              ("around the cameras", points[near_box], colors[near_box], np.stack([low - margin, high + margin]))]

    figure = Figure(figsize=(12, 5.6), layout="constrained")
    FigureCanvasAgg(figure)
    for index, ((panel_title, panel_points, panel_colors, extent), view) in enumerate(zip(panels, RENDER_VIEWS)):
        axis = figure.add_subplot(1, 2, index + 1, projection="3d", computed_zorder=False)  # cameras over points
        if len(panel_points):
            axis.scatter(*_matplotlib_axes(panel_points), c=panel_colors, s=0.4 if index == 0 else 2.0,
                         linewidths=0, depthshade=False, zorder=1)
        for segment, color, width in lines:
            axis.plot(*_matplotlib_axes(segment), color=color, linewidth=width, zorder=2)
        low_end, high_end = extent.min(axis=0), extent.max(axis=0)
        centre, half = (low_end + high_end) / 2, max(float(np.max(high_end - low_end)) / 2, 1e-6)
        axis.set(xlim=(centre[0] - half, centre[0] + half), ylim=(-centre[2] - half, -centre[2] + half),
                 zlim=(centre[1] - half, centre[1] + half), xlabel="x (right)", ylabel="-z (ahead)",
                 zlabel="y (up)", title=panel_title)
        axis.set_box_aspect((1, 1, 1))
        axis.view_init(elev=view[0], azim=view[1])
    if title:
        figure.suptitle(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return atomic_write(path, buffer.getvalue())


def _matplotlib_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Viewer (x, y, z) as matplotlib's (x, -z, y): its third axis is drawn upward."""
    return points[:, 0], -points[:, 2], points[:, 1]
