"""Frame sources: a video file (read with decord) or a folder of image files, addressed by frame index."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


class FrameSource:
    """Random access to the frames of a video file or of a folder of images (sorted by file name)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            self.image_paths = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.image_paths:
                raise FileNotFoundError(f"{self.path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the folder")
            self._reader = None
        elif self.path.is_file() and self.path.suffix.lower() in VIDEO_SUFFIXES:
            import decord

            self.image_paths = []
            self._reader = decord.VideoReader(str(self.path), num_threads=1)
        elif self.path.is_file():
            raise ValueError(f"{self.path}: expected a video ({', '.join(VIDEO_SUFFIXES)}) or a folder of images")
        else:
            raise FileNotFoundError(f"{self.path}: no such video file or frame folder")

    def __len__(self) -> int:
        return len(self._reader) if self._reader is not None else len(self.image_paths)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        if self._reader is not None:
            height, width = self._reader[0].shape[:2]
            return width, height
        with Image.open(self.image_paths[0]) as image:
            return image.size

    def read(self, indices: list[int] | np.ndarray) -> np.ndarray:
        """Frames at ``indices`` as uint8 RGB [F, H, W, 3]."""
        indices = [int(i) for i in indices]
        if any(i < 0 or i >= len(self) for i in indices):
            raise IndexError(f"{self.path}: frame indices {indices} outside 0..{len(self) - 1}")
        if self._reader is not None:
            return self._reader.get_batch(indices).asnumpy()
        frames = []
        for i in indices:
            with Image.open(self.image_paths[i]) as image:
                frames.append(np.asarray(image.convert("RGB")))
        shapes = {frame.shape for frame in frames}
        if len(shapes) != 1:
            raise ValueError(f"{self.path}: frames of different sizes {sorted(shapes)}")
        return np.stack(frames)


def find_frame_source(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The first of ``names`` (video files or frame folders) that exists in ``folder``, or None."""
    for name in names:
        candidate = folder / name
        if candidate.exists():
            return candidate
    return None


def require_frame_source(folder: Path, names: tuple[str, ...], what: str) -> Path:
    """``find_frame_source``, or a FileNotFoundError naming the clip (the folder's name) and the ``what`` missing."""
    path = find_frame_source(folder, names)
    if path is None:
        raise FileNotFoundError(f"clip {folder.name!r}: no {what} ({' or '.join(names)}) in {folder}")
    return path
