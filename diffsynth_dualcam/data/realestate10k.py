"""RealEstate10K layout: one folder per clip with frames, a pose file and a depth video.

```
ROOT/
  captions.json                 optional {clip name: caption}
  <clip>/
    video.mp4 | frames/         RGB frames (video file or folder of images)
    <clip>.txt | <clip>.torch   RealEstate10K cameras: one row per frame
    depth_vitl_fp16.mp4 | depth.mp4 | depth/   disparity, near = bright, one frame per RGB frame
    meta_data.json              optional, as published: [{"key": ..., "path": "<clip>.torch", "frame": N, ...}]
    captions.json               optional, as published ({split}_captions/<key>/captions.json): {"0": caption, "60": ...}
```
A clip's caption in the dataset's ``captions.json`` takes precedence over its own per-frame captions.
A ``.txt`` pose file is RealEstate10K's own (a URL line, then ``timestamp fx fy cx cy k1 k2 w2c[12]`` rows);
a ``.torch`` file holds ``{"cameras": [N, 18]}`` (the same rows without the timestamp). Both are read by
``CameraTrajectory.load`` (the ``.torch`` file without unpickling code).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..camera import CameraTrajectory
from .clip_dataset import CameraClipDataset, ClipFiles, check_frame_counts
from .frames import FrameSource, require_frame_source
from .layouts import DEPTH_NAMES, META_FILE, RGB_NAMES


class RealEstate10KDataset(CameraClipDataset):
    """Clips in the RealEstate10K layout (see the module docstring)."""

    def list_clips(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def pose_file(self, folder: Path) -> Path:
        """The clip's pose file: the one ``meta_data.json`` names, else ``<clip>.txt`` or ``<clip>.torch``."""
        meta_path = folder / META_FILE
        if meta_path.is_file():
            with open(meta_path, encoding="utf-8") as file:
                meta = json.load(file)
            entry = meta[0] if isinstance(meta, list) and meta else meta
            if not isinstance(entry, dict) or "path" not in entry:
                raise ValueError(f"clip {folder.name!r}: {meta_path} has no 'path' entry")
            path = folder / entry["path"]
            if not path.is_file():
                raise FileNotFoundError(f"clip {folder.name!r}: pose file {path} named in {META_FILE} is missing")
            return path
        for suffix in (".txt", ".torch"):
            path = folder / f"{folder.name}{suffix}"
            if path.is_file():
                return path
        raise FileNotFoundError(f"clip {folder.name!r}: no pose file {folder.name}.txt or {folder.name}.torch "
                                f"in {folder}")

    def open_clip(self, name: str) -> ClipFiles:
        folder = self.root / name
        rgb_path = require_frame_source(folder, RGB_NAMES, "RGB frames")
        depth_path = require_frame_source(folder, DEPTH_NAMES, "depth video")
        pose_path = self.pose_file(folder)
        camera = CameraTrajectory.load(pose_path, format="torch" if pose_path.suffix == ".torch" else "realestate10k")
        rgb = FrameSource(rgb_path)
        if len(camera) != len(rgb):
            raise ValueError(f"clip {name!r}: {pose_path.name} has {len(camera)} pose rows but {rgb_path.name} has "
                             f"{len(rgb)} frames")
        prompt, frame_captions = self.clip_captions(name)
        clip = ClipFiles(
            name=name,
            rgb=rgb,
            depth=FrameSource(depth_path),
            camera=camera,
            frame_ids=np.arange(len(camera)),
            prompt=prompt,
            frame_captions=frame_captions,
        )
        check_frame_counts(clip)
        return clip
