"""Dataset checker: opens every clip of a dataset folder and lists what would fail during training."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

if TYPE_CHECKING:  # the datasets need torch, which `dualcam check-dataset --help` does not
    from .clip_dataset import CameraClipDataset
from .layouts import META_FILE

#: Largest mean spread between the channels of a depth frame: depth must be grayscale, not a colour map.
GRAY_TOLERANCE = 8.0


@dataclass
class ClipReport:
    """What the checker found for one clip."""

    name: str
    num_frames: int = 0
    size: tuple[int, int] | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_clip(dataset: CameraClipDataset, name: str, num_frames: int | None = None, min_stride: int = 1,
               expect_caption: bool = False) -> ClipReport:
    """Open one clip, decode its first and last frames and compare what its files say about each other.

    A clip needs ``(num_frames - 1) * min_stride + 1`` usable frames; ``expect_caption`` warns when it has none.
    """
    from .clip_dataset import CAPTIONS_FILE, aspect_mismatch

    report = ClipReport(name)
    try:
        clip = dataset.open_clip(name)
    except (ValueError, FileNotFoundError, OSError, RuntimeError) as error:
        report.problems.append(str(error))
        return report
    report.num_frames = len(clip.camera)
    report.size = clip.rgb.size
    ends = [int(clip.frame_ids[0]), int(clip.frame_ids[-1])]
    try:
        rgb = clip.rgb.read(ends)
        depth = clip.depth.read(ends)
    except (ValueError, OSError, RuntimeError, IndexError) as error:
        report.problems.append(f"cannot decode frames {ends}: {error}")
        return report
    mismatch = aspect_mismatch(rgb.shape, depth.shape)
    if mismatch:
        report.problems.append(mismatch)
    spread = np.abs(depth.astype(np.float32) - depth.astype(np.float32).mean(-1, keepdims=True)).mean()
    if spread > GRAY_TOLERANCE:
        report.problems.append(f"depth frames are not grayscale (mean channel spread {spread:.1f}): "
                               "expected disparity repeated on 3 channels, not a colour map")
    needed = None if num_frames is None else (num_frames - 1) * min_stride + 1
    if needed is not None and len(clip.camera) < needed:
        report.problems.append(f"{len(clip.camera)} usable frames, fewer than the {needed} that "
                               f"num_frames={num_frames} at min_stride={min_stride} needs")
    if expect_caption and not (clip.prompt or clip.frame_captions):
        report.warnings.append(f"no caption (neither in the dataset's nor in the clip's {CAPTIONS_FILE}): "
                               "an empty prompt is used")
    meta_path = dataset.root / name / META_FILE
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        entry = meta[0] if isinstance(meta, list) and meta else meta
        expected = {"frame": len(clip.rgb), "width": rgb.shape[2], "height": rgb.shape[1]}
        for key, actual in expected.items():
            if key in entry and int(entry[key]) != actual:
                report.warnings.append(f"{META_FILE} says {key}={entry[key]}, the RGB frames have {actual}")
    return report


def check_dataset(dataset: CameraClipDataset, num_frames: int | None = None, progress: bool = True,
                  min_stride: int = 1) -> list[ClipReport]:
    """A report for every clip of ``dataset`` (problems make training fail; warnings do not).

    Clips without a caption are warned about when some clip has one (a dataset without any captions trains with
    empty prompts on purpose).
    """
    from .clip_dataset import CAPTIONS_FILE

    expect_caption = dataset.use_captions and (bool(dataset.captions) or any(
        (dataset.root / name / CAPTIONS_FILE).is_file() for name in dataset.clip_names))
    names = tqdm(dataset.clip_names, desc="checking clips", disable=not progress)
    return [check_clip(dataset, name, num_frames, min_stride, expect_caption) for name in names]
