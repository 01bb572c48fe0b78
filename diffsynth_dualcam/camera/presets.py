"""Named camera moves, in the first frame's OpenCV camera axes (x right, y down, z forward).

Every preset starts at the identity pose. ``speed`` multiplies the motion per frame: frame i is the pose the move
reaches after ``i * speed`` steps. Default magnitudes follow RealEstate10K clips (about 0.005-0.01 scene units and
0.3-0.4 degrees per frame at the dataset's frame rate).
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .trajectory import CameraTrajectory, check_size

#: Normalised horizontal focal length of the presets (about RealEstate10K's: a 90 degree horizontal field of view).
DEFAULT_FX = 0.5
#: Image size the preset intrinsics describe (RealEstate10K's 16:9); ``cover_crop`` adapts them to any output.
DEFAULT_SOURCE_SIZE = (640, 360)

Motion = Callable[..., tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Preset:
    """A camera move: ``motion(steps, **params)`` returns c2w [F, 4, 4] and focal-length factors [F]."""

    motion: Motion
    description: str

    def parameters(self) -> dict[str, Any]:
        """Parameter names of the move with their defaults."""
        signature = inspect.signature(self.motion)
        return {name: parameter.default for name, parameter in list(signature.parameters.items())[1:]}


def _poses(rotations: np.ndarray, centres: np.ndarray) -> np.ndarray:
    c2w = np.tile(np.eye(4), (len(centres), 1, 1))
    c2w[:, :3, :3] = rotations
    c2w[:, :3, 3] = centres
    return c2w


def _rotation(axis: tuple[float, float, float], sign: float) -> Motion:
    def motion(steps: np.ndarray, degrees_per_frame: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
        from scipy.spatial.transform import Rotation  # scipy takes 0.5 s to load: only when a preset is made

        rotvecs = np.outer(steps * sign * math.radians(degrees_per_frame), axis)
        return _poses(Rotation.from_rotvec(rotvecs).as_matrix(), np.zeros((len(steps), 3))), np.ones(len(steps))

    return motion


def _translation(direction: tuple[float, float, float]) -> Motion:
    def motion(steps: np.ndarray, step: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
        return _poses(np.tile(np.eye(3), (len(steps), 1, 1)), np.outer(steps * step, direction)), np.ones(len(steps))

    return motion


def _zoom(sign: float) -> Motion:
    def motion(steps: np.ndarray, focal_change_per_frame: float = 0.005) -> tuple[np.ndarray, np.ndarray]:
        if focal_change_per_frame <= -1:
            raise ValueError(f"focal_change_per_frame must be greater than -1, got {focal_change_per_frame}")
        return np.tile(np.eye(4), (len(steps), 1, 1)), (1 + focal_change_per_frame) ** (sign * steps)

    return motion


def _orbit(sign: float) -> Motion:
    def motion(
        steps: np.ndarray, distance: float = 1.0, degrees_per_frame: float = 0.5
    ) -> tuple[np.ndarray, np.ndarray]:
        from scipy.spatial.transform import Rotation  # scipy takes 0.5 s to load: only when a preset is made

        if distance <= 0:
            raise ValueError(f"orbit distance must be positive, got {distance}")
        # The camera turns about the vertical axis through the target (0, 0, distance), looking at it throughout.
        angles = sign * math.radians(degrees_per_frame) * steps
        centres = np.stack([-distance * np.sin(angles), np.zeros_like(angles), distance * (1 - np.cos(angles))], 1)
        rotations = Rotation.from_rotvec(np.outer(angles, (0.0, 1.0, 0.0))).as_matrix()
        return _poses(rotations, centres), np.ones(len(steps))

    return motion


def _spiral(
    steps: np.ndarray, radius: float = 0.1, degrees_per_frame: float = 6.0, step: float = 0.005
) -> tuple[np.ndarray, np.ndarray]:
    # The centre circles in the image plane (starting at the origin) while moving forward; the view stays forward.
    angles = math.radians(degrees_per_frame) * steps
    centres = np.stack([radius * (np.cos(angles) - 1), radius * np.sin(angles), step * steps], 1)
    return _poses(np.tile(np.eye(3), (len(steps), 1, 1)), centres), np.ones(len(steps))


def _static(steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.tile(np.eye(4), (len(steps), 1, 1)), np.ones(len(steps))


PRESETS: dict[str, Preset] = {
    "static": Preset(_static, "no motion"),
    "pan_left": Preset(_rotation((0, 1, 0), -1), "turn in place; the view swings toward -x (left)"),
    "pan_right": Preset(_rotation((0, 1, 0), 1), "turn in place; the view swings toward +x (right)"),
    "tilt_up": Preset(_rotation((1, 0, 0), 1), "turn in place; the view swings toward -y (up)"),
    "tilt_down": Preset(_rotation((1, 0, 0), -1), "turn in place; the view swings toward +y (down)"),
    "roll_cw": Preset(_rotation((0, 0, 1), 1), "turn about the viewing axis, clockwise seen from behind the camera "
                                               "(its x axis dips toward +y); the picture turns counter-clockwise"),
    "roll_ccw": Preset(_rotation((0, 0, 1), -1), "turn about the viewing axis, counter-clockwise seen from behind"),
    "truck_left": Preset(_translation((-1, 0, 0)), "move sideways toward -x (left)"),
    "truck_right": Preset(_translation((1, 0, 0)), "move sideways toward +x (right)"),
    "pedestal_up": Preset(_translation((0, -1, 0)), "move up (toward -y)"),
    "pedestal_down": Preset(_translation((0, 1, 0)), "move down (toward +y)"),
    "dolly_in": Preset(_translation((0, 0, 1)), "move forward (toward +z)"),
    "dolly_out": Preset(_translation((0, 0, -1)), "move backward (toward -z)"),
    "zoom_in": Preset(_zoom(1), "focal length grows by focal_change_per_frame per frame; the pose stays"),
    "zoom_out": Preset(_zoom(-1), "focal length shrinks by focal_change_per_frame per frame; the pose stays"),
    "orbit_left": Preset(_orbit(1), "circle leftward around the point `distance` ahead, always looking at it"),
    "orbit_right": Preset(_orbit(-1), "circle rightward around the point `distance` ahead, always looking at it"),
    "spiral": Preset(_spiral, "the centre circles in the image plane with `radius` while moving forward"),
}


def make_preset(
    name: str,
    num_frames: int = 61,
    speed: float = 1.0,
    fx: float = DEFAULT_FX,
    source_size: tuple[int, int] = DEFAULT_SOURCE_SIZE,
    **params: Any,
) -> CameraTrajectory:
    """Trajectory of preset ``name``: ``num_frames`` frames, ``speed`` times the default motion per frame.

    ``fx`` is the normalised horizontal focal length and ``source_size`` the (width, height) the intrinsics
    describe (square pixels: fy = fx * width / height). Other keyword arguments are the move's own parameters.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(sorted(PRESETS))}")
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    for label, value in (("speed", speed), ("fx", fx), *params.items()):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"preset {name!r}: {label} must be a finite number, got {value!r}")
    if fx <= 0:
        raise ValueError(f"preset {name!r}: fx must be positive, got {fx}")
    preset = PRESETS[name]
    unknown = sorted(set(params) - set(preset.parameters()))
    if unknown:
        known = ", ".join(["fx", "source_size", *preset.parameters()])
        raise ValueError(f"preset {name!r} has no parameter {', '.join(unknown)}; its parameters: {known}")
    with np.errstate(over="ignore", invalid="ignore"):  # a speed too large overflows: CameraTrajectory refuses it
        c2w, focal_factor = preset.motion(speed * np.arange(num_frames, dtype=np.float64), **params)
    width, height = check_size(source_size, "source_size")
    intrinsics = np.tile([fx, fx * width / height, 0.5, 0.5], (num_frames, 1))
    intrinsics[:, :2] *= focal_factor[:, None]
    return CameraTrajectory(c2w, intrinsics, source_size)
