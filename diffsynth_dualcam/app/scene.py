"""The camera panel's 3D view: the page's camera path in the scene of its first frame, before generating.

The scene is the one ``dualcam generate --preview-only`` writes (``export.preview``): the uploads and the
camera are prepared as the generation prepares them (output size, path stretched over the frame count, intrinsics
cover-cropped), and no model runs, so a first frame without a depth map shows the cameras only.
"""
from __future__ import annotations

import secrets
import tempfile
import time
from pathlib import Path

from PIL import Image

from ..camera import CameraTrajectory
from ..export.preview import write_preview
from ..pipeline.inputs import check_same_aspect, check_size, prepare_depth, prepare_image, prepare_trajectory
from .uploads import UploadError, load_image_upload

#: Preview scenes older than this are removed (Gradio has copied each into its cache when the handler returned).
PREVIEW_MAX_AGE_S = 3600


class PreviewFolder:
    """A folder of preview scenes, one file per preview, pruned of old ones whenever a new one is made."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None

    def new_path(self) -> Path:
        """A fresh ``.glb`` path in the folder (a new temporary folder on first use unless one was given)."""
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="dualcam-scenes-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        cutoff = time.time() - PREVIEW_MAX_AGE_S
        for old in self.folder.glob("*.glb"):
            try:
                if old.stat().st_mtime < cutoff:
                    old.unlink()
            except FileNotFoundError:  # removed by a preview running at the same time
                pass
        return self.folder / f"scene-{secrets.token_hex(6)}.glb"


def scene_preview(
    folder: PreviewFolder,
    trajectory: CameraTrajectory,
    image_path: str | None,
    depth_path: str | None,
    num_frames: int,
    *,
    width: int,
    height: int,
) -> tuple[str | None, str]:
    """(scene file, status line) of ``trajectory`` in the uploads' scene; no file and the reason when they are
    unusable."""
    notes = []
    image = _usable_upload(image_path, "first frame", notes)
    depth = _usable_upload(depth_path, "depth map", notes) if image is not None else None
    try:
        width, height = check_size(width=int(width), height=int(height))
        camera = prepare_trajectory(trajectory, int(num_frames), width=width, height=height,
                                    image_size=image.size if image else None, resample=True)
        if depth is not None:
            check_same_aspect(image, depth, width=width, height=height)
            depth = prepare_depth(depth, width=width, height=height).convert("L")
        if image is not None:
            image = prepare_image(image, width=width, height=height)
    except (ValueError, TypeError) as error:
        return None, f"**Scene:** {error}"
    path = folder.new_path()
    scale = write_preview(path, camera, image, depth)
    lines = [f"**Scene:** the camera {scale.message()}", *notes]
    if depth is None:
        lines.append("Upload the first frame and its depth map to see the scene around the cameras (without a depth "
                     "map, the scene appears here after generating).")
    if scale.warning() is not None:
        lines.append(f"⚠️ {scale.warning()}")
    return str(path), "\n\n".join(lines)


def _usable_upload(path: str | None, what: str, notes: list[str]) -> Image.Image | None:
    """The uploaded image, or None with a note in ``notes`` when it is refused (the upload's own check tells the user
    why, once)."""
    if path is None:
        return None
    try:
        return load_image_upload(path, what)
    except UploadError:
        notes.append(f"The {what} upload is not usable, so the scene shows the cameras only.")
        return None
