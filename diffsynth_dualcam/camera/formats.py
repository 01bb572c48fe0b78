"""Reading and writing camera trajectories: our JSON, RealEstate10K, demo .torch, COLMAP and NeRF transforms.json.

Every reader turns malformed input into a ``ValueError`` naming the file and the problem. Every writer writes to a
temporary file beside the target and renames it, so a failed write never leaves a partial file.
"""
from __future__ import annotations

import functools
import io
import json
import math
import mmap
import re
import shutil
import struct
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from ..io import atomic_write
from ..limits import MAX_TRAJECTORY_BYTES, MAX_TRAJECTORY_FRAMES
from .trajectory import REALESTATE10K_FRAME_SIZE, ROTATION_TOLERANCE, CameraTrajectory, check_size

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
#: Files of a binary COLMAP model that readers take over a text model in the same folder.
COLMAP_BINARY_FILES = ("cameras.bin", "images.bin")
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
_ACCEPTED_JSON = (f"accepted JSON trajectories are objects: a {FORMAT_NAME} file "
                  f"({{\"format\": \"{FORMAT_NAME}\", \"version\": {FORMAT_VERSION}, \"frames\": [...]}}) or a NeRF "
                  "transforms.json ({\"frames\": [{\"transform_matrix\": ...}, ...]})")
# COLMAP binary records (little-endian): the count that starts each file; a camera (camera_id, model_id, width,
# height, then the model's float64 parameters); an image (image_id, qw qx qy qz tx ty tz, camera_id, then a
# NUL-terminated name and a 2D point count); one 2D point is x, y (float64) and a point3D_id (uint64).
_COLMAP_COUNT = struct.Struct("<Q")
_COLMAP_CAMERA = struct.Struct("<IiQQ")
_COLMAP_IMAGE = struct.Struct("<I7dI")
_COLMAP_POINT2D_BYTES = 24
#: A number as the text formats write it: ASCII digits, an optional sign, fraction and exponent; no "_", "nan",
#: "inf" nor digits of other scripts (which Python's float() would all accept).
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
#: Largest COLMAP images file (its 2D points make it large in real models; they are skipped, not read).
MAX_COLMAP_IMAGES_BYTES = 2 * 2**30


# ---- reading ------------------------------------------------------------------------------------------------------


def read_trajectory(path: str | Path, format: str | None = None) -> CameraTrajectory:
    """Read ``path`` as ``format`` (one of FORMATS), or detect the format from the content."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no trajectory at {path}")
    if not path.is_dir():
        _check_regular_file(path, MAX_TRAJECTORY_BYTES)
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
    if text.startswith("["):
        raise ValueError(f"{path}: a JSON array is not a trajectory; {_ACCEPTED_JSON}")
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
    """RealEstate10K text: an optional first line (the video URL), then one 19-number row per frame.

    The source size is RealEstate10K's 640x360 unless the first line is ours and says otherwise
    (``dualcam-trajectory source_size=WxH`` or ``source_size=none``, see ``write_realestate10k``).
    """
    lines = [line.split() for line in _decode(path.read_bytes(), path).splitlines()]
    lines = [line for line in lines if line]
    source_size = REALESTATE10K_FRAME_SIZE
    if lines and not _is_number(lines[0][0]) and (len(lines[0]) == 1 or lines[0][0] == FORMAT_NAME):
        source_size = _realestate10k_source_size(lines[0], path)
        lines = lines[1:]  # the video URL, or our header
    _check_frame_count(len(lines), path)
    rows = []
    for number, line in enumerate(lines):
        if len(line) not in (18, 19):
            raise ValueError(f"{path}: row {number} has {len(line)} values, expected 19 "
                             "(timestamp fx fy cx cy k1 k2 and a 3x4 world-to-camera matrix) or 18 (no timestamp)")
        if len(line) != len(lines[0]):
            raise ValueError(f"{path}: row {number} has {len(line)} values but row 0 has {len(lines[0])}")
        try:
            rows.append([parse_number(value) for value in line])
        except ValueError:
            text = " ".join(line)[:80]
            raise ValueError(f"{path}: row {number} holds a value that is not a number: {text!r}") from None
    if not rows:
        raise ValueError(f"{path}: no camera rows (empty trajectory)")
    return _with_path(path, CameraTrajectory.from_realestate10k, np.array(rows), source_size)


def _realestate10k_source_size(first_line: list[str], path: Path) -> tuple[int, int] | None:
    """The source size a RealEstate10K first line states: ours may carry ``source_size=WxH`` or ``none``."""
    if first_line[0] != FORMAT_NAME:
        return REALESTATE10K_FRAME_SIZE  # a video URL
    for token in first_line[1:]:
        key, _, value = token.partition("=")
        if key != "source_size":
            continue
        if value == "none":
            return None
        match = re.fullmatch(r"([0-9]+)x([0-9]+)", value)
        if match is None or not int(match[1]) or not int(match[2]):
            raise ValueError(f"{path}: first line: source_size must be WIDTHxHEIGHT in positive whole pixels "
                             f"(e.g. 640x360) or none, got {_short(value)}")
        return _with_path(path, check_size, (int(match[1]), int(match[2])), "first line: source_size")
    return REALESTATE10K_FRAME_SIZE


def read_torch(path: Path) -> CameraTrajectory:
    """The demo format: ``torch.save({"cameras": tensor[N, 18 or 19]})``, read without unpickling code.

    An optional ``"source_size"`` entry (``[width, height]`` or None, written by ``write_torch``) gives the source
    size; without it (the demo files) it is RealEstate10K's 640x360.
    """
    import torch  # only this format needs it

    try:
        content = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt archives; all mean "not readable"
        if "Weights only load failed" in str(error):
            raise ValueError(f"{path}: holds Python objects other than tensors and plain containers; refused, as "
                             "loading them could run code") from None
        raise ValueError(f"{path}: not a readable torch file ({type(error).__name__}: {error})") from None
    cameras = content.get("cameras") if isinstance(content, dict) else content
    if not isinstance(cameras, torch.Tensor):
        raise ValueError(f"{path}: expected a dict with a 'cameras' tensor of RealEstate10K rows [N, 18]")
    source_size = REALESTATE10K_FRAME_SIZE
    if isinstance(content, dict):
        source_size = content.get("source_size", REALESTATE10K_FRAME_SIZE)
    if source_size is not None:
        if not (isinstance(source_size, (list, tuple)) and len(source_size) == 2
                and all(type(value) is int for value in source_size)):
            raise ValueError(f"{path}: 'source_size' must be [width, height] in whole pixels or None, "
                             f"got {_short(source_size)}")
        source_size = _with_path(path, check_size, source_size, "source_size")
    trajectory = _with_path(path, CameraTrajectory.from_realestate10k, cameras, source_size)
    _check_frame_count(len(trajectory), path)
    return trajectory


def read_dualcam_json(path: Path) -> CameraTrajectory:
    """Our JSON format (see ``write_dualcam_json`` and docs/camera.md)."""
    document = _parse_json(_decode(path.read_bytes(), path), path)
    if document.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}: \"format\" must be \"{FORMAT_NAME}\", got {_short(document.get('format'))}")
    version = document.get("version")
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported version {_short(version)}; this reader knows version "
                         f"{FORMAT_VERSION}")
    frames = document.get("frames")
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{path}: \"frames\" must be a non-empty list of {{\"c2w\": ..., \"intrinsics\": ...}}")
    _check_frame_count(len(frames), path)
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
    _check_frame_count(len(frames), path)
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
        intrinsics[index] = _nerf_intrinsics(fields, path, index, width=width, height=height)
    source_size = sizes.pop() if len(sizes) == 1 else None
    return _with_path(path, CameraTrajectory, c2w, intrinsics, source_size)


def read_colmap(path: Path) -> CameraTrajectory:
    """A COLMAP sparse model directory (text or binary) read with pycolmap; images ordered by name.

    Only cameras and images are read (3D points, rigs and frames are not needed for the poses); binary files are
    checked record by record first (see ``_colmap_model_copy``). Each image gets its own camera's intrinsics
    normalised by that camera's width and height. Models with distortion are reduced to their pinhole part, with a
    warning.
    """
    import pycolmap

    model_dir = path / "sparse" / "0" if (path / "sparse" / "0").is_dir() else path
    with tempfile.TemporaryDirectory() as scratch:
        model_copy = _colmap_model_copy(model_dir, Path(scratch))
        try:
            reconstruction = pycolmap.Reconstruction(model_copy)
        except MemoryError:  # checked input stays small: running out of memory is not a fault of the file
            raise
        except Exception as error:  # pycolmap raises ValueError/RuntimeError/IndexError for bad models
            raise ValueError(f"{path}: not a readable COLMAP model ({type(error).__name__}: {error})") from None
    images = sorted((image for image in reconstruction.images.values() if image.has_pose), key=lambda im: im.name)
    _check_frame_count(len(images), path)
    if not images:
        raise ValueError(f"{path}: COLMAP model has no registered images (empty trajectory)")
    w2c = np.tile(np.eye(4), (len(images), 1, 1))
    intrinsics = np.empty((len(images), 4))
    distorted_models = set()
    sizes = set()
    for index, image in enumerate(images):
        cam_from_world = image.cam_from_world()
        quaternion = np.asarray(cam_from_world.rotation.quat, dtype=np.float64)  # x, y, z, w
        norm = float(np.linalg.norm(quaternion))
        if not abs(norm - 1.0) <= ROTATION_TOLERANCE:
            qx, qy, qz, qw = quaternion.tolist()
            raise ValueError(f"{path}: image {image.name!r} (id {image.image_id}): quaternion (qw qx qy qz) = "
                             f"({qw:g} {qx:g} {qy:g} {qz:g}) has norm {norm:g}; a rotation needs a unit quaternion")
        w2c[index, :3, :3] = Rotation.from_quat(quaternion).as_matrix()
        w2c[index, :3, 3] = cam_from_world.translation
        camera = reconstruction.cameras[image.camera_id]
        if camera.width <= 0 or camera.height <= 0:
            raise ValueError(f"{path}: camera {image.camera_id} has size {camera.width}x{camera.height}")
        if not camera.focal_length_idxs() or not camera.principal_point_idxs():  # asking pycolmap would crash
            raise ValueError(f"{path}: camera {image.camera_id} uses the {camera.model.name} model, which has no "
                             "focal length and principal point; a perspective camera model is needed")
        if camera.model.name not in PINHOLE_MODELS:
            distorted_models.add(camera.model.name)
        sizes.add((camera.width, camera.height))
        intrinsics[index] = [camera.focal_length_x / camera.width, camera.focal_length_y / camera.height,
                             camera.principal_point_x / camera.width, camera.principal_point_y / camera.height]
    if distorted_models:
        warnings.warn(f"{path}: camera model(s) {', '.join(sorted(distorted_models))} reduced to pinhole; "
                      "distortion parameters are ignored", stacklevel=3)
    return _with_path(path, CameraTrajectory, np.linalg.inv(w2c), intrinsics, sizes.pop() if len(sizes) == 1 else None)


def _colmap_model_copy(model_dir: Path, scratch: Path) -> Path:
    """The cameras and images of the model in ``model_dir`` copied to ``scratch``, with an empty 3D point list.

    A binary model (cameras.bin and images.bin) is preferred; its files are checked first and copied without their
    2D points. Neither points3D nor rigs and frames are copied: pycolmap then makes one rig per camera and one frame
    per image from the poses images.bin / images.txt hold.
    """
    if not model_dir.is_dir():
        raise ValueError(f"{model_dir}: a COLMAP model is a directory holding cameras.txt and images.txt (or the .bin "
                         "files)")
    names = {entry.name for entry in model_dir.iterdir()}
    used = ("cameras.bin", "images.bin") if {"cameras.bin", "images.bin"} <= names else ("cameras.txt", "images.txt")
    for name in used:
        if name in names:
            _check_regular_file(model_dir / name,
                                MAX_COLMAP_IMAGES_BYTES if name.startswith("images") else MAX_TRAJECTORY_BYTES)
    if {"cameras.bin", "images.bin"} <= names:
        camera_ids = _check_colmap_cameras_bin(model_dir / "cameras.bin")
        images = _colmap_images_bin_without_points(model_dir / "images.bin", camera_ids)
        shutil.copy(model_dir / "cameras.bin", scratch / "cameras.bin")
        (scratch / "images.bin").write_bytes(images)
        (scratch / "points3D.bin").write_bytes(_COLMAP_COUNT.pack(0))
    elif {"cameras.txt", "images.txt"} <= names:
        for name in ("cameras.txt", "images.txt"):
            shutil.copy(model_dir / name, scratch / name)
        (scratch / "points3D.txt").write_text("")
    else:
        raise ValueError(f"{model_dir}: a COLMAP model needs cameras.txt and images.txt (or cameras.bin and "
                         "images.bin)")
    return scratch


@functools.cache
def _colmap_camera_models() -> dict[int, tuple[str, int]]:
    """COLMAP camera model id -> (name, number of parameters), as pycolmap defines them."""
    import pycolmap

    return {int(model): (name, len(pycolmap.Camera.create_from_model_id(1, model, 1.0, 1, 1).params))
            for name, model in pycolmap.CameraModelId.__members__.items() if int(model) >= 0}


def _check_colmap_cameras_bin(path: Path) -> set[int]:
    """Camera ids of a cameras.bin whose records all fit the file exactly; a ValueError naming the bad record.

    pycolmap trusts the counts in a binary model: a truncated or corrupt file can make it read forever or allocate
    gigabytes, so each record is checked against the file size before pycolmap sees it.
    """
    data = path.read_bytes()
    count, offset = _colmap_count(data, len(data), path, "camera", _COLMAP_CAMERA.size)
    models = _colmap_camera_models()
    camera_ids = set()
    for index in range(count):
        if offset + _COLMAP_CAMERA.size > len(data):
            raise ValueError(f"{path}: camera record {index}: the file ends inside the record")
        camera_id, model_id, _, _ = _COLMAP_CAMERA.unpack_from(data, offset)
        where = f"{path}: camera record {index} (id {camera_id})"
        if model_id not in models:
            raise ValueError(f"{where}: unknown camera model id {model_id}; known ids are 0..{max(models)}")
        if camera_id in camera_ids:
            raise ValueError(f"{where}: camera id {camera_id} appears twice")
        model_name, num_params = models[model_id]
        offset += _COLMAP_CAMERA.size + 8 * num_params
        if offset > len(data):
            raise ValueError(f"{where}: the file ends inside the {num_params} parameters of its {model_name} model")
        camera_ids.add(camera_id)
    if offset != len(data):
        raise ValueError(f"{path}: {len(data) - offset} byte(s) follow the last of the {count} camera records")
    return camera_ids


def _colmap_images_bin_without_points(path: Path, camera_ids: set[int]) -> bytes:
    """images.bin with every record checked against the file size and the 2D points dropped (counts set to 0).

    Each record needs a NUL-terminated UTF-8 name inside the file, a camera id from cameras.bin and room for the
    24 bytes of each of its 2D points. The file is mapped, not read, so that large point lists cost no memory.
    """
    with path.open("rb") as file:
        size = file.seek(0, 2)
        if size == 0:
            raise ValueError(f"{path}: empty file; expected an image count")
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _strip_colmap_images(data, size, path, camera_ids)


def _strip_colmap_images(data: mmap.mmap, size: int, path: Path, camera_ids: set[int]) -> bytes:
    minimum_record = _COLMAP_IMAGE.size + 1 + _COLMAP_COUNT.size  # an empty name and no 2D points
    count, offset = _colmap_count(data, size, path, "image", minimum_record)
    _check_frame_count(count, path)
    records = [_COLMAP_COUNT.pack(count)]
    image_ids = set()
    for index in range(count):
        if offset + _COLMAP_IMAGE.size > size:
            raise ValueError(f"{path}: image record {index}: the file ends inside the record")
        image_id, *_, camera_id = _COLMAP_IMAGE.unpack_from(data, offset)
        where = f"{path}: image record {index} (id {image_id})"
        if image_id in image_ids:
            raise ValueError(f"{where}: image id {image_id} appears twice")
        if camera_id not in camera_ids:
            raise ValueError(f"{where}: camera id {camera_id} is not in cameras.bin")
        name_start = offset + _COLMAP_IMAGE.size
        name_end = data.find(b"\0", name_start, size)
        if name_end < 0:
            raise ValueError(f"{where}: the file ends inside the image name (no terminating NUL byte)")
        try:
            data[name_start:name_end].decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{where}: the image name is not UTF-8 text") from None
        points_start = name_end + 1 + _COLMAP_COUNT.size
        if points_start > size:
            raise ValueError(f"{where}: the file ends before the 2D point count")
        (num_points,) = _COLMAP_COUNT.unpack_from(data, name_end + 1)
        if num_points * _COLMAP_POINT2D_BYTES > size - points_start:
            raise ValueError(f"{where}: {num_points} 2D points need {num_points * _COLMAP_POINT2D_BYTES} bytes but "
                             f"only {size - points_start} remain in the file")
        records += [data[offset:name_end + 1], _COLMAP_COUNT.pack(0)]
        image_ids.add(image_id)
        offset = points_start + num_points * _COLMAP_POINT2D_BYTES
    if offset != size:
        raise ValueError(f"{path}: {size - offset} byte(s) follow the last of the {count} image records")
    return b"".join(records)


def _colmap_count(data: bytes | mmap.mmap, size: int, path: Path, what: str, minimum_record: int) -> tuple[int, int]:
    """The record count that starts a COLMAP binary file, checked to fit; returns it and the offset after it."""
    if size < _COLMAP_COUNT.size:
        raise ValueError(f"{path}: {size} bytes are too few for the {what} count (8 bytes)")
    (count,) = _COLMAP_COUNT.unpack_from(data, 0)
    room = (size - _COLMAP_COUNT.size) // minimum_record
    if count > room:
        raise ValueError(f"{path}: the header counts {count} {what}s but {size} bytes hold at most {room}")
    return count, _COLMAP_COUNT.size


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
    atomic_write(path, json.dumps(document, indent=1, allow_nan=False).encode())


def write_realestate10k(trajectory: CameraTrajectory, path: Path) -> None:
    """RealEstate10K text: a first line in place of the URL, ``dualcam-trajectory source_size=WxH`` (or
    ``source_size=none``), then 19 numbers per frame (30 fps timestamps)."""
    size = "{}x{}".format(*trajectory.source_size) if trajectory.source_size else "none"
    lines = [f"{FORMAT_NAME} source_size={size}"]
    lines += [" ".join(_format_number(value) for value in row) for row in trajectory.to_realestate10k()]
    atomic_write(path, ("\n".join(lines) + "\n").encode())


def write_torch(trajectory: CameraTrajectory, path: Path) -> None:
    """The demo format, ``{"cameras": float32 tensor [N, 18]}`` (RealEstate10K rows without timestamp), plus
    ``"source_size": [width, height]`` (or None), which readers of the demo format ignore."""
    import torch  # only this format needs it

    buffer = io.BytesIO()
    cameras = torch.from_numpy(trajectory.to_realestate10k()[:, 1:]).float()
    source_size = list(trajectory.source_size) if trajectory.source_size else None
    torch.save({"cameras": cameras, "source_size": source_size}, buffer)
    atomic_write(path, buffer.getvalue())


def write_nerf_transforms(trajectory: CameraTrajectory, path: Path) -> None:
    """NeRF transforms.json: OpenGL ``transform_matrix`` per frame, pixel intrinsics, ``w``/``h`` = source_size."""
    width, height = _require_source_size(trajectory, "NeRF transforms.json")
    pixel = trajectory.pixel_intrinsics(width=width, height=height)
    frames = [{"file_path": f"images/frame_{index:05d}.png", "transform_matrix": (pose @ OPENGL_TO_OPENCV).tolist(),
               "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy}
              for index, (pose, (fx, fy, cx, cy)) in enumerate(zip(trajectory.c2w, pixel.tolist()))]
    document = {"w": width, "h": height, "camera_angle_x": 2 * math.atan(0.5 / trajectory.intrinsics[0, 0]),
                "camera_angle_y": 2 * math.atan(0.5 / trajectory.intrinsics[0, 1]), "frames": frames}
    atomic_write(path, json.dumps(document, indent=1, allow_nan=False).encode())


def colmap_image_name(index: int, num_frames: int) -> str:
    """Name of frame ``index`` of ``num_frames`` in a written COLMAP model: zero-padded so name order is frame order."""
    return f"frame_{index:0{max(5, len(str(num_frames - 1)))}d}.png"


def write_colmap(trajectory: CameraTrajectory, path: Path, replace_points: bool = False) -> None:
    """COLMAP text model in directory ``path``: one PINHOLE camera per distinct intrinsics, images
    ``frame_00000.png``... (zero-padded so that name order is frame order), and an empty points3D.txt. A folder
    holding a binary model is refused (readers would take it over the text one), and so is one whose points3D.txt
    holds points (their tracks refer to the images this replaces) unless ``replace_points``, for a writer that
    writes the points of the new images next."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path}: a COLMAP model is a folder, and this is a file")
    binary = sorted(name for name in COLMAP_BINARY_FILES if (path / name).exists())
    if binary:
        raise ValueError(f"{path}: holds a binary COLMAP model ({', '.join(binary)}), which readers take over the "
                         "text model this writes: write into another folder")
    points = path / "points3D.txt"
    if not replace_points and points.is_file() and any(line.strip() and not line.lstrip().startswith("#")
                                for line in points.read_text(errors="replace").splitlines()):
        raise ValueError(f"{path}: its points3D.txt holds points, whose tracks refer to the images this would "
                         "replace: write into another folder")
    width, height = _require_source_size(trajectory, "COLMAP")
    pixel = trajectory.pixel_intrinsics(width=width, height=height)
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
                      + f" {int(camera_index[index]) + 1} {colmap_image_name(index, len(trajectory))}")
        images.append("")
    path.mkdir(parents=True, exist_ok=True)
    atomic_write(path / "cameras.txt", ("\n".join(cameras) + "\n").encode())
    atomic_write(path / "images.txt", ("\n".join(images) + "\n").encode())
    atomic_write(points, b"# 3D point list: empty (camera trajectory only)\n")


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
        return data.decode("utf-8-sig")  # a byte-order mark, which some editors write, is not part of the text
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a UTF-8 text file and not a torch file ({error})") from None


def _check_regular_file(path: Path, max_bytes: int) -> None:
    """A ValueError unless ``path`` is a regular file (not a FIFO, device or socket, which could block or never
    end) of at most ``max_bytes``."""
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file (a trajectory is a file, or a COLMAP model folder)")
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{path}: {size:,} bytes, more than the limit of {max_bytes:,} for a trajectory file")


def _check_frame_count(count: int, path: Path) -> None:
    if count > MAX_TRAJECTORY_FRAMES:
        raise ValueError(f"{path}: {count:,} frames, more than the limit of {MAX_TRAJECTORY_FRAMES:,} for a "
                         "trajectory")


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _parse_json(text: str, path: Path) -> dict:
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError(f"{path}: invalid JSON (nested too deeply)") from None
    except ValueError as error:  # JSONDecodeError, NaN/Infinity, an integer of more than 4300 digits
        raise ValueError(f"{path}: invalid JSON ({_short_text(str(error))})") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path}: the JSON document must be an object, got {type(document).__name__}")
    return document


def _float_array(value: Any, path: Path, what: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``value`` as a float64 array (of ``shape`` if given), or a ValueError naming ``what``."""
    if isinstance(value, (str, bytes, dict)) or value is None:
        raise ValueError(f"{path}: {what} must be numbers, got {type(value).__name__}")
    odd = _non_numbers(value)
    if odd:
        odd = odd[0]
        kind = "a boolean (true/false)" if isinstance(odd, bool) else _short_text(json.dumps(odd))
        raise ValueError(f"{path}: {what} must be numbers, got {kind} among them")
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise ValueError(f"{path}: {what} must be a rectangular array of numbers") from None
    if shape is not None and array.shape != shape:
        raise ValueError(f"{path}: {what} must have shape {list(shape)}, got {list(array.shape)}")
    return array


def _non_numbers(value: Any) -> list:
    """The first item of ``value``'s (nested) lists that is not a JSON number (a boolean, which numpy would take for
    0 or 1, a string such as "0.5", which it would parse, null, an object) in a list, or [] when all are numbers."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(reversed(item))
        elif isinstance(item, bool) or not isinstance(item, (int, float)):
            return [item]
    return []


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
    """Size of the image a NeRF frame points at (blender-style paths may omit the .png).

    The image must lie inside the folder of the trajectory file: a file from elsewhere must not be able to make
    the reader open (and so reveal) images anywhere on the machine.
    """
    from PIL import Image

    if isinstance(file_path, str) and file_path:
        for candidate in (_inside_folder(file_path, path, index), _inside_folder(f"{file_path}.png", path, index)):
            try:
                if not candidate.is_file():
                    continue
                with Image.open(candidate) as image:  # the header only: the size is all that is read
                    return image.size
            except (OSError, Image.DecompressionBombError):  # e.g. a name too long for the file system
                break
    raise ValueError(f"{path}: frame {index}: no image size: give \"w\" and \"h\" (or a readable file_path image)")


def _inside_folder(file_path: str, path: Path, index: int) -> Path:
    """``file_path`` resolved against the folder of ``path``; a ValueError when it is absolute or leads outside."""
    if Path(file_path).is_absolute():
        raise ValueError(f"{path}: frame {index}: file_path {_short(file_path)} is absolute; image paths must be "
                         f"relative to the folder of {path.name}")
    folder = path.parent.resolve()
    try:
        resolved = (folder / file_path).resolve()
    except (OSError, RuntimeError, ValueError) as error:  # a NUL byte (ValueError), a link loop (RuntimeError)
        raise ValueError(f"{path}: frame {index}: file_path {_short(file_path)} is not a usable path "
                         f"({error})") from None
    if not resolved.is_relative_to(folder):
        raise ValueError(f"{path}: frame {index}: file_path {_short(file_path)} leads outside the folder of "
                         f"{path.name}; image paths must stay inside it")
    return resolved


def _nerf_intrinsics(fields: dict, path: Path, index: int, *, width: int, height: int) -> list[float]:
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


def parse_number(text: str) -> float:
    """``text`` as a float if it is a plain decimal number (``-1``, ``0.5``, ``.5``, ``2e-3``); a ValueError for
    anything else Python's ``float`` would take ("0_889", "nan", "inf", digits of other scripts, spaces)."""
    if not _NUMBER.fullmatch(text):
        raise ValueError(f"not a plain decimal number: {_short(text)}")
    return float(text)


def _is_number(text: str) -> bool:
    return _NUMBER.fullmatch(text) is not None


def _short_text(text: str) -> str:
    return text if len(text) <= 200 else text[:197] + "..."


def _short(value: Any) -> str:
    """``repr(value)``, cut to a length that fits in an error message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _format_number(value: float) -> str:
    """Shortest text that reads back as exactly ``value``."""
    return repr(float(value))
