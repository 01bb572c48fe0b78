"""Automatic depth for the first frame: a Depth Anything model through `transformers`.

The pipeline expects relative inverse depth (disparity) as an 8-bit grayscale image, near = bright, far = dark,
stretched to the full 0..255 range like the demo depth maps. :class:`DepthEstimator` produces exactly that.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # torch and transformers are imported when a model loads, so the command line starts quickly
    import torch

DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"
SUPPORTED_MODEL_TYPES = ("depth_anything",)
#: Seconds the one reachability check of the hub may take before a download is given up.
HUB_CHECK_TIMEOUT = 10.0


def downloads_disabled() -> str | None:
    """The environment setting that turns hub downloads off (``HF_HUB_OFFLINE`` or ``DIFFSYNTH_SKIP_DOWNLOAD``
    set to a true value), or None when downloads are allowed."""
    for name in ("HF_HUB_OFFLINE", "DIFFSYNTH_SKIP_DOWNLOAD"):
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return name
    return None


def check_hub_reachable(model_id: str, timeout: float = HUB_CHECK_TIMEOUT) -> None:
    """An OSError at once unless the hub answers for ``model_id`` within ``timeout`` seconds (one request, no
    retries), so that an offline machine does not wait through the download's retries."""
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(model_id, timeout=timeout)
    except Exception as error:  # connection, timeout, unknown repository, ...: the download cannot succeed
        raise OSError(f"{model_id} is not in the local cache and the hub did not answer "
                      f"({type(error).__name__}: {error})") from None


def disparity_to_uint8(disparity: np.ndarray) -> np.ndarray:
    """Stretch a disparity map (larger = nearer) to 0..255 uint8; a constant map becomes all zeros."""
    disparity = np.asarray(disparity, dtype=np.float64)
    if disparity.ndim != 2:
        raise ValueError(f"disparity must be a 2-D [H, W] array, got shape {disparity.shape}")
    if not np.isfinite(disparity).all():
        raise ValueError("disparity contains NaN or infinite values")
    low, high = disparity.min(), disparity.max()
    if high - low <= 0:
        return np.zeros(disparity.shape, dtype=np.uint8)
    return np.round((disparity - low) / (high - low) * 255.0).astype(np.uint8)


class DepthEstimator:
    """Relative inverse depth of one image from a Depth Anything model (relative or metric head)."""

    def __init__(self, model: torch.nn.Module, processor, device: str | torch.device = "cpu") -> None:
        import torch

        model_type = getattr(model.config, "model_type", None)
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"depth model must be one of {SUPPORTED_MODEL_TYPES}, got model_type {model_type!r}")
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = torch.device(device)
        self.is_metric = getattr(model.config, "depth_estimation_type", "relative") == "metric"

    @classmethod
    def from_pretrained(
        cls,
        model_id_or_path: str = DEFAULT_DEPTH_MODEL,
        device: str | torch.device = "cpu",
        torch_dtype: torch.dtype | None = None,
        local_files_only: bool = False,
    ) -> DepthEstimator:
        """Load a model (float32 unless ``torch_dtype``) and its image processor from a local folder or a hub id.

        A hub id is taken from the local cache when it is there. Otherwise it is downloaded, unless downloads are
        off (``local_files_only``, ``HF_HUB_OFFLINE`` or ``DIFFSYNTH_SKIP_DOWNLOAD``) or the hub does not answer
        one quick request: then an OSError is raised at once, not after the download's retries.
        """
        import torch
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        def load(local_only: bool) -> DepthEstimator:
            processor = AutoImageProcessor.from_pretrained(model_id_or_path, local_files_only=local_only)
            model = AutoModelForDepthEstimation.from_pretrained(
                model_id_or_path, dtype=torch.float32 if torch_dtype is None else torch_dtype,
                local_files_only=local_only,
            )
            return cls(model, processor, device=device)

        if local_files_only or Path(model_id_or_path).is_dir():
            return load(local_files_only)
        try:
            return load(True)
        except OSError as error:
            disabled = downloads_disabled()
            if disabled is not None:
                raise OSError(f"{error} (downloads are off: {disabled} is set)") from None
        check_hub_reachable(model_id_or_path)
        return load(False)

    def disparity(self, image: Image.Image) -> np.ndarray:
        """Relative disparity [H, W] float32 at the image's own size (larger = nearer)."""
        import torch

        if not isinstance(image, Image.Image):
            raise ValueError(f"image must be a PIL image, got {type(image).__name__}")
        image = image.convert("RGB")
        inputs = self.processor(images=image, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, dtype=self.model.dtype)
        with torch.no_grad():
            outputs = self.model(pixel_values=pixel_values)
        outputs.predicted_depth = outputs.predicted_depth.float()
        target_sizes = [(image.height, image.width)]
        prediction = self.processor.post_process_depth_estimation(outputs, target_sizes=target_sizes)[0]
        prediction = prediction["predicted_depth"]
        if self.is_metric:
            # A metric head predicts distance; disparity is its reciprocal.
            prediction = 1.0 / prediction.clamp_min(1e-6)
        return prediction.cpu().numpy().astype(np.float32)

    def __call__(self, image: Image.Image) -> Image.Image:
        """8-bit grayscale depth map (mode "L", near = bright) of the same size as `image`."""
        return Image.fromarray(disparity_to_uint8(self.disparity(image)))
