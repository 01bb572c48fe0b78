"""What a generation returns, and how it is written to disk."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from ..camera import CameraTrajectory
from ..io import remove_stale_staging, staging_name, write_video

if TYPE_CHECKING:  # torch loads when a run is saved: the CLI checks --out without it
    import torch

try:
    import fcntl
except ImportError:  # not a POSIX system: saves do not take turns
    fcntl = None

#: Every file ``save`` may write; ``params.json`` (moved last) marks a finished run.
OUTPUT_FILES = (
    "video.mp4", "depth.mp4", "side_by_side.mp4", "trajectory.json", "trajectory.png", "camera.safetensors",
    "input_image.png", "input_depth.png", "world.ply", "params.json",
)
CAMERA_TENSOR_FILE = "camera.safetensors"
CAMERA_TENSOR_KEY = "camera"


def side_by_side(video: list[Image.Image], depth_video: list[Image.Image]) -> list[Image.Image]:
    """Frames with the RGB video on the left and the depth video (as gray RGB) on the right."""
    frames = []
    for rgb, depth in zip(video, depth_video, strict=True):
        frame = Image.new("RGB", (rgb.width + depth.width, max(rgb.height, depth.height)))
        frame.paste(rgb.convert("RGB"), (0, 0))
        frame.paste(depth.convert("RGB"), (rgb.width, 0))
        frames.append(frame)
    return frames


def replaceable_whole(out_dir: Path) -> bool:
    """Whether ``save`` may put a run folder in place of ``out_dir`` with one rename: it does not exist yet, or it
    is an empty folder (not a link to one, a mount point, nor the working directory) in a parent folder that can be
    written."""
    if not out_dir.exists():
        return True
    # A mount point (a container volume, say) cannot be renamed over: rename(2) fails with EBUSY.
    if out_dir.is_symlink() or any(out_dir.iterdir()) or out_dir.samefile(os.getcwd()) or os.path.ismount(out_dir):
        return False
    return os.access(out_dir.parent, os.W_OK)


def check_out_dir_files(out_dir: Path) -> None:
    """An error unless ``save`` can write into ``out_dir``: NotADirectoryError if it is a file, ValueError if one of
    its ``OUTPUT_FILES`` names is taken by a folder (or anything else that is not a file or a link)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"out_dir must be a folder, {out_dir} is a file")
    if not out_dir.is_dir():
        return
    for name in OUTPUT_FILES:
        path = out_dir / name
        if path.exists() and not path.is_symlink() and not path.is_file():
            kind = "a folder" if path.is_dir() else "not a regular file"
            raise ValueError(f"{path} is {kind}, where a run saves its {name}: move it away or save elsewhere")


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (flock on the folder itself, nothing written), so that processes
    moving runs into it take turns; without lock support, no lock."""
    try:
        descriptor = os.open(folder, os.O_RDONLY) if fcntl is not None else None
    except OSError:
        descriptor = None
    if descriptor is None:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def replace_files(staging: Path, out_dir: Path, names: list[str]) -> None:
    """Replace the run in ``out_dir`` by the files ``names`` of ``staging`` (see ``DualCamCtrlOutput.save``): the old
    run's files go to a backup folder (``params.json`` first), the new ones come in (``params.json`` last); on error
    the new files are taken out and the old ones put back (``params.json`` last), then the error is raised."""
    backup = out_dir / staging_name(out_dir.name or "run", kind="backup")
    backup.mkdir()
    old, new = [], []
    order = ["params.json", *(name for name in OUTPUT_FILES if name != "params.json")]
    try:
        for name in order:
            if os.path.lexists(out_dir / name):
                os.replace(out_dir / name, backup / name)
                old.append(name)
        for name in names:  # OUTPUT_FILES order: params.json last
            os.replace(staging / name, out_dir / name)
            new.append(name)
    except BaseException:
        for name in reversed(new):
            with contextlib.suppress(OSError):
                os.replace(out_dir / name, staging / name)
        for name in reversed(old):
            with contextlib.suppress(OSError):
                os.replace(backup / name, out_dir / name)
        raise
    finally:
        if not any(backup.iterdir()):
            backup.rmdir()
    shutil.rmtree(backup, ignore_errors=True)


@dataclass
class DualCamCtrlOutput:
    """One generated clip: RGB frames, single-channel depth frames (near = bright), their latents and the inputs.

    ``params`` holds every input that determines the output (JSON-friendly) and ``trajectory`` the camera path as
    generated (relative, resampled, cover-cropped), or None when the camera was given as a packed tensor; then
    ``camera_tensor`` holds that tensor [1, 24, T, H, W] as the DiT received it (the pipeline's dtype, on the CPU).
    ``input_image`` / ``input_depth`` are the conditioning frames as the model saw them (output size, depth as
    8-bit grayscale), None for text-to-video.
    """

    video: list[Image.Image]
    depth_video: list[Image.Image]
    latents: torch.Tensor
    depth_latents: torch.Tensor
    params: dict[str, Any] = field(default_factory=dict)
    trajectory: CameraTrajectory | None = None
    input_image: Image.Image | None = None
    input_depth: Image.Image | None = None
    camera_tensor: torch.Tensor | None = None

    def save(self, out_dir: str | os.PathLike, fps: int = 16) -> dict[str, Path]:
        """Write the run into ``out_dir``; returns the written paths by file name.

        Always: ``video.mp4``, ``depth.mp4``, ``side_by_side.mp4`` (RGB left, depth right) and ``params.json``
        (``params`` plus ``fps``). Camera given as a ``CameraTrajectory``: ``trajectory.json`` (the path as
        generated, in the format ``CameraTrajectory.load`` reads) and its plot ``trajectory.png``. Camera given as
        a packed Plücker tensor: ``camera.safetensors`` (that tensor under the key ``"camera"``, which the pipeline
        takes back as ``camera=``; ``params["camera"]["file"]`` names it). Image-to-video: ``input_image.png`` and
        ``input_depth.png``. Files of this list that a run does not produce are removed from ``out_dir``.

        All or nothing: everything is written into a staging folder first (``diffsynth_dualcam.io.staging_name``),
        so an error leaves ``out_dir`` as it was. A new or empty ``out_dir`` is then replaced by that folder (made
        beside it) in one rename. Otherwise the folder is made inside ``out_dir``; the old run's files are moved
        aside (its ``params.json`` first) and the new ones moved in (``params.json`` last), so that a folder with a
        ``params.json`` always holds one complete run, and an error while moving puts the old files back. Processes
        saving beside each other take turns; one that finds ``out_dir`` filled by another while it generated
        replaces that run, with a warning. Staging left by killed processes is removed first.
        """
        if isinstance(fps, bool) or not isinstance(fps, int) or fps < 1:
            raise ValueError(f"fps must be a positive integer, got {fps!r}")
        out_dir = Path(out_dir)
        check_out_dir_files(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(out_dir.parent)
        remove_stale_staging(out_dir)
        whole = replaceable_whole(out_dir)
        # Made like any folder (mkdtemp's would be private), as it may become out_dir itself.
        staging = (out_dir.parent if whole else out_dir) / staging_name(out_dir.name or "run")
        staging.mkdir()
        try:
            self.write_files(staging, fps)
            names = [name for name in OUTPUT_FILES if (staging / name).exists()]
            with folder_lock(out_dir.parent):
                if whole and not replaceable_whole(out_dir):
                    warnings.warn(f"{out_dir} was filled by another run while this one was generating; this run "
                                  "replaces it", stacklevel=2)
                    whole = False
                check_out_dir_files(out_dir)
                if whole:
                    os.replace(staging, out_dir)  # rename(2) replaces an empty folder in one step
                else:
                    replace_files(staging, out_dir, names)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return {name: out_dir / name for name in names}

    def write_files(self, folder: Path, fps: int) -> None:
        """Write every file of the run into the existing ``folder`` (see ``save``)."""
        write_video(folder / "video.mp4", self.video, fps)
        write_video(folder / "depth.mp4", self.depth_video, fps)
        write_video(folder / "side_by_side.mp4", side_by_side(self.video, self.depth_video), fps)
        params = {**self.params, "fps": fps}
        if self.trajectory is not None:
            self.trajectory.save(folder / "trajectory.json")
            self.trajectory.plot(folder / "trajectory.png")
        if self.camera_tensor is not None:
            from safetensors.torch import save_file

            save_file({CAMERA_TENSOR_KEY: self.camera_tensor.detach().cpu().contiguous()}, folder / CAMERA_TENSOR_FILE)
            params["camera"] = {**params.get("camera", {}), "file": CAMERA_TENSOR_FILE}
        if self.input_image is not None:
            self.input_image.convert("RGB").save(folder / "input_image.png")
        if self.input_depth is not None:
            self.input_depth.convert("L").save(folder / "input_depth.png")
        (folder / "params.json").write_text(json.dumps(params, indent=2, allow_nan=False) + "\n")
