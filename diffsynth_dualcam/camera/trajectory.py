"""`CameraTrajectory`: per-frame camera poses and normalised intrinsics, in one convention."""
from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..limits import FOCAL_RANGE, MAX_POSITION, MAX_PRINCIPAL_OFFSET, MAX_SOURCE_SIDE

if TYPE_CHECKING:  # torch is imported where a tensor is made, so that camera files are read without it
    import torch

#: Largest entry of |RᵀR - I| accepted for a rotation block (float32 or 6-digit text rows are ~1e-6 off).
ROTATION_TOLERANCE = 1e-3
#: Largest deviation of a pose's bottom row from [0, 0, 0, 1].
BOTTOM_ROW_TOLERANCE = 1e-6
#: |det| of a world-to-camera rotation block below which it is treated as singular.
SINGULAR_TOLERANCE = 1e-9
#: Relative difference up to which two image sizes count as the same aspect ratio (rounding of resized frames).
ASPECT_TOLERANCE = 0.01


def fov_intrinsics(fov_deg: float, width: int, height: int) -> np.ndarray:
    """Normalised (fx, fy, cx, cy) of a centred pinhole with square pixels and horizontal field of view ``fov_deg``
    degrees on a ``width`` x ``height`` image."""
    if not 0 < fov_deg < 180:
        raise ValueError(f"field of view must be between 0 and 180 degrees, got {fov_deg}")
    fx = 0.5 / math.tan(math.radians(fov_deg) / 2)
    return np.array([fx, fx * width / height, 0.5, 0.5])


def aspects_differ(size: tuple[int, int], other: tuple[int, int]) -> bool:
    """Whether two (width, height) sizes differ in aspect ratio by more than :data:`ASPECT_TOLERANCE`."""
    return abs((other[0] / other[1]) / (size[0] / size[1]) - 1.0) > ASPECT_TOLERANCE
# RealEstate10K normalises intrinsics by its 16:9 frames; the published clips are 640x360.
REALESTATE10K_FRAME_SIZE = (640, 360)


def _check_finite(values: np.ndarray, what: str) -> None:
    """Raise a ValueError naming the first frame of ``values`` ([F, ...]) that holds NaN or inf."""
    bad = ~np.isfinite(values.reshape(values.shape[0], -1)).all(axis=1)
    if bad.any():
        frame = int(np.argmax(bad))
        raise ValueError(f"frame {frame}: {what} contains NaN or inf")


def _check_rigid(c2w: np.ndarray) -> None:
    """Raise a ValueError naming the first frame whose pose is not a rigid transform."""
    bottom_error = np.abs(c2w[:, 3, :] - np.array([0.0, 0.0, 0.0, 1.0])).max(axis=1)
    if (bottom_error > BOTTOM_ROW_TOLERANCE).any():
        frame = int(np.argmax(bottom_error > BOTTOM_ROW_TOLERANCE))
        raise ValueError(f"frame {frame}: bottom row of the 4x4 pose must be [0, 0, 0, 1], "
                         f"got {c2w[frame, 3].tolist()}")
    rotation = c2w[:, :3, :3]
    orthogonality_error = np.abs(rotation.transpose(0, 2, 1) @ rotation - np.eye(3)).max(axis=(1, 2))
    if (orthogonality_error > ROTATION_TOLERANCE).any():
        frame = int(np.argmax(orthogonality_error > ROTATION_TOLERANCE))
        raise ValueError(
            f"frame {frame}: rotation is not orthonormal (max |RᵀR - I| = {orthogonality_error[frame]:.3g} > "
            f"{ROTATION_TOLERANCE:g}); the pose must be rigid (no scale or shear)"
        )
    determinant = np.linalg.det(rotation)
    if (determinant < 0).any():
        frame = int(np.argmax(determinant < 0))
        raise ValueError(f"frame {frame}: rotation has determinant {determinant[frame]:.3g}: "
                         "a reflection, not a rotation")


def _check_camera_ranges(c2w: np.ndarray, intrinsics: np.ndarray) -> None:
    """Raise a ValueError naming the first frame whose camera cannot be a real one (see docs/limits.md): focal
    lengths outside ``FOCAL_RANGE``, a principal point more than ``MAX_PRINCIPAL_OFFSET`` from the centre, a centre
    with a coordinate beyond ``MAX_POSITION`` or farther than that from the first camera (both then hold for
    ``relative()`` too)."""
    low, high = FOCAL_RANGE
    bad = ((intrinsics[:, :2] <= 0) | ~((intrinsics[:, :2] >= low) & (intrinsics[:, :2] <= high))).any(axis=1)
    if bad.any():
        frame = int(np.argmax(bad))
        raise ValueError(f"frame {frame}: focal lengths must be positive, between {low:g} and {high:g} image sides "
                         f"(normalised), got fx={intrinsics[frame, 0]:g}, fy={intrinsics[frame, 1]:g}")
    offset = np.abs(intrinsics[:, 2:] - 0.5).max(axis=1)
    if (offset > MAX_PRINCIPAL_OFFSET).any():
        frame = int(np.argmax(offset > MAX_PRINCIPAL_OFFSET))
        raise ValueError(f"frame {frame}: principal point (cx, cy) = ({intrinsics[frame, 2]:g}, "
                         f"{intrinsics[frame, 3]:g}) is more than {MAX_PRINCIPAL_OFFSET:g} image sides from the "
                         "centre (0.5, 0.5) (normalised)")
    centres = c2w[:, :3, 3]
    far = np.abs(centres).max(axis=1) > MAX_POSITION  # checked first: the distances below cannot overflow then
    if not far.any():
        far = np.linalg.norm(centres - centres[0], axis=1) > MAX_POSITION
    if far.any():
        frame = int(np.argmax(far))
        raise ValueError(f"frame {frame}: camera position {centres[frame].tolist()} is farther than {MAX_POSITION:g} "
                         "scene units from the origin (on an axis) or from the first camera")


class CameraTrajectory:
    """Camera poses and intrinsics of F frames.

    Attributes:
        c2w: [F, 4, 4] float64 camera-to-world matrices, OpenCV camera axes (x right, y down, z forward).
        intrinsics: [F, 4] float64 ``fx, fy, cx, cy`` as fractions of image width (fx, cx) and height (fy, cy).
        source_size: ``(width, height)`` in pixels of the images the intrinsics were measured on, or None.
    """

    def __init__(
        self,
        c2w: np.ndarray | Sequence,
        intrinsics: np.ndarray | Sequence,
        source_size: tuple[int, int] | None = None,
    ) -> None:
        c2w = np.array(c2w, dtype=np.float64)
        intrinsics = np.array(intrinsics, dtype=np.float64)
        if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
            raise ValueError(f"c2w must have shape [F, 4, 4], got {list(c2w.shape)}")
        if c2w.shape[0] == 0:
            raise ValueError("empty trajectory: at least one frame is needed")
        if intrinsics.shape != (c2w.shape[0], 4):
            raise ValueError(f"intrinsics must have shape [{c2w.shape[0]}, 4] (fx, fy, cx, cy per frame), "
                             f"got {list(intrinsics.shape)}")
        _check_finite(c2w, "c2w")
        _check_finite(intrinsics, "intrinsics")
        _check_rigid(c2w)
        _check_camera_ranges(c2w, intrinsics)
        self.c2w = c2w
        self.intrinsics = intrinsics
        self.source_size = check_size(source_size, "source_size") if source_size is not None else None

    # ---- container protocol -------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def __getitem__(self, index: int | slice) -> CameraTrajectory:
        """Frames ``index`` (an int keeps one frame) as a trajectory."""
        if isinstance(index, (int, np.integer)):
            if not -len(self) <= index < len(self):
                raise IndexError(f"frame {index} out of range for a trajectory of {len(self)} frames")
            index = slice(index, index + 1 if index != -1 else None)
        if not isinstance(index, slice):
            raise TypeError(f"trajectory indices must be int or slice, got {type(index).__name__}")
        return CameraTrajectory(self.c2w[index], self.intrinsics[index], self.source_size)

    def __repr__(self) -> str:
        size = f"{self.source_size[0]}x{self.source_size[1]}" if self.source_size else "unknown"
        return f"CameraTrajectory({len(self)} frames, source_size={size})"

    @property
    def w2c(self) -> np.ndarray:
        """[F, 4, 4] world-to-camera matrices (inverse of ``c2w``)."""
        return np.linalg.inv(self.c2w)

    @property
    def centres(self) -> np.ndarray:
        """[F, 3] camera centres in world coordinates."""
        return self.c2w[:, :3, 3].copy()

    def path_length(self) -> float:
        """Length of the polyline through the camera centres, in trajectory units."""
        return float(np.linalg.norm(np.diff(self.centres, axis=0), axis=1).sum())

    def take(self, num_frames: int) -> CameraTrajectory:
        """The first ``num_frames`` frames; a clear error if the trajectory is shorter."""
        if num_frames < 1:
            raise ValueError(f"num_frames must be at least 1, got {num_frames}")
        if num_frames > len(self):
            raise ValueError(f"trajectory has {len(self)} frames but {num_frames} were requested; "
                             f"use resampled({num_frames}) to stretch it to that length")
        return self[:num_frames]

    def fitted(self, num_frames: int, resample: bool, too_short: str) -> CameraTrajectory:
        """``num_frames`` cameras: the first ones (the recorded pace), or with ``resample`` the whole path stretched
        over them. A shorter path that is not resampled is refused with the message ``too_short``."""
        if len(self) == num_frames:
            return self
        if resample:
            return self.resampled(num_frames)
        if len(self) < num_frames:
            raise ValueError(too_short)
        return self.take(num_frames)

    # ---- geometry -----------------------------------------------------------------------------------------------

    def relative(self) -> CameraTrajectory:
        """Poses relative to the first frame: ``c2w_rel[i] = w2c[0] @ c2w[i]`` (frame 0 becomes the identity)."""
        c2w = np.linalg.inv(self.c2w[0]) @ self.c2w
        c2w[0] = np.eye(4)  # exactly, not up to the inverse's rounding: a relative path made relative stays as it is
        return CameraTrajectory(c2w, self.intrinsics, self.source_size)

    def scaled(self, factor: float) -> CameraTrajectory:
        """Scale the world (camera centres) by ``factor``; rotations and intrinsics are unchanged."""
        if not np.isfinite(factor) or factor <= 0:
            raise ValueError(f"scale factor must be a positive finite number, got {factor}")
        c2w = self.c2w.copy()
        c2w[:, :3, 3] *= factor
        return CameraTrajectory(c2w, self.intrinsics, self.source_size)

    def cover_crop(
        self, source_size: tuple[int, int] | None = None, target_size: tuple[int, int] | None = None
    ) -> CameraTrajectory:
        """Intrinsics after resizing ``source_size`` images to cover ``target_size`` and centre-cropping.

        Sizes are (width, height); ``source_size`` defaults to the trajectory's own. The cropped axis keeps its
        pixel focal length, so its normalised focal grows by the crop ratio and the principal point moves away
        from the centre by the same ratio (a centred principal point stays at 0.5).
        """
        source_size = source_size if source_size is not None else self.source_size
        if source_size is None:
            raise ValueError("cover_crop needs source_size=(width, height): the trajectory does not know its own")
        if target_size is None:
            raise ValueError("cover_crop needs target_size=(width, height)")
        source_width, source_height = check_size(source_size, "source_size")
        target_width, target_height = check_size(target_size, "target_size")
        intrinsics = self.intrinsics.copy()
        if source_width / source_height > target_width / target_height:  # wider source: crop left and right
            axis, ratio = 0, (target_height * source_width / source_height) / target_width
        else:  # taller source: crop top and bottom
            axis, ratio = 1, (target_width * source_height / source_width) / target_height
        intrinsics[:, axis] *= ratio
        intrinsics[:, axis + 2] = 0.5 + (intrinsics[:, axis + 2] - 0.5) * ratio
        return CameraTrajectory(self.c2w, intrinsics, (target_width, target_height))

    def pixel_intrinsics(self, *, width: int, height: int) -> np.ndarray:
        """[F, 4] intrinsics in pixels for an image of ``width`` x ``height``: fx*W, fy*H, cx*W, cy*H."""
        return self.intrinsics * np.array([width, height, width, height], dtype=np.float64)

    def plucker(
        self, *, width: int, height: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """Plücker embedding [6, F, H, W] (moment o x d, then direction d) of poses relative to frame 0.

        The normalised intrinsics are used as they are for an image of ``width`` x ``height``; call
        ``cover_crop`` first when the trajectory was recorded at another aspect ratio.
        """
        from .plucker import plucker_embedding

        check_size((width, height), "(width, height)")
        relative = self.relative()
        return plucker_embedding(relative.c2w, relative.pixel_intrinsics(width=width, height=height), width=width,
                                 height=height, device=device, dtype=dtype)

    def resampled(self, num_frames: int) -> CameraTrajectory:
        """``num_frames`` frames spread evenly over the same motion: slerp rotations, lerp centres and intrinsics."""
        if num_frames < 1:
            raise ValueError(f"num_frames must be at least 1, got {num_frames}")
        if len(self) == 1:
            return CameraTrajectory(np.repeat(self.c2w, num_frames, 0), np.repeat(self.intrinsics, num_frames, 0),
                                    self.source_size)
        from scipy.spatial.transform import Rotation, Slerp  # scipy takes 0.5 s to load: only when it is needed

        times = np.arange(len(self), dtype=np.float64)
        new_times = np.linspace(0.0, len(self) - 1, num_frames)
        c2w = np.tile(np.eye(4), (num_frames, 1, 1))
        c2w[:, :3, :3] = Slerp(times, Rotation.from_matrix(self.c2w[:, :3, :3]))(new_times).as_matrix()
        for axis in range(3):
            c2w[:, axis, 3] = np.interp(new_times, times, self.c2w[:, axis, 3])
        intrinsics = np.stack([np.interp(new_times, times, self.intrinsics[:, i]) for i in range(4)], axis=1)
        return CameraTrajectory(c2w, intrinsics, self.source_size)

    # ---- composition --------------------------------------------------------------------------------------------

    def then(self, other: CameraTrajectory) -> CameraTrajectory:
        """``other``'s motion continuing from this trajectory's last frame.

        ``other``'s first frame is identified with this trajectory's last one (not repeated), so the result has
        ``len(self) + len(other) - 1`` frames. Its intrinsics continue the same way: focal lengths are scaled by
        ``other``'s focal change since its first frame, principal points shifted by its change.
        """
        c2w = self.c2w[-1] @ other.relative().c2w[1:]
        intrinsics = _continue_intrinsics(self.intrinsics[-1], other.intrinsics)[1:]
        return CameraTrajectory(np.concatenate([self.c2w, c2w]), np.concatenate([self.intrinsics, intrinsics]),
                                self.source_size)

    def compose(self, other: CameraTrajectory) -> CameraTrajectory:
        """Both motions at once: frame i is this frame i followed by ``other``'s motion since its first frame.

        ``other``'s relative motion is expressed in this trajectory's moving camera axes (a pan composed with a
        dolly keeps moving along the current viewing direction). Both trajectories must have the same length.
        """
        if len(other) != len(self):
            raise ValueError(f"compose needs trajectories of equal length, got {len(self)} and {len(other)} frames")
        intrinsics = _continue_intrinsics(self.intrinsics, other.intrinsics)
        return CameraTrajectory(self.c2w @ other.relative().c2w, intrinsics, self.source_size)

    # ---- RealEstate10K rows -------------------------------------------------------------------------------------

    @classmethod
    def from_realestate10k(
        cls,
        rows: np.ndarray | torch.Tensor | Sequence,
        source_size: tuple[int, int] | None = REALESTATE10K_FRAME_SIZE,
    ) -> CameraTrajectory:
        """Trajectory from RealEstate10K rows, [N, 19] (with timestamp) or [N, 18] (without).

        A row is ``[timestamp] fx fy cx cy k1 k2 w2c(3x4, row-major)``: normalised intrinsics, OpenCV axes,
        world-to-camera. Distortion coefficients are ignored (RealEstate10K stores zeros). ``source_size``
        defaults to RealEstate10K's 640x360 frames, so that ``cover_crop`` adapts the intrinsics to any output.
        """
        torch_module = sys.modules.get("torch")  # rows cannot be a tensor unless torch was imported
        if torch_module is not None and isinstance(rows, torch_module.Tensor):
            rows = _tensor_rows(rows)
        try:
            rows = np.array(rows, dtype=np.float64)
        except (TypeError, ValueError, OverflowError) as error:
            raise ValueError(f"RealEstate10K rows must be a numeric [N, 18] or [N, 19] array ({error})") from None
        if rows.ndim != 2 or rows.shape[1] not in (18, 19):
            raise ValueError(f"RealEstate10K rows must have shape [N, 18] or [N, 19], got {list(rows.shape)}")
        if rows.shape[0] == 0:
            raise ValueError("empty trajectory: no RealEstate10K rows")
        rows = rows[:, rows.shape[1] - 18:]
        _check_finite(rows, "RealEstate10K row")
        w2c = np.tile(np.eye(4), (rows.shape[0], 1, 1))
        w2c[:, :3, :] = rows[:, 6:].reshape(-1, 3, 4)
        determinant = np.linalg.det(w2c[:, :3, :3])
        if (np.abs(determinant) < SINGULAR_TOLERANCE).any():
            frame = int(np.argmax(np.abs(determinant) < SINGULAR_TOLERANCE))
            raise ValueError(f"frame {frame}: world-to-camera matrix is singular (det {determinant[frame]:.3g})")
        return cls(np.linalg.inv(w2c), rows[:, 0:4], source_size)

    def to_realestate10k(self, timestamps: np.ndarray | None = None) -> np.ndarray:
        """[F, 19] RealEstate10K rows (timestamp in microseconds, 30 fps unless given, zero distortion)."""
        if timestamps is None:
            timestamps = np.round(np.arange(len(self)) * 1e6 / 30)
        timestamps = np.asarray(timestamps, dtype=np.float64)
        if timestamps.shape != (len(self),):
            raise ValueError(f"timestamps must have shape [{len(self)}], got {list(timestamps.shape)}")
        w2c = self.w2c[:, :3, :].reshape(len(self), 12)
        return np.concatenate([timestamps[:, None], self.intrinsics, np.zeros((len(self), 2)), w2c], axis=1)

    # ---- files, presets, plots ----------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, format: str | None = None) -> CameraTrajectory:
        """Read a trajectory file or COLMAP model, detecting the format from the content unless ``format`` is given.

        Formats: ``json`` (ours), ``realestate10k`` (.txt), ``torch`` (``{"cameras": [N, 18]}``), ``colmap``
        (sparse model directory, text or binary), ``nerf`` (transforms.json). See docs/camera.md.
        """
        from .formats import read_trajectory

        return read_trajectory(path, format)

    def save(self, path: str | Path, format: str | None = None) -> Path:
        """Write the trajectory atomically; ``format`` defaults from the suffix (.json -> ours, .txt, .torch/.pt,
        a directory or ``colmap``, ``transforms.json`` -> nerf). Returns the path written."""
        from .formats import write_trajectory

        return write_trajectory(self, path, format)

    @classmethod
    def preset(cls, name: str, num_frames: int = 61, speed: float = 1.0, **params: Any) -> CameraTrajectory:
        """A named camera move starting at the identity pose (see ``preset_names()`` and docs/camera.md)."""
        from .presets import make_preset

        return make_preset(name, num_frames, speed, **params)

    @staticmethod
    def preset_names() -> list[str]:
        """Names accepted by ``preset``."""
        from .presets import PRESETS

        return sorted(PRESETS)

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        """Save a PNG of the camera frusta seen from above and from the side; returns the path."""
        from .plot import plot_trajectory

        return plot_trajectory(self, path, title)


def check_size(size: Any, name: str) -> tuple[int, int]:
    """``size`` as a (width, height) pair of positive ints of at most ``MAX_SOURCE_SIDE``, or a ValueError naming
    ``name``."""
    try:
        width, height = size
        valid = all(isinstance(value, (int, float, np.integer, np.floating))
                    and not isinstance(value, (bool, np.bool_)) and 0 < value <= MAX_SOURCE_SIDE
                    and int(value) == value for value in (width, height))
    except (TypeError, ValueError, OverflowError):
        valid = False
    if not valid:
        text = repr(size) if len(repr(size)) <= 60 else repr(size)[:57] + "..."
        raise ValueError(f"{name} must be (width, height) in positive whole pixels of at most {MAX_SOURCE_SIDE}, "
                         f"got {text}")
    return int(width), int(height)


def _tensor_rows(rows: torch.Tensor) -> np.ndarray:
    """A dense real float or integer tensor as a float64 array; a ValueError for any other kind of tensor."""
    import torch

    # Integer dtypes accepted (every floating-point dtype is accepted too).
    integer_dtypes = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16, torch.uint32,
                      torch.uint64)
    if rows.is_nested:
        kind = "a nested tensor"
    elif rows.is_quantized:
        kind = f"a quantized tensor ({str(rows.dtype).removeprefix('torch.')})"
    elif rows.is_meta:
        kind = "a meta tensor (it holds no data)"
    elif rows.layout != torch.strided:
        kind = f"a {str(rows.layout).removeprefix('torch.')} tensor"
    elif not (rows.dtype.is_floating_point or rows.dtype in integer_dtypes):
        kind = f"a tensor of dtype {str(rows.dtype).removeprefix('torch.')}"
    elif rows.numel() > rows.untyped_storage().nbytes() // rows.element_size():
        # An expanded view: a few stored numbers standing for a huge array that a copy would have to allocate.
        kind = f"a view of shape {list(rows.shape)} whose elements overlap in memory (save a copy, tensor.clone())"
    else:
        return rows.detach().cpu().double().numpy()
    raise ValueError(f"RealEstate10K rows must be a dense (strided) tensor of real floating-point or integer "
                     f"numbers, got {kind}")


def _continue_intrinsics(start: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Intrinsics ``other`` [F, 4] replayed from ``start`` ([4] or [F, 4]): focal lengths scaled by ``other``'s
    change since its first frame, principal points shifted by its change."""
    intrinsics = np.empty(np.broadcast_shapes(start.shape, other.shape))
    intrinsics[..., :2] = start[..., :2] * other[:, :2] / other[:1, :2]
    intrinsics[..., 2:] = start[..., 2:] + other[:, 2:] - other[:1, 2:]
    return intrinsics
