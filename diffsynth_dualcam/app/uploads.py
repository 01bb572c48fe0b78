"""Checks on everything a browser uploads before any of it is decoded or read as a trajectory.

Only files inside the web server's own upload folder are accepted; their names never choose where anything is
written. Each check raises :class:`UploadError` with a message meant for the person who uploaded the file.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageOps

from ..camera import CameraTrajectory
from ..pipeline.inputs import check_image

MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_TRAJECTORY_BYTES = 5 * 1024 * 1024
MIN_IMAGE_SIDE = 64
MAX_IMAGE_SIDE = 4096
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
TRAJECTORY_SUFFIXES = (".json", ".txt", ".torch", ".pt")
COLMAP_TEXT_FILES = ("cameras.txt", "images.txt", "points3D.txt")


class UploadError(ValueError):
    """An upload that is refused; the message says why and what is accepted."""


def upload_roots() -> list[Path]:
    """Folders the web server stores uploads in (gradio's upload folder)."""
    from gradio.utils import get_upload_folder

    return [Path(get_upload_folder()).resolve()]


def sanitise_name(name: str, fallback: str = "upload") -> str:
    """A file name made only of letters, digits, dot, dash and underscore, without any directory part."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(name)).name).strip("._")
    return stem[:100] or fallback


def size_text(num_bytes: int) -> str:
    """A byte count for people: bytes, KiB or MiB."""
    if num_bytes < 1024:
        return f"{num_bytes} bytes"
    if num_bytes < 2**20:
        return f"{num_bytes / 1024:.1f} KiB"
    return f"{num_bytes / 2**20:.1f} MiB"


def checked_upload(path: str | Path, what: str, max_bytes: int, roots: Sequence[Path] | None = None) -> Path:
    """The resolved `path` if it is a regular file inside an upload root and at most `max_bytes` long."""
    roots = upload_roots() if roots is None else [Path(root).resolve() for root in roots]
    resolved = Path(path).resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        raise UploadError(f"{what}: only files uploaded through this page are accepted")
    if not resolved.is_file():
        raise UploadError(f"{what}: the uploaded file is missing or not a regular file")
    size = resolved.stat().st_size
    if size == 0:
        raise UploadError(f"{what}: the uploaded file is empty")
    if size > max_bytes:
        raise UploadError(f"{what}: file is {size_text(size)}, the limit is {size_text(max_bytes)}")
    return resolved


def load_image_upload(path: str | Path, what: str, roots: Sequence[Path] | None = None) -> Image.Image:
    """Decode an uploaded 8-bit image after checking its format and pixel size (no decompression bombs), turned
    upright by its EXIF orientation."""
    resolved = checked_upload(path, what, MAX_IMAGE_BYTES, roots)
    try:
        with Image.open(resolved) as probe:
            image_format, (width, height) = probe.format, probe.size
    except (OSError, Image.DecompressionBombError) as error:
        raise UploadError(f"{what}: not a readable image; use one of {', '.join(IMAGE_FORMATS)}") from error
    if image_format not in IMAGE_FORMATS:
        raise UploadError(f"{what}: format {image_format} is not accepted; use one of {', '.join(IMAGE_FORMATS)}")
    if min(width, height) < MIN_IMAGE_SIDE or max(width, height) > MAX_IMAGE_SIDE:
        raise UploadError(
            f"{what}: image is {width}x{height}; each side must be between {MIN_IMAGE_SIDE} and {MAX_IMAGE_SIDE} px"
        )
    try:
        with Image.open(resolved) as image:
            upright = ImageOps.exif_transpose(image)
    except OSError as error:
        raise UploadError(f"{what}: the image data is damaged or cut short") from error
    try:
        return check_image(what, upright)
    except ValueError as error:
        raise UploadError(str(error)) from error


def load_trajectory_upload(paths: Sequence[str | Path], roots: Sequence[Path] | None = None) -> CameraTrajectory:
    """Read an uploaded trajectory: one file (.json, RealEstate10K .txt, .torch/.pt, transforms.json) or the
    text files of a COLMAP model (cameras.txt and images.txt, optionally points3D.txt)."""
    what = "trajectory file"
    if not paths:
        raise UploadError(f"{what}: nothing was uploaded")
    files = [checked_upload(path, what, MAX_TRAJECTORY_BYTES, roots) for path in paths]
    names = [path.name for path in files]
    if len(files) > 1 or names[0] in COLMAP_TEXT_FILES:
        return _load_colmap_text(files)
    if files[0].suffix.lower() not in TRAJECTORY_SUFFIXES:
        raise UploadError(
            f"{what}: {sanitise_name(names[0])} has an unknown type; accepted: {', '.join(TRAJECTORY_SUFFIXES)} or "
            f"the {' + '.join(COLMAP_TEXT_FILES[:2])} of a COLMAP model"
        )
    try:
        return CameraTrajectory.load(files[0])
    except (ValueError, OSError) as error:
        message = str(error).replace(str(files[0]), sanitise_name(names[0]))
        raise UploadError(f"{what}: {sanitise_name(names[0])} could not be read: {message}") from error


def _load_colmap_text(files: Sequence[Path]) -> CameraTrajectory:
    """Copy the uploaded COLMAP text files under their fixed names into a private folder and read it."""
    by_name = {path.name: path for path in files}
    unexpected = sorted(set(by_name) - set(COLMAP_TEXT_FILES))
    missing = [name for name in COLMAP_TEXT_FILES[:2] if name not in by_name]
    if unexpected or missing or len(by_name) != len(files):
        raise UploadError(
            "trajectory file: a COLMAP model is uploaded as cameras.txt + images.txt (optionally points3D.txt)"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unexpected {', '.join(sanitise_name(name) for name in unexpected)}" if unexpected else "")
        )
    with tempfile.TemporaryDirectory(prefix="dualcam-colmap-") as folder:
        for name, path in by_name.items():
            shutil.copyfile(path, Path(folder) / name)
        try:
            return CameraTrajectory.load(folder, format="colmap")
        except (ValueError, OSError) as error:
            message = str(error).replace(folder, "COLMAP model")
            raise UploadError(f"trajectory file: the COLMAP model could not be read: {message}") from error
