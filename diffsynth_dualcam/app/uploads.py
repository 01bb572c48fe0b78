"""Checks on everything a browser uploads before any of it is decoded or read as a trajectory.

Only files inside the web server's own upload folder are accepted; their names never choose where anything is
written. Each check raises :class:`UploadError` with a message meant for the person who uploaded the file.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from PIL import Image, ImageOps

from ..camera import CameraTrajectory
from ..camera.formats import detect_format
from ..pipeline.inputs import check_image

MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_TRAJECTORY_BYTES = 5 * 1024 * 1024
#: Limit of one COLMAP model file (uploaded or inside a .zip) and of an uploaded .zip.
MAX_COLMAP_BYTES = 20 * 1024 * 1024
MIN_IMAGE_SIDE = 64
MAX_IMAGE_SIDE = 4096
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
TRAJECTORY_SUFFIXES = (".json", ".txt", ".torch", ".pt")
#: Parts of a COLMAP model; the first two are required, rigs and frames are written by COLMAP 3.12 and later.
COLMAP_PARTS = ("cameras", "images", "points3D", "rigs", "frames")
COLMAP_SUFFIXES = (".txt", ".bin")
COLMAP_FILES = tuple(f"{part}{suffix}" for suffix in COLMAP_SUFFIXES for part in COLMAP_PARTS)
#: Everything the trajectory upload accepts: single trajectory files, COLMAP model files, a .zip of a COLMAP model.
UPLOAD_SUFFIXES = (*TRAJECTORY_SUFFIXES, ".bin", ".zip")
_COLMAP_HELP = ("a COLMAP model is uploaded as cameras + images (optionally points3D, rigs, frames), all .txt or all "
                ".bin, as separate files or in one .zip")


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
    except Exception as error:  # Pillow raises OSError, SyntaxError, struct.error, ... for damaged files
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
    except Exception as error:  # as above; damaged EXIF data also raises struct.error or SyntaxError
        raise UploadError(f"{what}: the image data is damaged or cut short") from error
    try:
        return check_image(what, upright)
    except ValueError as error:
        raise UploadError(str(error)) from error


def load_trajectory_upload(paths: Sequence[str | Path], roots: Sequence[Path] | None = None) -> CameraTrajectory:
    """Read an uploaded trajectory: one file (.json, RealEstate10K .txt, .torch/.pt, transforms.json), the files of
    a COLMAP model (text or binary), or a .zip holding one COLMAP model.

    Nothing an uploaded file names is looked up on the server: a transforms.json must give its image size, and
    COLMAP files are copied under their fixed names into a private folder (from a .zip by base name only).
    """
    what = "trajectory file"
    if not paths:
        raise UploadError(f"{what}: nothing was uploaded")
    names = [Path(path).name for path in paths]
    # A lone rigs.txt or frames.txt is more likely a RealEstate10K file than a part of a COLMAP model.
    if len(paths) > 1 or names[0].endswith(".bin") or names[0] in COLMAP_FILES[:3]:
        files = [checked_upload(path, what, MAX_COLMAP_BYTES, roots) for path in paths]
        return _load_colmap_files(files)
    if names[0].lower().endswith(".zip"):
        return _load_colmap_archive(checked_upload(paths[0], what, MAX_COLMAP_BYTES, roots))
    file = checked_upload(paths[0], what, MAX_TRAJECTORY_BYTES, roots)
    if file.suffix.lower() not in TRAJECTORY_SUFFIXES:
        raise UploadError(
            f"{what}: {sanitise_name(names[0])} has an unknown type; accepted: {', '.join(TRAJECTORY_SUFFIXES)}, "
            f"the files of a COLMAP model ({', '.join(COLMAP_FILES[:2])} or the .bin ones) or a .zip of them"
        )
    try:
        format = detect_format(file)
        if format == "nerf":
            _require_nerf_image_size(file)
        return CameraTrajectory.load(file, format=format)
    except (ValueError, OSError) as error:
        message = str(error).replace(str(file), sanitise_name(names[0]))
        raise UploadError(f"{what}: {sanitise_name(names[0])} could not be read: {message}") from error


def _require_nerf_image_size(path: Path) -> None:
    """A ValueError unless every frame of the transforms.json at `path` has ``w`` and ``h`` (its own or global).

    Without them the reader would open the image the frame's ``file_path`` names, a path chosen by the uploader.
    """
    document = json.loads(path.read_bytes())
    for index, frame in enumerate(document["frames"]):
        fields = {**document, **frame} if isinstance(frame, dict) else document
        if fields.get("w") is None or fields.get("h") is None:
            raise ValueError(f"frame {index} has no \"w\" and \"h\": an uploaded transforms.json must give the "
                             "image width and height in pixels (the images it names are not opened)")


def _check_colmap_names(names: Sequence[str]) -> None:
    """An UploadError saying what is wrong unless `names` are the files of one text or one binary COLMAP model."""
    unexpected = sorted(set(names) - set(COLMAP_FILES))
    duplicated = sorted({name for name in names if names.count(name) > 1})
    suffixes = sorted({Path(name).suffix for name in names} & set(COLMAP_SUFFIXES))
    suffix = suffixes[0] if len(suffixes) == 1 else ".txt"
    missing = [f"{part}{suffix}" for part in COLMAP_PARTS[:2] if f"{part}{suffix}" not in names]
    problems = [f"unexpected {', '.join(sanitise_name(name) for name in unexpected)}" if unexpected else "",
                f"{', '.join(duplicated)} given more than once" if duplicated else "",
                "the files mix .txt and .bin" if len(suffixes) > 1 else "",
                f"missing {', '.join(missing)}" if missing and len(suffixes) <= 1 else ""]
    problems = [problem for problem in problems if problem]
    if problems:
        raise UploadError(f"trajectory file: {_COLMAP_HELP}; " + "; ".join(problems))


def _load_colmap_files(files: Sequence[Path]) -> CameraTrajectory:
    """Copy uploaded COLMAP model files under their fixed names into a private folder and read it."""
    _check_colmap_names([path.name for path in files])
    with tempfile.TemporaryDirectory(prefix="dualcam-colmap-") as folder:
        for path in files:
            shutil.copyfile(path, Path(folder) / path.name)
        return _read_colmap_folder(Path(folder))


def _load_colmap_archive(archive_path: Path) -> CameraTrajectory:
    """Read the COLMAP model in an uploaded .zip.

    Only members whose base name is a COLMAP model file name are extracted, each to that fixed name in a private
    folder; the archive's own paths are never used, other members are never extracted.
    """
    what = "trajectory file: the .zip"
    try:
        with zipfile.ZipFile(archive_path) as archive:
            members = [info for info in archive.infolist()
                       if not info.is_dir() and PurePosixPath(info.filename.replace("\\", "/")).name in COLMAP_FILES]
            if not members:
                raise UploadError(f"{what} holds no COLMAP model files; {_COLMAP_HELP}")
            names = [PurePosixPath(info.filename.replace("\\", "/")).name for info in members]
            if len(set(names)) != len(names):
                raise UploadError(f"{what} holds more than one COLMAP model (a file name appears twice); zip one "
                                  "model folder")
            _check_colmap_names(names)
            for name, info in zip(names, members):
                if info.flag_bits & 0x1:
                    raise UploadError(f"{what}: {name} is encrypted")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise UploadError(f"{what}: {name} uses a compression other than deflate or none")
                if info.file_size > MAX_COLMAP_BYTES:
                    raise UploadError(f"{what}: {name} is {size_text(info.file_size)} unpacked, the limit is "
                                      f"{size_text(MAX_COLMAP_BYTES)}")
            with tempfile.TemporaryDirectory(prefix="dualcam-colmap-") as folder:
                for name, info in zip(names, members):
                    # A member yields at most its stated file_size bytes (zipfile checks the CRC at the end).
                    with archive.open(info) as source, open(Path(folder) / name, "wb") as target:
                        shutil.copyfileobj(source, target)
                return _read_colmap_folder(Path(folder))
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise UploadError(f"{what} is damaged or not a zip archive") from error


def _read_colmap_folder(folder: Path) -> CameraTrajectory:
    """The trajectory of the COLMAP model in the private `folder` (the reader needs no points3D file)."""
    try:
        return CameraTrajectory.load(folder, format="colmap")
    except (ValueError, OSError) as error:
        message = str(error).replace(str(folder), "COLMAP model")
        raise UploadError(f"trajectory file: the COLMAP model could not be read: {message}") from error
