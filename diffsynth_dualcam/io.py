"""File output: atomic (a file appears complete under its final name or not at all), and the video encoding every
writer shares."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

FILE_MODE = 0o644


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that infer the format from it work); on success
    it is renamed over ``path`` with mode 0o644, on error it is deleted and ``path`` is left untouched.

    The parent folder is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix or ".tmp")
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, FILE_MODE)  # mkstemp creates 0600; outputs are ordinary user files
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see ``atomic_output``); returns the path."""
    with atomic_output(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_video(path: str | os.PathLike, frames: list[Image.Image], fps: int) -> None:
    """Encode RGB or grayscale PIL frames as an H.264 mp4."""
    import imageio.v2 as imageio
    import numpy as np

    arrays = [np.asarray(frame.convert("RGB")) for frame in frames]
    imageio.mimwrite(path, arrays, fps=fps, codec="libx264", quality=8, macro_block_size=1)
