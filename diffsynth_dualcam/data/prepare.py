"""Dataset preparation: depth videos for clips that have none, and the captions file.

Both dataset layouts are handled (``--layout``): RealEstate10K clips (``video.mp4`` or ``frames/``) and DL3DV
scenes (``images/``, ``images_2/``, ``images_4/`` or ``images_8/``, the depth one frame per image in file-name
order). Folders without RGB frames of the layout are reported, not silently passed over.

The published training depth came from Video Depth Anything ViT-L (``depth_vitl_fp16.mp4``), which is not part of
``transformers``; put its videos in the clip folders if you have them. Otherwise ``dualcam prepare-data`` runs a
per-frame Depth Anything model through ``transformers`` (optional: needs the model files, local or downloaded)
and makes the frames agree over time: each frame's disparity is fitted to the previous one by least squares
(``a * d + b``, the per-frame ambiguity of relative disparity) and the clip is stretched to 0..255 as a whole.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..io import atomic_output, atomic_write, write_video
from .frames import FrameSource, find_frame_source
from .layouts import LAYOUT_SOURCES

#: Percentiles of the aligned clip disparity mapped to 0 and 255 (robust to a few outlier pixels).
STRETCH_PERCENTILES = (0.5, 99.5)


def align_disparities(disparities: list[np.ndarray]) -> list[np.ndarray]:
    """Fit every disparity map to the previous (aligned) one with a scale and shift, first frame unchanged."""
    aligned = [np.asarray(disparities[0], dtype=np.float64)]
    for disparity in disparities[1:]:
        disparity = np.asarray(disparity, dtype=np.float64)
        design = np.stack([disparity.ravel(), np.ones(disparity.size)], axis=1)
        (scale, shift), *_ = np.linalg.lstsq(design, aligned[-1].ravel(), rcond=None)
        aligned.append(scale * disparity + shift)
    return aligned


def disparity_video(disparities: list[np.ndarray]) -> list[Image.Image]:
    """8-bit grayscale frames (near = bright) of a clip's disparities, aligned and stretched over the whole clip."""
    aligned = np.stack(align_disparities(disparities))
    low, high = np.percentile(aligned, STRETCH_PERCENTILES)
    scaled = (aligned - low) / max(high - low, 1e-12) * 255.0
    return [Image.fromarray(frame) for frame in np.clip(scaled, 0, 255).round().astype(np.uint8)]


def write_depth_video(rgb_path: str | Path, output_path: str | Path, disparity: Callable[[Image.Image], np.ndarray],
                      fps: int = 10) -> Path:
    """Estimate every frame's disparity with ``disparity`` (image -> [H, W] float, larger = nearer) and write the
    clip's depth video (atomically)."""

    frames = FrameSource(rgb_path)
    disparities = []
    for index in tqdm(range(len(frames)), desc=f"depth of {Path(rgb_path).parent.name}", leave=False):
        disparities.append(disparity(Image.fromarray(frames.read([index])[0])))
    output_path = Path(output_path)
    with atomic_output(output_path) as temporary:
        write_video(temporary, disparity_video(disparities), fps)
    return output_path


def save_captions(root: str | Path, captions: dict[str, str]) -> Path:
    """Merge ``captions`` ({clip name: caption}) into the dataset's ``captions.json`` (written atomically)."""
    from .clip_dataset import CAPTIONS_FILE, load_captions

    if not all(isinstance(key, str) and isinstance(value, str) for key, value in captions.items()):
        raise ValueError("captions must map clip names to caption strings")
    path = Path(root) / CAPTIONS_FILE
    merged = {**load_captions(root), **captions}
    atomic_write(path, json.dumps(merged, indent=1, ensure_ascii=False, allow_nan=False).encode("utf-8"))
    return path


def plan_depth_videos(root: str | Path, layout: str = "realestate10k") -> tuple[list[Path], int, list[str]]:
    """What ``prepare-data`` would do for the clip folders of ``root``: the RGB sources of the clips without depth,
    the number of clips that already have depth, and one message per folder skipped because it has no RGB frames
    of ``layout`` (with a hint when it has those of the other layout)."""
    rgb_names, depth_names = LAYOUT_SOURCES[layout]
    todo, have_depth, skipped = [], 0, []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".")):
        rgb_path = find_frame_source(folder, rgb_names)
        if rgb_path is None:
            message = f"{folder}: no RGB frames ({' or '.join(rgb_names)})"
            for other, (other_names, _) in LAYOUT_SOURCES.items():
                if other != layout and find_frame_source(folder, other_names) is not None:
                    message += f"; it has {other} frames: use --layout {other}"
            skipped.append(message)
        elif find_frame_source(folder, depth_names) is not None:
            have_depth += 1
        else:
            todo.append(rgb_path)
    return todo, have_depth, skipped
