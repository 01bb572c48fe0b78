"""Dataset preparation: depth videos for clips that have none, and the captions file.

The published training depth came from Video Depth Anything ViT-L (``depth_vitl_fp16.mp4``), which is not part of
``transformers``; put its videos in the clip folders if you have them. Otherwise ``dualcam prepare-data`` runs a
per-frame Depth Anything model through ``transformers`` (optional: needs the model files, local or downloaded)
and makes the frames agree over time: each frame's disparity is fitted to the previous one by least squares
(``a * d + b``, the per-frame ambiguity of relative disparity) and the clip is stretched to 0..255 as a whole.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..io import atomic_output, atomic_write
from ..pipeline.output import write_video
from .clip_dataset import CAPTIONS_FILE, load_captions
from .frames import FrameSource, find_frame_source
from .realestate10k import DEPTH_NAMES, RGB_NAMES

PREPARED_DEPTH_NAME = "depth.mp4"
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
    if not all(isinstance(key, str) and isinstance(value, str) for key, value in captions.items()):
        raise ValueError("captions must map clip names to caption strings")
    path = Path(root) / CAPTIONS_FILE
    merged = {**load_captions(root), **captions}
    atomic_write(path, json.dumps(merged, indent=1, ensure_ascii=False).encode("utf-8"))
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dualcam prepare-data``."""
    parser.add_argument("root", help="dataset folder in the RealEstate10K layout")
    parser.add_argument("--depth-model", default=None,
                        help="Depth Anything model (hub id or local folder) for clips without a depth video")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fps", type=int, default=10, help="frame rate written into the depth videos")
    parser.add_argument("--captions", default=None, help="JSON file {clip name: caption} merged into captions.json")


def run(args: argparse.Namespace) -> int:
    """Write missing depth videos and/or merge captions; prints what was written."""
    root = Path(args.root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    if args.depth_model is None and args.captions is None:
        raise ValueError("nothing to do: give --depth-model and/or --captions")
    if args.captions:
        captions = json.loads(Path(args.captions).read_text(encoding="utf-8"))
        if not isinstance(captions, dict):
            raise ValueError(f"{args.captions}: expected a JSON object {{clip name: caption}}")
        print(f"captions written to {save_captions(root, captions)}")
    if args.depth_model:
        from ..depth import DepthEstimator

        estimator = DepthEstimator.from_pretrained(args.depth_model, device=args.device)
        clips = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        for folder in tqdm(clips, desc="depth videos"):
            rgb_path = find_frame_source(folder, RGB_NAMES)
            if rgb_path is None or find_frame_source(folder, DEPTH_NAMES) is not None:
                continue
            path = write_depth_video(rgb_path, folder / PREPARED_DEPTH_NAME, estimator.disparity, fps=args.fps)
            print(f"depth video written to {path}")
    return 0
