"""DL3DV layout: one folder per scene with image frames, a COLMAP model and depth.

```
ROOT/
  captions.json                            optional {scene name: caption}
  <scene>/
    images/ | images_2/ | images_4/ | images_8/   RGB frames (the COLMAP image names are these file names)
    sparse/0/ | colmap/sparse/0/           COLMAP model (binary or text), read with pycolmap
    depth_vitl_fp16.mp4 | depth.mp4 | depth/   disparity, one frame per RGB frame, in file-name order
    captions.json                          optional per-frame captions {"frame index": caption}
```
Frames the COLMAP model did not register are skipped; clips are sampled among the registered frames.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..camera import CameraTrajectory
from .clip_dataset import CameraClipDataset, ClipFiles, check_frame_counts
from .frames import FrameSource, require_frame_source
from .layouts import DEPTH_NAMES, IMAGE_FOLDERS, MODEL_FOLDERS


def read_colmap_cameras(model_dir: str | Path, image_names: list[str]) -> tuple[CameraTrajectory, np.ndarray]:
    """Cameras of the registered images among ``image_names`` and their positions in that list.

    Intrinsics are normalised by the COLMAP camera's own width and height (any distortion is ignored).
    """
    import pycolmap

    reconstruction = pycolmap.Reconstruction(str(model_dir))
    by_name = {image.name: image for image in reconstruction.images.values()}
    positions, c2w, intrinsics = [], [], []
    for position, name in enumerate(image_names):
        image = by_name.get(name)
        if image is None:
            continue
        camera = reconstruction.cameras[image.camera_id]
        w2c = np.eye(4)
        w2c[:3] = image.cam_from_world().matrix()
        positions.append(position)
        c2w.append(np.linalg.inv(w2c))
        intrinsics.append([camera.focal_length_x / camera.width, camera.focal_length_y / camera.height,
                           camera.principal_point_x / camera.width, camera.principal_point_y / camera.height])
    trajectory = CameraTrajectory(c2w=np.array(c2w).reshape(-1, 4, 4), intrinsics=np.array(intrinsics).reshape(-1, 4))
    return trajectory, np.array(positions, dtype=np.int64)


class DL3DVDataset(CameraClipDataset):
    """Scenes in the DL3DV layout (see the module docstring)."""

    def list_clips(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def open_clip(self, name: str) -> ClipFiles:
        folder = self.root / name
        image_dir = require_frame_source(folder, IMAGE_FOLDERS, "image folder")
        model_dir = require_frame_source(folder, MODEL_FOLDERS, "COLMAP model")
        depth_path = require_frame_source(folder, DEPTH_NAMES, "depth")
        rgb = FrameSource(image_dir)
        camera, frame_ids = read_colmap_cameras(model_dir, [path.name for path in rgb.image_paths])
        if len(frame_ids) == 0:
            raise ValueError(f"clip {name!r}: no frame of {image_dir} is registered in the COLMAP model {model_dir}")
        prompt, frame_captions = self.clip_captions(name)
        clip = ClipFiles(name=name, rgb=rgb, depth=FrameSource(depth_path), camera=camera, frame_ids=frame_ids,
                         prompt=prompt, frame_captions=frame_captions)
        check_frame_counts(clip)
        return clip
