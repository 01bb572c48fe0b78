"""Camera keyframes typed into a table, interpolated into a trajectory.

Each row is ``frame, yaw, pitch, roll, x, y, z``: angles in degrees (yaw turns right, pitch looks up, roll turns
clockwise as seen by the camera, applied in that order to the camera's own axes), position in the axes of the first
camera (x right, y down, z forward). Positions are interpolated linearly, rotations by slerp; frames before the first
keyframe and after the last hold its pose.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

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
    rotations = Rotation.from_euler("YXZ", table[:, 1:4], degrees=True)
    every_frame = np.clip(np.arange(num_frames), frames[0], frames[-1])
    c2w = np.tile(np.eye(4), (num_frames, 1, 1))
    if len(frames) == 1:
        c2w[:, :3, :3] = rotations.as_matrix()[0]
    else:
        c2w[:, :3, :3] = Slerp(frames, rotations)(every_frame).as_matrix()
    for axis in range(3):
        c2w[:, axis, 3] = np.interp(every_frame, frames, table[:, 4 + axis])
    return CameraTrajectory(c2w, np.tile(np.asarray(intrinsics, dtype=np.float64), (num_frames, 1)))
