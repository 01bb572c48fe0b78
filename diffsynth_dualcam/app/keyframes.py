"""Camera keyframes typed into a table, interpolated into a trajectory.

Each row is ``frame, yaw, pitch, roll, x, y, z``: angles in degrees (yaw turns right, pitch looks up, roll turns
clockwise as seen by the camera, applied in that order to the camera's own axes) and a position, both in one fixed
frame: the axes of a camera with all angles 0 (x right, y down, z forward). Generation uses the motion relative to
the first frame, so with a first keyframe at angles 0 they are the first camera's axes. Angles and positions are
interpolated linearly (yaw 0 to 270 turns 270 degrees right); frames before the first keyframe and after the last
hold its pose.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from ..camera import CameraTrajectory

KEYFRAME_COLUMNS = ["frame", "yaw", "pitch", "roll", "x", "y", "z"]


def _parse_rows(rows: Sequence[Sequence[object]], num_frames: int) -> np.ndarray:
    """Rows as a float array [K, 7] sorted by frame; blank rows are skipped, anything else malformed is an error."""
    parsed = []
    for number, row in enumerate(rows, start=1):
        cells = ["" if cell is None else str(cell).strip() for cell in row]
        if all(cell in ("", "nan") for cell in cells):
            continue
        if len(cells) != len(KEYFRAME_COLUMNS):
            raise ValueError(f"keyframe row {number}: expected {len(KEYFRAME_COLUMNS)} values "
                             f"({', '.join(KEYFRAME_COLUMNS)}), got {len(cells)}")
        values = []
        for column, cell in zip(KEYFRAME_COLUMNS, cells):
            try:
                value = float(cell)
            except ValueError:
                raise ValueError(f"keyframe row {number}: {column} must be a number, got {cell!r}") from None
            if not math.isfinite(value):
                raise ValueError(f"keyframe row {number}: {column} must be finite, got {cell!r}")
            values.append(value)
        frame = values[0]
        if frame != int(frame) or not 0 <= frame < num_frames:
            raise ValueError(
                f"keyframe row {number}: frame must be a whole number in 0..{num_frames - 1}, got {cells[0]!r}"
            )
        parsed.append(values)
    if not parsed:
        raise ValueError("keyframes: enter at least one row (frame, yaw, pitch, roll, x, y, z)")
    table = np.array(parsed)
    frames = table[:, 0]
    if len(np.unique(frames)) != len(frames):
        raise ValueError(f"keyframes: each frame may appear once, got frames {sorted(frames.astype(int).tolist())}")
    return table[np.argsort(frames)]


def keyframes_to_trajectory(
    rows: Sequence[Sequence[object]], num_frames: int, intrinsics: Sequence[float]
) -> CameraTrajectory:
    """A `num_frames` trajectory through the keyframes, all frames with the same normalised (fx, fy, cx, cy)."""
    table = _parse_rows(rows, num_frames)
    frames = table[:, 0]
    every_frame = np.clip(np.arange(num_frames), frames[0], frames[-1])
    # Angles, not rotations, are interpolated: a typed turn of more than 180 degrees keeps its direction.
    values = np.stack([np.interp(every_frame, frames, table[:, column]) for column in range(1, 7)], axis=1)
    c2w = np.tile(np.eye(4), (num_frames, 1, 1))
    c2w[:, :3, :3] = Rotation.from_euler("YXZ", values[:, :3], degrees=True).as_matrix()
    c2w[:, :3, 3] = values[:, 3:]
    return CameraTrajectory(c2w, np.tile(np.asarray(intrinsics, dtype=np.float64), (num_frames, 1)))
