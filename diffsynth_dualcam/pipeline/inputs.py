"""Checking and preparing the pipeline's inputs; nothing here runs a model.

Images of another size than the output are scaled to cover it and centre-cropped (the training convention, the same
one the camera intrinsics follow in ``CameraTrajectory.cover_crop``); the depth map goes through the same transform
independently, so an image and a depth map of different sizes but the same aspect ratio line up on the output frame
(``check_same_aspect`` refuses others, except a map of the output-aspect centre crop).
"""
from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PIL import Image

from .. import limits
from ..camera import CameraTrajectory
from ..camera.trajectory import ASPECT_TOLERANCE

if TYPE_CHECKING:  # the argument checks here run before torch loads
    import torch

PLUCKER_CHANNELS = 24
#: PIL modes that hold an 8-bit image (grayscale, colour or palette).
EIGHT_BIT_MODES = ("L", "LA", "P", "RGB", "RGBA")


def latent_frames(num_frames: int) -> int:
    """Number of latent frames of a ``4k + 1``-frame video."""
    return (num_frames - 1) // 4 + 1


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int, or a TypeError/ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_flag(name: str, value: object) -> bool:
    """``value`` as a bool, or a TypeError naming the argument."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return value


def check_side(name: str, value: object, multiple: int = 16) -> int:
    """``value`` as an int, a positive multiple of ``multiple`` (the VAE's 8x times the DiT's 2x2 patches)."""
    value = check_int(name, value)
    if value % multiple:
        below = value - value % multiple
        raise ValueError(
            f"{name} must be a multiple of {multiple}, got {value} (nearest valid: {max(below, multiple)} "
            f"or {below + multiple})"
        )
    return value


def check_size(*, width: object, height: object, multiple: int = 16) -> tuple[int, int]:
    """(width, height), each a positive multiple of ``multiple`` (see ``check_side``) and at most
    ``limits.MAX_SIDE``; both are checked to be integers first, then the limit, then the height's multiple, then the
    width's."""
    height, width = check_int("height", height), check_int("width", width)
    limits.check_output_size(width, height)
    height = check_side("height", height, multiple)
    return check_side("width", width, multiple), height


def check_num_frames(num_frames: object) -> int:
    """``num_frames`` if it is 4k + 1 (the VAE compresses time by 4 after the first frame) and at most
    ``limits.MAX_FRAMES``."""
    num_frames = check_int("num_frames", num_frames)
    limits.check_frames(num_frames)
    if num_frames % 4 != 1:
        below = num_frames - (num_frames - 1) % 4
        raise ValueError(f"num_frames must be 4k+1 (e.g. 61), got {num_frames} (nearest valid: {below} or {below + 4})")
    return num_frames


def check_frame_count(name: str, value: object, minimum: int = 1) -> int:
    """``value`` if it is a whole number 4k+1 of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value % 4 != 1 or value < minimum:
        raise ValueError(f"{name} must be a whole number 4k+1 of at least {minimum}, got {value!r}")
    return int(value)


def check_prompt(name: str, prompt: object) -> str:
    """``prompt`` if it is a string."""
    if not isinstance(prompt, str):
        raise TypeError(f"{name} must be a string, got {type(prompt).__name__}")
    return prompt


def check_number(name: str, value: object) -> float:
    """``value`` as a finite float, or a TypeError/ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def within_limit(name: str, value: int | float, limit: Callable[[int | float], None]) -> int | float:
    """``value`` if the ``limits`` check ``limit`` takes it, else its ValueError prefixed with ``name``."""
    try:
        limit(value)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None
    return value


def check_steps(name: str, value: object) -> int:
    """``value`` as a whole number of denoising steps, from 1 to ``limits.MAX_STEPS``."""
    return within_limit(name, check_int(name, value), limits.check_steps)


def check_guidance(name: str, value: object) -> float:
    """``value`` as a finite guidance scale within ``limits.MAX_CFG`` of 0."""
    return within_limit(name, check_number(name, value), limits.check_cfg)


def check_seed(seed: object) -> int | None:
    """``seed`` if it is None or an integer in [0, 2**63)."""
    if seed is None:
        return None
    check_int("seed", seed, minimum=0)
    if seed >= 2**63:
        raise ValueError(f"seed must be below 2**63, got {seed}")
    return int(seed)


def check_positive_number(name: str, value: object) -> float:
    """``value`` as a finite float above 0."""
    if check_number(name, value) <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return float(value)


def check_non_negative_or_none(name: str, value: object) -> float | None:
    """None, or ``value`` as a finite float of at least 0 (None: the feature is off)."""
    if value is not None and check_number(name, value) < 0:
        raise ValueError(f"{name} must be >= 0 (or None for no cache), got {value}")
    return None if value is None else float(value)


def check_progress_bar(name: str, value: object) -> object:
    """``value`` if it is callable (it wraps the iterable of denoising steps, like tqdm)."""
    if not callable(value):
        raise TypeError(
            f"{name} must be callable (it wraps the iterable of timesteps, like tqdm), got "
            f"{type(value).__name__} {value!r}"
        )
    return value


def check_camera_type(name: str, value: object) -> object:
    """``value`` if it is a ``CameraTrajectory`` or a tensor (packed Plücker maps, checked when packed)."""
    if isinstance(value, CameraTrajectory):
        return value
    import torch

    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name} must be a diffsynth_dualcam.camera.CameraTrajectory or a packed Plücker tensor "
            f"[24, T, H, W], got {type(value).__name__}"
        )
    return value


def check_tile_pair(name: str, value: object) -> tuple[int, int]:
    """A tile size or stride of the tiled VAE decoder as an int pair (height, width) in latent pixels: the order
    DiffSynth's ``WanVideoVAE`` takes them in (a layout of the latent tensor, not an image size)."""
    if not isinstance(value, (tuple, list)) or len(value) != 2 or any(
        isinstance(item, bool) or not isinstance(item, numbers.Integral) or item < 1 for item in value
    ):
        raise ValueError(f"{name} must be a pair (height, width) of positive integers in latent pixels, got {value!r}")
    return int(value[0]), int(value[1])


def check_tile_stride(tile_size: tuple[int, int], tile_stride: tuple[int, int]) -> None:
    """A ValueError unless each stride is smaller than its tile size (both checked by ``check_tile_pair``).

    DiffSynth's ``WanVideoVAE.tiled_decode`` blends neighbouring tiles over their overlap of ``size - stride``
    latent pixels, so each stride must be smaller than its tile size (an equal stride leaves no overlap to blend
    over and fails, a larger one leaves gaps).
    """
    if tile_stride[0] >= tile_size[0] or tile_stride[1] >= tile_size[1]:
        raise ValueError(
            f"tile_stride must be smaller than tile_size on both axes (the tiles are blended over their overlap "
            f"tile_size - tile_stride), got tile_stride={tile_stride!r} for tile_size={tile_size!r}"
        )


def check_image(name: str, image: object) -> Image.Image:
    """``image`` if it is an 8-bit PIL image."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"{name} must be a PIL.Image.Image, got {type(image).__name__}")
    if image.mode not in EIGHT_BIT_MODES:
        raise ValueError(
            f"{name} must be an 8-bit image (one of modes {EIGHT_BIT_MODES}), got mode {image.mode!r}"
            + ("; depth maps are 8-bit grayscale disparity (near = bright)" if name == "input_depth" else "")
        )
    return image


def check_same_aspect(image: Image.Image, depth: Image.Image, *, width: int, height: int) -> None:
    """A ValueError unless ``depth`` has the aspect ratio of ``image`` or of the ``width`` x ``height`` output (a map
    of the image's centre crop, as the pipeline's depth estimator makes): otherwise the two would not line up once
    cover-cropped (a rotated photo against a depth map of the upright one, for example)."""
    image_aspect, depth_aspect, output_aspect = image.width / image.height, depth.width / depth.height, width / height
    if min(abs(depth_aspect / aspect - 1) for aspect in (image_aspect, output_aspect)) > ASPECT_TOLERANCE:
        raise ValueError(
            f"input_depth is {depth.width}x{depth.height} (aspect {depth_aspect:.3f}), but input_image is "
            f"{image.width}x{image.height} (aspect {image_aspect:.3f}) and the output {width}x{height}: a depth map "
            "must show the image's frame or its centre crop at the output's aspect"
        )


def check_first_frame(
    *, t2v: bool, input_image: object, input_depth: object, can_estimate_depth: bool, width: int, height: int
) -> None:
    """An error unless the first-frame inputs fit the mode: none for text-to-video; for image-to-video an 8-bit
    image and either an 8-bit depth map that lines up with it (``check_same_aspect``) or a depth estimator."""
    if t2v:
        if input_image is not None or input_depth is not None:
            raise ValueError("t2v=True generates from the prompt alone: leave input_image and input_depth None")
        return
    if input_image is None:
        raise ValueError("input_image is required for image-to-video (or pass t2v=True)")
    check_image("input_image", input_image)
    if input_depth is None:
        if not can_estimate_depth:
            raise ValueError(
                "input_depth is required for image-to-video: an 8-bit grayscale disparity map of the input "
                "image (near = bright), e.g. from Video Depth Anything; automatic depth estimation is not "
                "configured on this pipeline (set pipe.depth_estimator)"
            )
        return
    check_image("input_depth", input_depth)
    check_same_aspect(input_image, input_depth, width=width, height=height)


def cover_resize(image: Image.Image, *, width: int, height: int) -> Image.Image:
    """Scale ``image`` to cover width x height, keeping its aspect ratio, then crop the centre to exactly that size."""
    if image.size == (width, height):
        return image
    scale = max(width / image.width, height / image.height)
    scaled_width = max(width, round(image.width * scale))
    scaled_height = max(height, round(image.height * scale))
    image = image.resize((scaled_width, scaled_height), Image.Resampling.BICUBIC)
    left, top = (scaled_width - width) // 2, (scaled_height - height) // 2
    return image.crop((left, top, left + width, top + height))


def prepare_image(image: Image.Image, *, width: int, height: int) -> Image.Image:
    """RGB version of ``image`` at the output size."""
    return cover_resize(image.convert("RGB"), width=width, height=height)


def prepare_depth(depth: Image.Image, *, width: int, height: int) -> Image.Image:
    """8-bit grayscale disparity at the output size, repeated to 3 channels for the VAE (docs/model.md, Depth input)."""
    return cover_resize(depth.convert("L"), width=width, height=height).convert("RGB")


def image_digest(image: Image.Image | None) -> dict[str, Any] | None:
    """Size, mode and SHA-256 of an image's pixels: identifies an input in ``params.json``."""
    if image is None:
        return None
    return {"size": list(image.size), "mode": image.mode, "sha256": hashlib.sha256(image.tobytes()).hexdigest()}


def largest_clip_length(num_cameras: int) -> int:
    """The most frames (4k + 1) a clip following ``num_cameras`` recorded cameras frame by frame can have."""
    return num_cameras - (num_cameras - 1) % 4


def fit_trajectory_length(camera: CameraTrajectory, num_frames: int, resample: bool) -> CameraTrajectory:
    """``num_frames`` cameras of ``camera``: its first ones (the recorded pace), or with ``resample`` the whole path
    stretched over them. A path with fewer cameras than asked is refused unless ``resample``."""
    if len(camera) == 0:
        raise ValueError("camera trajectory is empty")
    if resample and len(camera) < 2 and len(camera) != num_frames:
        raise ValueError(
            f"camera trajectory has {len(camera)} frame; at least 2 are needed to resample it to "
            f"num_frames={num_frames}"
        )
    shorter = largest_clip_length(len(camera))
    fewer = f"ask for at most {shorter} frames, or " if shorter >= 1 else ""
    return camera.fitted(num_frames, resample, too_short=(
        f"camera trajectory has {len(camera)} frames, num_frames={num_frames} are needed: the path is followed frame "
        f"by frame; {fewer}stretch it over the video with resample_camera (--resample-camera on the command line)"
    ))


def prepare_trajectory(
    camera: CameraTrajectory,
    num_frames: int,
    *,
    width: int,
    height: int,
    image_size: tuple[int, int] | None,
    resample: bool,
) -> CameraTrajectory:
    """The trajectory as generated: relative to its first frame, ``num_frames`` long (:func:`fit_trajectory_length`),
    intrinsics for width x height.

    The intrinsics are cover-cropped from ``camera.source_size`` when it has one, else from ``image_size`` (the
    input image's size); without either they are taken to be for the output frame already.
    """
    camera = fit_trajectory_length(camera, num_frames, resample)
    camera = camera.relative()
    source_size = camera.source_size if camera.source_size is not None else image_size
    if source_size is not None and tuple(source_size) != (width, height):
        camera = camera.cover_crop(tuple(source_size), (width, height))
    return camera


def trajectory_to_camera_latents(
    camera: CameraTrajectory, *, width: int, height: int, device: str | torch.device | None = None
) -> torch.Tensor:
    """Packed Plücker maps [1, 24, T, height, width] (float32) of a prepared trajectory."""
    import torch

    from ..camera.plucker import pack_plucker

    return pack_plucker(camera.plucker(width=width, height=height, device=device, dtype=torch.float32)).unsqueeze(0)


def check_camera_latents(camera: torch.Tensor, num_frames: int, *, width: int, height: int) -> torch.Tensor:
    """A packed Plücker tensor as [1, 24, T, height, width] float, with T the number of latent frames."""
    import torch

    if camera.ndim == 4:
        camera = camera.unsqueeze(0)
    expected = [1, PLUCKER_CHANNELS, latent_frames(num_frames), height, width]
    if camera.ndim != 5 or list(camera.shape) != expected:
        raise ValueError(
            f"camera tensor must be packed Plücker maps [24, T, H, W] or [1, 24, T, H, W] with T = (num_frames-1)/4+1;"
            f" expected {expected[1:]} for num_frames={num_frames} at {width}x{height}, got {list(camera.shape)}"
        )
    if not camera.is_floating_point():
        raise TypeError(f"camera tensor must be floating point, got {camera.dtype}")
    if not torch.isfinite(camera).all():
        raise ValueError("camera tensor contains NaN or infinite values")
    return camera
