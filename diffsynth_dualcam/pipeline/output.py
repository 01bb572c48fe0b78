"""What a generation returns, and how it is written to disk."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np
import torch
from PIL import Image

from ..camera import CameraTrajectory

OUTPUT_FILES = (
    "video.mp4", "depth.mp4", "side_by_side.mp4", "trajectory.json", "trajectory.png", "input_image.png",
    "input_depth.png", "params.json",
)


def write_video(path: Path, frames: list[Image.Image], fps: int) -> None:
    """Encode RGB or grayscale PIL frames as an H.264 mp4."""
    arrays = [np.asarray(frame.convert("RGB")) for frame in frames]
    imageio.mimwrite(path, arrays, fps=fps, codec="libx264", quality=8, macro_block_size=1)


def side_by_side(video: list[Image.Image], depth_video: list[Image.Image]) -> list[Image.Image]:
    """Frames with the RGB video on the left and the depth video (as gray RGB) on the right."""
    frames = []
    for rgb, depth in zip(video, depth_video, strict=True):
        frame = Image.new("RGB", (rgb.width + depth.width, max(rgb.height, depth.height)))
        frame.paste(rgb.convert("RGB"), (0, 0))
        frame.paste(depth.convert("RGB"), (rgb.width, 0))
        frames.append(frame)
    return frames


@dataclass
class DualCamCtrlOutput:
    """One generated clip: RGB frames, single-channel depth frames (near = bright), their latents and the inputs.

    ``params`` holds every input that determines the output (JSON-friendly) and ``trajectory`` the camera path as
    generated (relative, resampled, cover-cropped), or None when the camera was given as a packed tensor.
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

    def save(self, out_dir: str | os.PathLike, fps: int = 16) -> dict[str, Path]:
        """Write ``video.mp4``, ``depth.mp4``, ``side_by_side.mp4``, ``trajectory.json``, ``trajectory.png``,
        ``params.json`` and, for image-to-video, ``input_image.png`` / ``input_depth.png``.

        All files are written into a temporary folder inside ``out_dir`` first and moved into place only when every
        one of them succeeded, so an error leaves no half-written file; ``params.json`` is moved last. The trajectory
        files (the camera path as generated, in the JSON format of ``CameraTrajectory.save``, and its plot) are
        written only when the trajectory is known and the input frames only when there are some (older ones are
        removed otherwise). Returns the written paths by file name.
        """
        if isinstance(fps, bool) or not isinstance(fps, int) or fps < 1:
            raise ValueError(f"fps must be a positive integer, got {fps!r}")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".dualcam-partial-", dir=out_dir))
        try:
            write_video(staging / "video.mp4", self.video, fps)
            write_video(staging / "depth.mp4", self.depth_video, fps)
            write_video(staging / "side_by_side.mp4", side_by_side(self.video, self.depth_video), fps)
            if self.trajectory is not None:
                self.trajectory.save(staging / "trajectory.json")
                self.trajectory.plot(staging / "trajectory.png")
            if self.input_image is not None:
                self.input_image.convert("RGB").save(staging / "input_image.png")
            if self.input_depth is not None:
                self.input_depth.convert("L").save(staging / "input_depth.png")
            params = {**self.params, "fps": fps}
            (staging / "params.json").write_text(json.dumps(params, indent=2) + "\n")
            written = {}
            for name in OUTPUT_FILES:
                if (staging / name).exists():
                    os.replace(staging / name, out_dir / name)
                    written[name] = out_dir / name
                else:  # a file left by an earlier run would describe another generation
                    (out_dir / name).unlink(missing_ok=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return written
