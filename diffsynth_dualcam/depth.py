"""Automatic depth for the first frame: a Depth Anything model through `transformers`.

The pipeline expects relative inverse depth (disparity) as an 8-bit grayscale image, near = bright, far = dark,
stretched to the full 0..255 range like the demo depth maps. :class:`DepthEstimator` produces exactly that.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"
SUPPORTED_MODEL_TYPES = ("depth_anything",)


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
        torch_dtype: torch.dtype = torch.float32,
        local_files_only: bool = False,
    ) -> DepthEstimator:
        """Load a model and its image processor from a hub id or a local folder (`HF_HUB_OFFLINE` is honoured)."""
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        processor = AutoImageProcessor.from_pretrained(model_id_or_path, local_files_only=local_files_only)
        model = AutoModelForDepthEstimation.from_pretrained(
            model_id_or_path, dtype=torch_dtype, local_files_only=local_files_only
        )
        return cls(model, processor, device=device)

    @torch.no_grad()
    def disparity(self, image: Image.Image) -> np.ndarray:
        """Relative disparity [H, W] float32 at the image's own size (larger = nearer)."""
        if not isinstance(image, Image.Image):
            raise ValueError(f"image must be a PIL image, got {type(image).__name__}")
        image = image.convert("RGB")
        inputs = self.processor(images=image, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, dtype=self.model.dtype)
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
