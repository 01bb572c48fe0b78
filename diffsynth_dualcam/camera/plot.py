"""Pictures of a trajectory: camera frusta from above and from the side, coloured by time."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from scipy.spatial.transform import Rotation

from ..io import atomic_write
from .trajectory import CameraTrajectory

#: At most this many frusta are drawn (evenly spaced, first and last included); the path shows every frame.
MAX_FRUSTA = 24
#: Frustum depth as a fraction of the largest extent of the camera path.
FRUSTUM_SCALE = 0.15
# Edges of a frustum as index pairs into [centre, 4 image-plane corners].
_FRUSTUM_EDGES = [(0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (2, 3), (3, 4), (4, 1)]
# (panel title, horizontal axis, vertical axis, axis labels, invert the vertical axis)
_VIEWS = [
    ("from above (x-z)", 0, 2, ("x (right)", "z (forward)"), False),
    ("from the side (z-y, y down)", 2, 1, ("z (forward)", "y (down)"), True),
]


def frustum_points(trajectory: CameraTrajectory, depth: float) -> np.ndarray:
    """[F, 5, 3] world points of each frustum: the camera centre, then the image corners at ``depth``."""
    fx, fy, cx, cy = trajectory.intrinsics.T
    corner_u = np.stack([0 - cx, 1 - cx, 1 - cx, 0 - cx], 1) / fx[:, None]
    corner_v = np.stack([0 - cy, 0 - cy, 1 - cy, 1 - cy], 1) / fy[:, None]
    corners = np.stack([corner_u, corner_v, np.ones_like(corner_u)], -1) * depth  # [F, 4, 3] camera axes
    rotation, centre = trajectory.c2w[:, :3, :3], trajectory.c2w[:, :3, 3]
    world_corners = np.einsum("fij,fkj->fki", rotation, corners) + centre[:, None]
    return np.concatenate([centre[:, None], world_corners], axis=1)


def plot_trajectory(trajectory: CameraTrajectory, path: str | Path, title: str | None = None) -> Path:
    """Write a PNG of ``trajectory`` in its first frame's camera axes; returns ``path``."""
    path = Path(path)
    relative = trajectory.relative()
    centres = relative.centres
    extent = float(np.ptp(centres, axis=0).max())
    depth = FRUSTUM_SCALE * extent if extent > 1e-9 else 0.1
    frusta = frustum_points(relative, depth)
    shown = np.unique(np.linspace(0, len(relative) - 1, min(len(relative), MAX_FRUSTA)).round().astype(int))
    colormap = "viridis"
    norm = Normalize(0, max(len(relative) - 1, 1))

    figure = Figure(figsize=(11, 5.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    for axis, (panel_title, horizontal, vertical, labels, invert) in zip(axes, _VIEWS):
        segments = [frusta[frame][list(edge)][:, [horizontal, vertical]] for frame in shown for edge in _FRUSTUM_EDGES]
        edge_times = np.repeat(shown, len(_FRUSTUM_EDGES))
        axis.add_collection(LineCollection(segments, cmap=colormap, norm=norm, array=edge_times, linewidths=0.9))
        path_points = centres[:, [horizontal, vertical]]
        path_segments = np.stack([path_points[:-1], path_points[1:]], 1)
        axis.add_collection(LineCollection(path_segments, cmap=colormap, norm=norm, array=np.arange(len(centres) - 1),
                                           linewidths=2.0))
        axis.plot(*path_points[0], marker="*", markersize=15, color="crimson", zorder=5, label="first frame")
        axis.autoscale_view()
        axis.set_aspect("equal", adjustable="datalim")
        if invert:
            axis.invert_yaxis()
        axis.set(title=panel_title, xlabel=labels[0], ylabel=labels[1])
        axis.grid(alpha=0.3)
        axis.legend(loc="best", fontsize=8)
    mappable = axes[0].collections[0]
    figure.colorbar(mappable, ax=list(axes), label="frame", shrink=0.85)
    figure.suptitle(title or _summary(relative))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    atomic_write(path, buffer.getvalue())
    return path


def _summary(relative: CameraTrajectory) -> str:
    """One line: frame count, path length, largest turn from the first frame and final focal change."""
    centres = relative.centres
    path_length = float(np.linalg.norm(np.diff(centres, axis=0), axis=1).sum())
    turn = float(np.degrees(Rotation.from_matrix(relative.c2w[:, :3, :3]).magnitude()).max())
    zoom = float(relative.intrinsics[-1, 0] / relative.intrinsics[0, 0])
    return f"{len(relative)} frames, path length {path_length:.3g}, largest turn {turn:.1f}°, focal x{zoom:.2f}"
