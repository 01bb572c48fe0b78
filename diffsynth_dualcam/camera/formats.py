"""Reading and writing camera trajectories: our JSON, RealEstate10K, demo .torch, COLMAP and NeRF transforms.json.

Every reader turns malformed input into a ``ValueError`` naming the file and the problem. Every writer writes to a
temporary file beside the target and renames it, so a failed write never leaves a partial file.
"""
from __future__ import annotations

import io
import json
import math
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from ..io import atomic_write
from .trajectory import CameraTrajectory

FORMAT_NAME = "dualcam-trajectory"
FORMAT_VERSION = 1
CONVENTION = (
    "c2w: 4x4 camera-to-world, OpenCV camera axes (x right, y down, z forward); "
    "intrinsics: fx, fy, cx, cy normalised by image width (fx, cx) and height (fy, cy)"
)
#: OpenGL / NeRF camera axes (x right, y up, z backward) to OpenCV axes: flip y and z. Its own inverse.
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
#: Camera models whose parameters are exactly a pinhole (no distortion).
PINHOLE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE")
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


# ---- reading ------------------------------------------------------------------------------------------------------


def read_trajectory(path: str | Path, format: str | None = None) -> CameraTrajectory:
    """Read ``path`` as ``format`` (one of FORMATS), or detect the format from the content."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no trajectory at {path}")
    format = format or detect_format(path)
    if format not in READERS:
        raise ValueError(f"unknown trajectory format {format!r}; expected one of {', '.join(FORMATS)}")
    return READERS[format](path)


def detect_format(path: Path) -> str:
    """Name of the format of ``path``, judged by its content (a directory is a COLMAP model)."""
    if path.is_dir():
        return "colmap"
    data = path.read_bytes()
    if data.startswith(_TORCH_MAGIC):
        return "torch"
    text = _decode(data, path).lstrip()
    if text.startswith("{"):
        document = _parse_json(text, path)
        if document.get("format") == FORMAT_NAME:
            return "json"
        frames = document.get("frames")
        if isinstance(frames, list) and frames and isinstance(frames[0], dict) and "transform_matrix" in frames[0]:
            return "nerf"
        raise ValueError(f"{path}: JSON is neither a {FORMAT_NAME} file (no \"format\": \"{FORMAT_NAME}\") "
                         "nor a NeRF transforms.json (no frames with transform_matrix)")
    return "realestate10k"


def read_realestate10k(path: Path) -> CameraTrajectory:
    """RealEstate10K text: an optional first line (the video URL), then one 19-number row per frame."""
    lines = [line.split() for line in _decode(path.read_bytes(), path).splitlines()]
    lines = [line for line in lines if line]
    if lines and not _is_number(lines[0][0]):
        lines = lines[1:]  # the video URL
    rows = []
    for number, line in enumerate(lines):
        if len(line) not in (18, 19):
            raise ValueError(f"{path}: row {number} has {len(line)} values, expected 19 "
                             "(timestamp fx fy cx cy k1 k2 and a 3x4 world-to-camera matrix) or 18 (no timestamp)")
        if len(line) != len(lines[0]):
            raise ValueError(f"{path}: row {number} has {len(line)} values but row 0 has {len(lines[0])}")
        try:
            rows.append([float(value) for value in line])
        except ValueError:
            text = " ".join(line)[:80]
            raise ValueError(f"{path}: row {number} holds a value that is not a number: {text!r}") from None
    if not rows:
        raise ValueError(f"{path}: no camera rows (empty trajectory)")
    return _with_path(path, CameraTrajectory.from_realestate10k, np.array(rows))


def read_torch(path: Path) -> CameraTrajectory:
    """The demo format: ``torch.save({"cameras": tensor[N, 18 or 19]})``, read without unpickling code."""
    try:
        content = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt archives; all mean "not readable"
        raise ValueError(f"{path}: not a readable torch file ({type(error).__name__}: {error})") from None
    cameras = content.get("cameras") if isinstance(content, dict) else content
    if not isinstance(cameras, torch.Tensor):
        raise ValueError(f"{path}: expected a dict with a 'cameras' tensor of RealEstate10K rows [N, 18]")
    return _with_path(path, CameraTrajectory.from_realestate10k, cameras)


def read_dualcam_json(path: Path) -> CameraTrajectory:
    """Our JSON format (see ``write_dualcam_json`` and docs/camera.md)."""
    document = _parse_json(_decode(path.read_bytes(), path), path)
    if document.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}: \"format\" must be \"{FORMAT_NAME}\", got {_short(document.get('format'))}")
    if document.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported version {_short(document.get('version'))}; this reader knows version "
                         f"{FORMAT_VERSION}")
    frames = document.get("frames")
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{path}: \"frames\" must be a non-empty list of {{\"c2w\": ..., \"intrinsics\": ...}}")
    c2w = np.tile(np.eye(4), (len(frames), 1, 1))
    intrinsics = np.empty((len(frames), 4))
    for index, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise ValueError(f"{path}: frame {index} must be an object with \"c2w\" and \"intrinsics\"")
        pose = _float_array(frame.get("c2w"), path, f"frame {index} c2w")
        if pose.shape not in ((3, 4), (4, 4)):
            raise ValueError(f"{path}: frame {index} c2w must be a 4x4 (or 3x4) matrix, got shape {list(pose.shape)}")
        c2w[index, : pose.shape[0]] = pose
        intrinsics[index] = _float_array(frame.get("intrinsics"), path, f"frame {index} intrinsics", (4,))
    source_size = document.get("source_size")
    return _with_path(path, CameraTrajectory, c2w, intrinsics, None if source_size is None else source_size)


def read_nerf_transforms(path: Path) -> CameraTrajectory:
    """NeRF / instant-ngp transforms.json: OpenGL camera-to-world ``transform_matrix`` per frame, in file order.

    Intrinsics come from ``fl_x``/``fl_y`` (pixels) or ``camera_angle_x``/``camera_angle_y`` and ``cx``/``cy``
    (pixels, default the image centre), per frame where present, otherwise global. The image size is ``w``/``h``,
    or read from the first frame's image when the file does not give it.
    """
    document = _parse_json(_decode(path.read_bytes(), path), path)
    frames = document.get("frames")
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{path}: \"frames\" must be a non-empty list")
    c2w = np.empty((len(frames), 4, 4))
    intrinsics = np.empty((len(frames), 4))
    sizes = set()
    for index, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise ValueError(f"{path}: frame {index} must be an object with a \"transform_matrix\"")
        pose = _float_array(frame.get("transform_matrix"), path, f"frame {index} transform_matrix", (4, 4))
        c2w[index] = pose @ OPENGL_TO_OPENCV
        fields = {**document, **frame}
        width, height = _nerf_image_size(fields, path, index)
        sizes.add((width, height))
        intrinsics[index] = _nerf_intrinsics(fields, width, height, path, index)
    source_size = sizes.pop() if len(sizes) == 1 else None
    return _with_path(path, CameraTrajectory, c2w, intrinsics, source_size)


def read_colmap(path: Path) -> CameraTrajectory:
    """A COLMAP sparse model directory (text or binary) read with pycolmap; images ordered by name.

    Each image gets its own camera's intrinsics normalised by that camera's width and height. Models with
    distortion are reduced to their pinhole part, with a warning.
    """
    import pycolmap

    model_dir = path / "sparse" / "0" if (path / "sparse" / "0").is_dir() else path
    try:
        with tempfile.TemporaryDirectory() as scratch:
            reconstruction = pycolmap.Reconstruction(_complete_colmap_dir(model_dir, Path(scratch)))
    except Exception as error:  # pycolmap raises ValueError/RuntimeError/MemoryError for bad models
        raise ValueError(f"{path}: not a readable COLMAP model ({type(error).__name__}: {error})") from None
    images = sorted((image for image in reconstruction.images.values() if image.has_pose), key=lambda im: im.name)
    if not images:
        raise ValueError(f"{path}: COLMAP model has no registered images (empty trajectory)")
    w2c = np.tile(np.eye(4), (len(images), 1, 1))
    intrinsics = np.empty((len(images), 4))
    distorted_models = set()
    sizes = set()
    for index, image in enumerate(images):
        w2c[index, :3] = image.cam_from_world().matrix()
        camera = reconstruction.cameras[image.camera_id]
        if camera.width <= 0 or camera.height <= 0:
            raise ValueError(f"{path}: camera {image.camera_id} has size {camera.width}x{camera.height}")
        if camera.model.name not in PINHOLE_MODELS:
            distorted_models.add(camera.model.name)
        sizes.add((camera.width, camera.height))
        intrinsics[index] = [camera.focal_length_x / camera.width, camera.focal_length_y / camera.height,
                             camera.principal_point_x / camera.width, camera.principal_point_y / camera.height]
    if distorted_models:
        warnings.warn(f"{path}: camera model(s) {', '.join(sorted(distorted_models))} reduced to pinhole; "
                      "distortion parameters are ignored", stacklevel=3)
    return _with_path(path, CameraTrajectory, np.linalg.inv(w2c), intrinsics, sizes.pop() if len(sizes) == 1 else None)


def _complete_colmap_dir(model_dir: Path, scratch: Path) -> Path:
    """``model_dir``, or a copy in ``scratch`` with an empty points3D.txt when a text model lacks one."""
    names = {entry.name for entry in model_dir.iterdir()}
    if {"cameras.bin", "images.bin"} <= names or {"cameras.txt", "images.txt", "points3D.txt"} <= names:
        return model_dir
    if {"cameras.txt", "images.txt"} <= names:
        for name in ("cameras.txt", "images.txt"):
            shutil.copy(model_dir / name, scratch / name)
        (scratch / "points3D.txt").write_text("")
        return scratch
    raise ValueError(f"{model_dir}: a COLMAP model needs cameras.txt and images.txt (or cameras.bin, images.bin "
                     "and points3D.bin)")


# ---- writing ------------------------------------------------------------------------------------------------------


def write_trajectory(trajectory: CameraTrajectory, path: str | Path, format: str | None = None) -> Path:
    """Write ``trajectory`` to ``path`` as ``format``, by default chosen from the path (see ``format_for_path``)."""
    path = Path(path)
    format = format or format_for_path(path)
    if format not in WRITERS:
        raise ValueError(f"unknown trajectory format {format!r}; expected one of {', '.join(FORMATS)}")
    WRITERS[format](trajectory, path)
    return path


def format_for_path(path: Path) -> str:
    """Format implied by a path: transforms.json -> nerf, .json -> json, .txt -> realestate10k, .torch/.pt -> torch,
    an existing directory or a path without suffix -> colmap."""
    if path.name == "transforms.json":
        return "nerf"
    by_suffix = {".json": "json", ".txt": "realestate10k", ".torch": "torch", ".pt": "torch", "": "colmap"}
    if path.is_dir():
        return "colmap"
    if path.suffix.lower() not in by_suffix:
        raise ValueError(f"cannot tell the format from {path.name!r}; pass format= one of {', '.join(FORMATS)}")
    return by_suffix[path.suffix.lower()]


def write_dualcam_json(trajectory: CameraTrajectory, path: Path) -> None:
    """Our versioned JSON: format, version, convention, source_size ([w, h] or null), frames of c2w + intrinsics."""
    document = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "convention": CONVENTION,
        "source_size": list(trajectory.source_size) if trajectory.source_size else None,
        "frames": [{"c2w": pose.tolist(), "intrinsics": values.tolist()}
                   for pose, values in zip(trajectory.c2w, trajectory.intrinsics)],
    }
    atomic_write(path, json.dumps(document, indent=1).encode())


def write_realestate10k(trajectory: CameraTrajectory, path: Path) -> None:
    """RealEstate10K text: a first line standing for the URL, then 19 numbers per frame (30 fps timestamps)."""
    lines = [FORMAT_NAME] + [" ".join(_format_number(value) for value in row) for row in trajectory.to_realestate10k()]
    atomic_write(path, ("\n".join(lines) + "\n").encode())


def write_torch(trajectory: CameraTrajectory, path: Path) -> None:
    """The demo format: ``{"cameras": float32 tensor [N, 18]}`` (RealEstate10K rows without timestamp)."""
    buffer = io.BytesIO()
    torch.save({"cameras": torch.from_numpy(trajectory.to_realestate10k()[:, 1:]).float()}, buffer)
    atomic_write(path, buffer.getvalue())


def write_nerf_transforms(trajectory: CameraTrajectory, path: Path) -> None:
    """NeRF transforms.json: OpenGL ``transform_matrix`` per frame, pixel intrinsics, ``w``/``h`` = source_size."""
    width, height = _require_source_size(trajectory, "NeRF transforms.json")
    pixel = trajectory.pixel_intrinsics(height, width)
    frames = [{"file_path": f"images/frame_{index:05d}.png", "transform_matrix": (pose @ OPENGL_TO_OPENCV).tolist(),
               "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy}
              for index, (pose, (fx, fy, cx, cy)) in enumerate(zip(trajectory.c2w, pixel.tolist()))]
    document = {"w": width, "h": height, "camera_angle_x": 2 * math.atan(0.5 / trajectory.intrinsics[0, 0]),
                "camera_angle_y": 2 * math.atan(0.5 / trajectory.intrinsics[0, 1]), "frames": frames}
    atomic_write(path, json.dumps(document, indent=1).encode())


def write_colmap(trajectory: CameraTrajectory, path: Path) -> None:
    """COLMAP text model in directory ``path``: one PINHOLE camera per distinct intrinsics, images
    ``frame_00000.png``... (so that name order is frame order), an empty points3D.txt."""
    width, height = _require_source_size(trajectory, "COLMAP")
    pixel = trajectory.pixel_intrinsics(height, width)
    unique_intrinsics, camera_index = np.unique(pixel, axis=0, return_inverse=True)
    cameras = ["# Camera list: CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[] (fx, fy, cx, cy)"]
    cameras += [f"{number + 1} PINHOLE {width} {height} " + " ".join(_format_number(value) for value in values)
                for number, values in enumerate(unique_intrinsics)]
    w2c = trajectory.w2c
    quaternions = Rotation.from_matrix(w2c[:, :3, :3]).as_quat()  # x, y, z, w
    images = ["# Image list: IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME, then a line of POINTS2D"]
    for index in range(len(trajectory)):
        qx, qy, qz, qw = quaternions[index]
        values = [qw, qx, qy, qz, *w2c[index, :3, 3]]
        images.append(f"{index + 1} " + " ".join(_format_number(value) for value in values)
                      + f" {int(camera_index[index]) + 1} frame_{index:05d}.png")
        images.append("")
    path.mkdir(parents=True, exist_ok=True)
    atomic_write(path / "cameras.txt", ("\n".join(cameras) + "\n").encode())
    atomic_write(path / "images.txt", ("\n".join(images) + "\n").encode())
    atomic_write(path / "points3D.txt", b"# 3D point list: empty (camera trajectory only)\n")


READERS: dict[str, Callable[[Path], CameraTrajectory]] = {
    "json": read_dualcam_json, "realestate10k": read_realestate10k, "torch": read_torch, "colmap": read_colmap,
    "nerf": read_nerf_transforms,
}
WRITERS: dict[str, Callable[[CameraTrajectory, Path], None]] = {
    "json": write_dualcam_json, "realestate10k": write_realestate10k, "torch": write_torch, "colmap": write_colmap,
    "nerf": write_nerf_transforms,
}
#: Format names accepted by ``load(format=...)`` and ``save(format=...)``.
FORMATS = tuple(READERS)


# ---- helpers ------------------------------------------------------------------------------------------------------


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a UTF-8 text file and not a torch file ({error})") from None


def _parse_json(text: str, path: Path) -> dict:
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"{path}: invalid JSON ({error})") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path}: the JSON document must be an object, got {type(document).__name__}")
    return document


def _float_array(value: Any, path: Path, what: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``value`` as a float64 array (of ``shape`` if given), or a ValueError naming ``what``."""
    if isinstance(value, (str, bytes, dict)) or value is None:
        raise ValueError(f"{path}: {what} must be numbers, got {type(value).__name__}")
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise ValueError(f"{path}: {what} must be a rectangular array of numbers") from None
    if shape is not None and array.shape != shape:
        raise ValueError(f"{path}: {what} must have shape {list(shape)}, got {list(array.shape)}")
    return array


def _float_field(fields: dict, key: str, path: Path, index: int) -> float | None:
    value = fields.get(key)
    if value is None:
        return None
    try:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{path}: frame {index}: {key!r} must be a finite number, got {_short(value)}")
    return number


def _nerf_image_size(fields: dict, path: Path, index: int) -> tuple[int, int]:
    width, height = _float_field(fields, "w", path, index), _float_field(fields, "h", path, index)
    if width is None or height is None:
        width, height = _image_file_size(fields.get("file_path"), path, index)
    if width <= 0 or height <= 0 or width != int(width) or height != int(height):
        raise ValueError(f"{path}: frame {index}: image size w={width:g}, h={height:g} must be positive whole pixels")
    return int(width), int(height)


def _image_file_size(file_path: Any, path: Path, index: int) -> tuple[int, int]:
    """Size of the image a NeRF frame points at (blender-style paths may omit the .png)."""
    from PIL import Image

    if isinstance(file_path, str) and file_path:
        for candidate in (path.parent / file_path, path.parent / f"{file_path}.png"):
            if candidate.is_file():
                try:
                    with Image.open(candidate) as image:
                        return image.size
                except OSError:
                    break
    raise ValueError(f"{path}: frame {index}: no image size: give \"w\" and \"h\" (or a readable file_path image)")


def _nerf_intrinsics(fields: dict, width: int, height: int, path: Path, index: int) -> list[float]:
    """Normalised fx, fy, cx, cy of one NeRF frame."""
    focal_x, focal_y = _float_field(fields, "fl_x", path, index), _float_field(fields, "fl_y", path, index)
    angle_x = _float_field(fields, "camera_angle_x", path, index)
    angle_y = _float_field(fields, "camera_angle_y", path, index)
    for name, angle in (("camera_angle_x", angle_x), ("camera_angle_y", angle_y)):
        if angle is not None and not 0 < angle < math.pi:
            raise ValueError(f"{path}: frame {index}: {name} must be in (0, pi) radians, got {angle:g}")
    if focal_x is None and angle_x is not None:
        focal_x = 0.5 * width / math.tan(angle_x / 2)
    if focal_y is None and angle_y is not None:
        focal_y = 0.5 * height / math.tan(angle_y / 2)
    if focal_x is None and focal_y is None:
        raise ValueError(f"{path}: frame {index}: no focal length (fl_x, fl_y, camera_angle_x or camera_angle_y)")
    focal_x = focal_y if focal_x is None else focal_x  # square pixels when only one axis is given
    focal_y = focal_x if focal_y is None else focal_y
    centre_x, centre_y = _float_field(fields, "cx", path, index), _float_field(fields, "cy", path, index)
    centre_x = width / 2 if centre_x is None else centre_x
    centre_y = height / 2 if centre_y is None else centre_y
    return [focal_x / width, focal_y / height, centre_x / width, centre_y / height]


def _require_source_size(trajectory: CameraTrajectory, format_name: str) -> tuple[int, int]:
    if trajectory.source_size is None:
        raise ValueError(f"{format_name} stores pixel intrinsics: the trajectory needs a source_size; build it with "
                         "CameraTrajectory(c2w, intrinsics, source_size=(width, height)) "
                         "(command line: --source-size WxH)")
    return trajectory.source_size


def _with_path(path: Path, build: Callable[..., CameraTrajectory], *args: Any) -> CameraTrajectory:
    """``build(*args)``, with ``path`` prefixed to any ValueError it raises."""
    try:
        return build(*args)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _short(value: Any) -> str:
    """``repr(value)``, cut to a length that fits in an error message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _format_number(value: float) -> str:
    """Shortest text that reads back as exactly ``value``."""
    return repr(float(value))
