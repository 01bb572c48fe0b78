"""File output: atomic (a file appears complete under its final name or not at all), and the video encoding every
writer shares.

Work in progress is written under a hidden staging name beside its target, ``.NAME.partial-HOST-PID-TOKEN`` (plus
the target's suffix where a writer needs it): the host and process that write it are part of the name, so that a
later run can tell the debris of a killed process (its process is gone) from the staging of one still running, and
remove it (``remove_stale_staging``). Staging names are hidden and never match a result's name.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

FILE_MODE = 0o644
#: Kinds of staging entries: files and folders being written, and a run's old files kept while it is replaced.
STAGING_KINDS = ("partial", "backup")
_STAGING = re.compile(
    r"\.(?P<name>.+)\.(?P<kind>partial|backup)-(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)-[0-9a-f]{8}(\.[^.]*)?"
)


def host_tag() -> str:
    """Eight hex digits naming this machine in staging names (a shared file system may hold other machines')."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def staging_name(name: str, kind: str = "partial", suffix: str = "") -> str:
    """A hidden name for work in progress on ``name`` by this process: ``.NAME.KIND-HOST-PID-TOKEN`` + ``suffix``."""
    if kind not in STAGING_KINDS:
        raise ValueError(f"kind must be one of {STAGING_KINDS}, got {kind!r}")
    return f".{name}.{kind}-{host_tag()}-{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one of another user counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, OSError):  # not a possible process id
        return False
    return True


def remove_stale_staging(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove the staging entries in ``folder`` (see ``staging_name``; only those for ``name`` if given) that
    processes of this machine left when they were killed; returns what was removed. Entries of live processes and
    of other machines stay."""
    folder, removed = Path(folder), []
    try:
        entries = list(folder.iterdir())
    except OSError:  # not a folder (yet), or not readable: nothing of ours to clean
        return removed
    host = host_tag()
    for entry in entries:
        match = _STAGING.fullmatch(entry.name) if entry.name.startswith(".") else None
        if (match is None or (name is not None and match["name"] != name) or match["host"] != host
                or process_alive(int(match["pid"]))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, keep_suffix: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (with the same suffix unless ``keep_suffix`` is False, so writers that
    infer the format from it work); on success it is renamed over ``path`` with mode 0o644, on error it is deleted
    and ``path`` is left untouched.

    The parent folder is created if needed, and staging left there by killed processes (for any file) is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path.parent)
    suffix = (path.suffix or ".tmp") if keep_suffix else ""
    temporary = path.parent / staging_name(path.name, suffix=suffix)
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        yield temporary
        os.chmod(temporary, FILE_MODE)  # created private while incomplete; outputs are ordinary user files
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see ``atomic_output``); returns the path."""
    with atomic_output(path, keep_suffix=False) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_video(path: str | os.PathLike, frames: list[Image.Image], fps: int) -> None:
    """Encode RGB or grayscale PIL frames as an H.264 mp4."""
    import imageio.v2 as imageio
    import numpy as np

    arrays = [np.asarray(frame.convert("RGB")) for frame in frames]
    imageio.mimwrite(path, arrays, fps=fps, codec="libx264", quality=8, macro_block_size=1)
