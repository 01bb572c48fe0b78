"""Plot of an estimated trajectory against the requested one, in the frame and scale the metrics compare them."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from diffsynth_dualcam.eval.metrics import CONVENTIONS, HasPoses, Normalization, pose_errors
from diffsynth_dualcam.io import atomic_output


def plot_comparison(
    reference: HasPoses,
    estimated: HasPoses,
    path: str | Path,
    normalization: Normalization = "max",
    title: str | None = None,
) -> Path:
    """Save a PNG with the camera centres seen from above (x-z) and from the side (z-up), and the per-frame
    rotation and translation errors; centres are relative to frame 0 and normalised as in ``camera_errors``.
    Returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    errors = pose_errors(reference.c2w, estimated.c2w, normalization)
    reference_t, estimated_t = errors["reference_t"], errors["estimated_t"]
    figure, (top, side, curves) = plt.subplots(1, 3, figsize=(14, 4.2))
    # OpenCV axes: x right, y down, z forward; the side view shows "up" as -y.
    for axes, (first, second, second_sign), label in (
        (top, (0, 2, 1.0), ("x (right)", "z (forward)")),
        (side, (2, 1, -1.0), ("z (forward)", "-y (up)")),
    ):
        for points, style, name in ((reference_t, "o-", "requested"), (estimated_t, "x--", "estimated")):
            axes.plot(points[:, first], second_sign * points[:, second], style, markersize=3, label=name)
        axes.plot(0.0, 0.0, "k*", markersize=10, label="frame 0")
        axes.set_xlabel(label[0])
        axes.set_ylabel(label[1])
        axes.set_aspect("equal", adjustable="datalim")
        axes.grid(alpha=0.3)
    top.set_title("camera centres, from above")
    side.set_title("camera centres, from the side")
    top.legend(loc="best", fontsize=8)

    frames = np.arange(len(errors["rot_err"]))
    curves.plot(frames, np.degrees(errors["rot_err"]), "C3-", label="rotation error (deg)")
    curves.set_xlabel("frame")
    curves.set_ylabel("rotation error (deg)", color="C3")
    translation_axes = curves.twinx()
    translation_axes.plot(frames, errors["trans_err"], "C0--", label="translation error")
    translation_axes.set_ylabel(f"translation error ({normalization} normalisation)", color="C0")
    curves.set_title("per-frame errors")
    curves.grid(alpha=0.3)
    figure.suptitle(title or f"estimated vs requested trajectory ({normalization} normalisation)")
    figure.text(0.5, 0.01, textwrap.fill(CONVENTIONS[normalization], 200), ha="center", va="bottom", fontsize=6)
    figure.tight_layout(rect=(0, 0.06, 1, 1))

    path = Path(path)
    try:
        with atomic_output(path) as temporary:
            figure.savefig(temporary, format="png", dpi=100)
    finally:
        plt.close(figure)
    return path
