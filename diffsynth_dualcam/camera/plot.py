"""Pictures of a trajectory: camera frusta from above and from the side, coloured by time."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter
from scipy.spatial.transform import Rotation

from ..io import atomic_write
from .trajectory import CameraTrajectory

#: At most this many frusta are drawn (evenly spaced, first and last included); the path shows every frame.
MAX_FRUSTA = 24
#: Frustum depth as a fraction of the largest extent of the camera path.
FRUSTUM_SCALE = 0.15
#: Colour map of a trajectory coloured by frame.
COLORMAP = "viridis"
#: Resolution of the saved plots.
PLOT_DPI = 110
#: At most this many ticks per axis, and the exponents beyond which the labels take a common power of ten
#: (``x 1e-4`` at the axis end), so that the labels of a short path or a long one do not run into each other.
MAX_TICKS = 5
POWER_LIMITS = (-2, 3)
# Edges of a frustum as index pairs into [centre, 4 image-plane corners].
_FRUSTUM_EDGES = [(0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (2, 3), (3, 4), (4, 1)]
#: The two panels: (title, horizontal axis, vertical axis, axis labels, invert the vertical axis).
VIEWS = [
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


def frustum_depth(centres: np.ndarray) -> float:
    """Frustum depth for a path through ``centres`` [F, 3]: ``FRUSTUM_SCALE`` of its largest extent (0.1 when the
    camera does not move)."""
    extent = float(np.ptp(centres, axis=0).max())
    return FRUSTUM_SCALE * extent if extent > 1e-9 else 0.1


def draw_trajectory(
    axis: Axes,
    trajectory: CameraTrajectory,
    horizontal: int,
    vertical: int,
    depth: float,
    color: str | None = None,
    linestyle: str = "solid",
    label: str | None = None,
) -> LineCollection:
    """Draw ``trajectory`` (in its own coordinates) on ``axis``, projected onto the world axes ``horizontal`` and
    ``vertical``: frusta of ``depth`` (at most ``MAX_FRUSTA``, evenly spaced) and the path through every centre.

    Coloured by frame with ``COLORMAP`` unless ``color`` is given; ``label`` names the path in a legend. Returns the
    frusta's collection, a mappable for a colour bar.
    """
    frusta = frustum_points(trajectory, depth)
    num_frames = len(trajectory)
    shown = np.unique(np.linspace(0, num_frames - 1, min(num_frames, MAX_FRUSTA)).round().astype(int))
    segments = [frusta[frame][list(edge)][:, [horizontal, vertical]] for frame in shown for edge in _FRUSTUM_EDGES]
    path_points = trajectory.c2w[:, :3, 3][:, [horizontal, vertical]]
    path_segments = np.stack([path_points[:-1], path_points[1:]], 1)
    if color is None:
        norm = Normalize(0, max(num_frames - 1, 1))
        frusta_lines = LineCollection(segments, cmap=COLORMAP, norm=norm, array=np.repeat(shown, len(_FRUSTUM_EDGES)),
                                      linewidths=0.9, linestyles=linestyle)
        path_lines = LineCollection(path_segments, cmap=COLORMAP, norm=norm, array=np.arange(num_frames - 1),
                                    linewidths=2.0, linestyles=linestyle, label=label)
    else:
        frusta_lines = LineCollection(segments, colors=color, linewidths=0.9, linestyles=linestyle)
        path_lines = LineCollection(path_segments, colors=color, linewidths=2.0, linestyles=linestyle, label=label)
    axis.add_collection(frusta_lines)
    axis.add_collection(path_lines)
    return frusta_lines


def plot_trajectory(trajectory: CameraTrajectory, path: str | Path, title: str | None = None) -> Path:
    """Write a PNG of ``trajectory`` in its first frame's camera axes (``trajectory_figure``); returns ``path``."""
    path = Path(path)
    buffer = io.BytesIO()
    trajectory_figure(trajectory, title).savefig(buffer, format="png", dpi=PLOT_DPI)
    atomic_write(path, buffer.getvalue())
    return path


def trajectory_figure(trajectory: CameraTrajectory, title: str | None = None) -> Figure:
    """The figure ``plot_trajectory`` saves: both ``VIEWS`` of the path and a colour bar of frames."""
    relative = trajectory.relative()
    depth = frustum_depth(relative.centres)

    figure = Figure(figsize=(11, 5.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    for axis, (panel_title, horizontal, vertical, labels, invert) in zip(axes, VIEWS):
        mappable = draw_trajectory(axis, relative, horizontal, vertical, depth)
        axis.plot(*relative.centres[0, [horizontal, vertical]], marker="*", markersize=15, color="crimson", zorder=5,
                  label="first frame")
        style_view(axis, panel_title, labels, invert)
        axis.legend(loc="best", fontsize=8)
    colorbar = figure.colorbar(mappable, ax=list(axes), label="frame", shrink=0.85)
    colorbar.locator = MaxNLocator(integer=True)  # frames are whole numbers
    colorbar.update_ticks()
    figure.suptitle(title or _summary(relative))
    return figure


def _summary(relative: CameraTrajectory) -> str:
    """One line: frame count, path length, largest turn from the first frame and final focal change."""
    path_length = relative.path_length()
    turn = float(np.degrees(Rotation.from_matrix(relative.c2w[:, :3, :3]).magnitude()).max())
    zoom = float(relative.intrinsics[-1, 0] / relative.intrinsics[0, 0])
    return f"{len(relative)} frames, path length {path_length:.3g}, largest turn {turn:.1f}°, focal x{zoom:.2f}"


def style_view(axis: Axes, title: str, labels: tuple[str, str], invert: bool) -> None:
    """Finish one panel of ``VIEWS``: fitted equal-aspect axes (y down when ``invert``), title, labels and grid."""
    for ticks in (axis.xaxis, axis.yaxis):
        ticks.set_major_locator(MaxNLocator(nbins=MAX_TICKS))
        formatter = ScalarFormatter(useMathText=True)
        formatter.set_powerlimits(POWER_LIMITS)
        ticks.set_major_formatter(formatter)
    axis.autoscale_view()
    axis.set_aspect("equal", adjustable="datalim")
    if invert:
        axis.invert_yaxis()
    axis.set(title=title, xlabel=labels[0], ylabel=labels[1])
    axis.grid(alpha=0.3)
