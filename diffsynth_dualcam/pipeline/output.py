"""What a generation returns, and how it is written to disk."""
from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors.torch import save_file

from ..camera import CameraTrajectory
from ..io import write_video

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

        Everything is written into a temporary folder first, so an error leaves ``out_dir`` as it was. A new or empty
        ``out_dir`` is then replaced by that folder (made beside it) in one rename. Otherwise the folder is made
        inside ``out_dir`` and the files are moved one by one, the old ``params.json`` removed first and the new one
        moved last, so that a folder with a ``params.json`` always holds one complete run.
        """
        if isinstance(fps, bool) or not isinstance(fps, int) or fps < 1:
            raise ValueError(f"fps must be a positive integer, got {fps!r}")
        out_dir = Path(out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise NotADirectoryError(f"out_dir must be a folder, {out_dir} is a file")
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        whole = replaceable_whole(out_dir)
        # Made like any folder (mkdtemp's would be private), as it may become out_dir itself.
        staging = (out_dir.parent if whole else out_dir) / f".{out_dir.name or 'run'}.partial-{secrets.token_hex(4)}"
        staging.mkdir()
        try:
            self.write_files(staging, fps)
            names = [name for name in OUTPUT_FILES if (staging / name).exists()]
            if whole:
                os.replace(staging, out_dir)  # rename(2) replaces an empty folder in one step
            else:
                (out_dir / "params.json").unlink(missing_ok=True)
                for name in OUTPUT_FILES:
                    if name in names:
                        os.replace(staging / name, out_dir / name)
                    else:  # a file left by an earlier run would describe another generation
                        (out_dir / name).unlink(missing_ok=True)
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
            save_file({CAMERA_TENSOR_KEY: self.camera_tensor.detach().cpu().contiguous()}, folder / CAMERA_TENSOR_FILE)
            params["camera"] = {**params.get("camera", {}), "file": CAMERA_TENSOR_FILE}
        if self.input_image is not None:
            self.input_image.convert("RGB").save(folder / "input_image.png")
        if self.input_depth is not None:
            self.input_depth.convert("L").save(folder / "input_depth.png")
        (folder / "params.json").write_text(json.dumps(params, indent=2) + "\n")
