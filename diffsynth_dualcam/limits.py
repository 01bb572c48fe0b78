"""The bounds every input is checked against before any model loads (see docs/limits.md).

One place for them: the command line, batch files, the web app, the pipeline's input check and the trajectory
readers all use these. Each check raises a ``ValueError`` that states the limit.
"""
from __future__ import annotations

import math

#: Largest output width or height in pixels (the model was trained at 720x480).
MAX_SIDE = 2048
#: Largest width x height x frames of one generated clip: 1280x720 at 121 frames. The latents, the attention over
#: them and the decoded frames grow with it; this bounds the memory of one clip to what a large GPU holds.
MAX_CLIP_PIXELS = 1280 * 720 * 121
#: Most frames of one video (a long camera path may be generated clip by clip; each clip must fit MAX_CLIP_PIXELS).
MAX_FRAMES = 4001
#: Most denoising steps: the flow-matching schedule has 1000 training timesteps, more steps repeat them.
MAX_STEPS = 1000
#: Largest absolute guidance scale (the published look uses 6; beyond a few tens the output saturates).
MAX_CFG = 100.0
#: Most pixels of an input image (8192 x 8192); larger files are refused before they are decoded.
MAX_IMAGE_PIXELS = 8192 * 8192
#: Largest trajectory file (any format; each file of a COLMAP model) in bytes, and most frames it may hold.
MAX_TRAJECTORY_BYTES = 64 * 2**20
MAX_TRAJECTORY_FRAMES = 100_000
#: Largest batch file in bytes.
MAX_BATCH_FILE_BYTES = 16 * 2**20
#: Normalised focal lengths (focal length in pixels / image side) a camera may have: a field of view between about
#: 0.06 and 179.8 degrees.
FOCAL_RANGE = (1e-3, 1e3)
#: Largest distance of a normalised principal point from the image centre (0.5, 0.5), in image sides.
MAX_PRINCIPAL_OFFSET = 10.0
#: Largest absolute camera position coordinate (scene units).
MAX_POSITION = 1e6
#: Largest width or height of the images a trajectory's intrinsics were measured on (``source_size``).
MAX_SOURCE_SIDE = 65536


def check_output_size(width: int, height: int) -> None:
    """A ValueError unless each side is at most ``MAX_SIDE``."""
    if max(width, height) > MAX_SIDE:
        raise ValueError(f"{width}x{height} is larger than the limit of {MAX_SIDE} pixels per side")


def check_frames(frames: int) -> None:
    """A ValueError unless ``frames`` is at most ``MAX_FRAMES``."""
    if frames > MAX_FRAMES:
        raise ValueError(f"{frames} frames are more than the limit of {MAX_FRAMES}")


def check_clip(width: int, height: int, frames: int) -> None:
    """A ValueError unless one clip of ``frames`` frames at width x height fits ``MAX_CLIP_PIXELS`` (and its sides
    ``MAX_SIDE``)."""
    check_output_size(width, height)
    if width * height * frames > MAX_CLIP_PIXELS:
        most = (MAX_CLIP_PIXELS // (width * height) - 1) // 4 * 4 + 1
        raise ValueError(
            f"a clip of {frames} frames at {width}x{height} is {width * height * frames:,} pixels, more than the "
            f"limit of {MAX_CLIP_PIXELS:,} (1280x720 at 121 frames); at {width}x{height} a clip may have at most "
            f"{max(most, 1)} frames"
        )


def check_steps(steps: int) -> None:
    """A ValueError unless ``steps`` is at most ``MAX_STEPS``."""
    if steps > MAX_STEPS:
        raise ValueError(f"{steps} steps are more than the limit of {MAX_STEPS} (the schedule's 1000 timesteps)")


def check_cfg(cfg: float) -> None:
    """A ValueError unless ``cfg`` is a finite guidance scale of at most ``MAX_CFG`` in size."""
    if not math.isfinite(cfg) or abs(cfg) > MAX_CFG:
        raise ValueError(f"guidance scale must be a number between -{MAX_CFG:g} and {MAX_CFG:g} (6 is the published "
                         f"look), got {cfg:g}")


def check_image_pixels(width: int, height: int) -> None:
    """A ValueError unless an image of width x height has at most ``MAX_IMAGE_PIXELS`` pixels."""
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(f"the image is {width}x{height}, more than the limit of {MAX_IMAGE_PIXELS:,} pixels "
                         "(8192x8192); scale it down first")
