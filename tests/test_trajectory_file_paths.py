"""Image paths inside a NeRF transforms.json are confined to the folder of that file."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from diffsynth_dualcam.camera import CameraTrajectory


def _transforms(folder, file_path):
    """A transforms.json in `folder` whose only frame gives no w/h, so the reader looks at `file_path`."""
    folder.mkdir(parents=True, exist_ok=True)
    document = {"camera_angle_x": 1.0, "frames": [{"file_path": file_path, "transform_matrix": np.eye(4).tolist()}]}
    path = folder / "transforms.json"
    path.write_text(json.dumps(document))
    return path


def test_image_size_is_read_from_inside_the_folder(tmp_path):
    (tmp_path / "scene" / "images").mkdir(parents=True)
    Image.new("RGB", (40, 20)).save(tmp_path / "scene" / "images" / "r_0.png")
    assert CameraTrajectory.load(_transforms(tmp_path / "scene", "./images/r_0")).source_size == (40, 20)
    # A path that goes up and comes back in is inside.
    assert CameraTrajectory.load(_transforms(tmp_path / "scene", "images/../images/r_0.png")).source_size == (40, 20)


def test_absolute_image_paths_are_refused(tmp_path):
    secret = tmp_path / "elsewhere" / "secret.png"
    secret.parent.mkdir()
    Image.new("RGB", (33, 17)).save(secret)
    path = _transforms(tmp_path / "scene", str(secret))
    with pytest.raises(ValueError, match=r"frame 0: file_path .* is absolute; image paths must be relative"):
        CameraTrajectory.load(path)
    with pytest.raises(ValueError, match="is absolute"):
        CameraTrajectory.load(_transforms(tmp_path / "scene", "/abs/path.png"))


def test_paths_leading_out_of_the_folder_are_refused(tmp_path):
    Image.new("RGB", (33, 17)).save(tmp_path / "x.png")  # exists, so only the check stops the reader
    path = _transforms(tmp_path / "scene", "../x.png")
    with pytest.raises(ValueError, match=r"file_path '\.\./x\.png' leads outside the folder of transforms\.json"):
        CameraTrajectory.load(path)
    with pytest.raises(ValueError, match="leads outside"):
        CameraTrajectory.load(_transforms(tmp_path / "scene", "../x"))  # the .png is added by the reader
    # A link inside the folder that points out of it is resolved, and refused as well.
    os.symlink(tmp_path / "x.png", tmp_path / "scene" / "link.png")
    with pytest.raises(ValueError, match="leads outside"):
        CameraTrajectory.load(_transforms(tmp_path / "scene", "link.png"))


def test_unusable_paths_are_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="is not a usable path"):
        CameraTrajectory.load(_transforms(tmp_path / "scene", "a\u0000b.png"))


def test_unreadable_image_names_give_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"frame 0: no image size"):
        CameraTrajectory.load(_transforms(tmp_path / "scene", "x" * 300))  # too long for the file system


def test_decompression_bomb_header_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    (tmp_path / "scene").mkdir()
    Image.new("L", (20, 20)).save(tmp_path / "scene" / "big.png")  # 400 pixels > 2 x MAX_IMAGE_PIXELS
    with pytest.raises(ValueError, match=r"frame 0: no image size"):
        CameraTrajectory.load(_transforms(tmp_path / "scene", "big.png"))
