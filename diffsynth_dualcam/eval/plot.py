"""Plot of an estimated trajectory against the requested one, as the metrics compare them, drawn with the camera
module's frusta."""
from __future__ import annotations

import io
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.camera.plot import VIEWS, draw_trajectory, frustum_depth, style_view
from diffsynth_dualcam.eval.metrics import CONVENTIONS, Normalization, pose_errors
from diffsynth_dualcam.io import atomic_write

REQUESTED_COLOR = "tab:blue"
ESTIMATED_COLOR = "tab:orange"


def plot_comparison(
    reference: CameraTrajectory,
    estimated: CameraTrajectory,
    path: str | Path,
    normalization: Normalization = "max",
    title: str | None = None,
) -> Path:
    """Save a PNG of both trajectories' frusta and paths from above and from the side, with a thin line from each
    requested camera centre to its estimate, and the per-frame rotation and translation errors. Poses are drawn as
    ``camera_errors`` compares them: relative to frame 0, normalised by ``normalization`` (under "sim3" the
    estimate is aligned, orientations included). Returns the path written."""
    errors = pose_errors(reference.c2w, estimated.c2w, normalization)
    requested = CameraTrajectory(errors["reference_c2w"], reference.intrinsics)
    compared = CameraTrajectory(errors["estimated_c2w"], estimated.intrinsics)
    depth = frustum_depth(np.concatenate([requested.centres, compared.centres]))

    figure = Figure(figsize=(15, 5.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3, width_ratios=(1, 1, 1.1))
    for axis, (panel_title, horizontal, vertical, labels, invert) in zip(axes, VIEWS):
        draw_trajectory(axis, requested, horizontal, vertical, depth, color=REQUESTED_COLOR, label="requested")
        draw_trajectory(axis, compared, horizontal, vertical, depth, color=ESTIMATED_COLOR, linestyle="dashed",
                        label="estimated")
        pairs = np.stack([requested.centres, compared.centres], axis=1)[:, :, [horizontal, vertical]]
        axis.add_collection(LineCollection(pairs, colors="0.4", linewidths=0.6, label="centre error"))
        axis.plot(*requested.centres[0, [horizontal, vertical]], marker="*", markersize=13, color="crimson",
                  zorder=5, label="frame 0")
        style_view(axis, panel_title, labels, invert)
    axes[0].legend(loc="best", fontsize=8)

    curves = axes[2]
    frames = np.arange(len(errors["rot_err"]))
    curves.plot(frames, np.degrees(errors["rot_err"]), "C3-", marker=".", label="rotation error (deg)")
    curves.set_xlabel("frame")
    curves.set_ylabel("rotation error (deg)", color="C3")
    translation_axes = curves.twinx()
    translation_axes.plot(frames, errors["trans_err"], "C2--", marker=".", label="translation error")
    translation_axes.set_ylabel(f"translation error ({normalization} normalisation)", color="C2")
    curves.set_title("per-frame errors")
    curves.grid(alpha=0.3)

    figure.suptitle(title or f"estimated vs requested trajectory ({normalization} normalisation)")
    figure.get_layout_engine().set(h_pad=0.1)
    figure.supxlabel(textwrap.fill(CONVENTIONS[normalization], 230), fontsize=6)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    atomic_write(Path(path), buffer.getvalue())
    return Path(path)
