"""Optional image and video quality metrics: FID and FVD through ``torchmetrics``, CLIP score through ``transformers``.

``torchmetrics`` comes with the project's optional ``metrics`` extra, ``pip install -e ".[metrics]"``
(``torchmetrics[image]``, which also brings ``torch-fidelity`` for the standard Inception features of FID). Model
weights are the caller's: FID downloads torch-fidelity's Inception on first use unless a feature module is given,
FVD takes any video feature extractor (for example an I3D network) as a module, and CLIP score loads a Hugging
Face CLIP by name or from a local folder.

Inputs are uint8 arrays as the pipeline saves them: frames [N, H, W, 3], videos [N, T, H, W, 3].
"""
from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

_INSTALL_HINT = (
    "optional quality metrics need torchmetrics: install the metrics extra, pip install -e \".[metrics]\" "
    "(torchmetrics[image], with torch-fidelity)"
)


def _metric_class(module: str, name: str) -> type:
    """``torchmetrics.<module>.<name>``, or an ImportError saying what to install."""
    try:
        return getattr(importlib.import_module(f"torchmetrics.{module}"), name)
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error


def _uint8_array(values: np.ndarray, ndim: int, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype != np.uint8 or array.ndim != ndim or array.shape[-1] != 3:
        layout = "[N, H, W, 3]" if ndim == 4 else "[N, T, H, W, 3]"
        raise ValueError(f"{name} must be uint8 {layout}, got {array.dtype} {list(array.shape)}")
    return array


def frechet_inception_distance(
    real_frames: np.ndarray,
    generated_frames: np.ndarray,
    feature: int | torch.nn.Module = 2048,
    batch_size: int = 64,
) -> float:
    """FID between two sets of frames (uint8 [N, H, W, 3]; N >= 2 each).

    ``feature`` is an Inception feature size of torch-fidelity (64, 192, 768, 2048) or a module mapping uint8
    [B, 3, H, W] images to [B, D] features.
    """
    fid_class = _metric_class("image.fid", "FrechetInceptionDistance")
    real = _uint8_array(real_frames, 4, "real_frames")
    generated = _uint8_array(generated_frames, 4, "generated_frames")
    if isinstance(feature, torch.nn.Module) and not hasattr(feature, "num_features"):
        metric = fid_class(feature=feature, input_img_size=(3, *real.shape[1:3]))
    else:
        metric = fid_class(feature=feature)
    for frames, is_real in ((real, True), (generated, False)):
        for start in range(0, len(frames), batch_size):
            batch = torch.from_numpy(frames[start : start + batch_size]).permute(0, 3, 1, 2).contiguous()
            metric.update(batch, real=is_real)
    return float(metric.compute())


def frechet_video_distance(
    real_videos: np.ndarray, generated_videos: np.ndarray, feature_extractor: torch.nn.Module, batch_size: int = 8
) -> float:
    """Fréchet distance between the video features of two sets of videos (uint8 [N, T, H, W, 3]; N >= 2 each).

    ``feature_extractor`` maps float [B, 3, T, H, W] videos in [0, 1] to [B, D] features (FVD uses an I3D network
    pretrained on Kinetics-400). The Fréchet distance itself is torchmetrics' FID computation.
    """
    fid_class = _metric_class("image.fid", "FrechetInceptionDistance")
    real = _uint8_array(real_videos, 5, "real_videos")
    generated = _uint8_array(generated_videos, 5, "generated_videos")
    if real.shape[1:] != generated.shape[1:]:
        raise ValueError(f"real and generated videos must share [T, H, W, 3], got {real.shape[1:]} and "
                         f"{generated.shape[1:]}")
    metric = fid_class(feature=feature_extractor, normalize=True, input_img_size=(3, *real.shape[1:4]))
    for videos, is_real in ((real, True), (generated, False)):
        for start in range(0, len(videos), batch_size):
            batch = torch.from_numpy(videos[start : start + batch_size]).permute(0, 4, 1, 2, 3).float() / 255.0
            metric.update(batch, real=is_real)
    return float(metric.compute())


@torch.no_grad()
def clip_score(
    videos: Sequence[np.ndarray], prompts: Sequence[str], model: str | Path = "openai/clip-vit-base-patch16"
) -> float:
    """CLIPSIM: mean cosine similarity between the CLIP embedding of every frame of each video (uint8 [T, H, W, 3])
    and that of the video's prompt, over all frames of all videos. Prompts longer than CLIP's text context are
    cut to it.

    ``model`` is a Hugging Face CLIP name or a local folder holding a CLIP model and processor. Computed with
    ``transformers`` directly: torchmetrics' CLIPScore 1.9 does not handle the outputs of transformers 5.
    """
    from transformers import CLIPModel, CLIPProcessor

    if len(videos) != len(prompts) or not videos:
        raise ValueError(f"clip_score needs one prompt per video, got {len(videos)} videos and {len(prompts)} prompts")
    checked = [_uint8_array(video, 4, f"videos[{index}]") for index, video in enumerate(videos)]
    clip = CLIPModel.from_pretrained(model).eval()
    processor = CLIPProcessor.from_pretrained(model)
    similarities = []
    # Captions may be longer than CLIP's text positions (77): the prompt is cut there, as CLIPScore does.
    max_tokens = clip.config.text_config.max_position_embeddings
    for frames, prompt in zip(checked, prompts):
        inputs = processor(text=[prompt], images=list(frames), return_tensors="pt", padding=True, truncation=True,
                           max_length=max_tokens)
        outputs = clip(**inputs)
        similarities.append((outputs.image_embeds @ outputs.text_embeds.T).squeeze(1))
    return float(torch.cat(similarities).mean())
