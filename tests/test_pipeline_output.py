"""DualCamCtrlOutput.save: the files of a run, written atomically."""
from __future__ import annotations

import json

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from PIL import Image

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.pipeline import DualCamCtrlOutput
from diffsynth_dualcam.pipeline import output as output_module

FRAMES, HEIGHT, WIDTH = 5, 32, 48


def make_output(with_trajectory: bool = True) -> DualCamCtrlOutput:
    video = [Image.fromarray(np.full((HEIGHT, WIDTH, 3), 40 * i, np.uint8)) for i in range(FRAMES)]
    depth = [Image.fromarray(np.tile(np.linspace(0, 255, WIDTH), (HEIGHT, 1)).astype(np.uint8)) for _ in video]
    c2w = np.tile(np.eye(4), (FRAMES, 1, 1))
    c2w[:, 2, 3] = np.linspace(0, 1, FRAMES)
    trajectory = CameraTrajectory(c2w, np.tile([0.8, 1.2, 0.5, 0.5], (FRAMES, 1)), (WIDTH, HEIGHT))
    return DualCamCtrlOutput(
        video=video, depth_video=depth, latents=torch.zeros(1, 16, 2, 4, 6), depth_latents=torch.zeros(1, 16, 2, 4, 6),
        params={"prompt": "p", "seed": 3}, trajectory=trajectory if with_trajectory else None,
        input_image=video[0], input_depth=depth[0],
    )


def test_save_writes_every_file(tmp_path):
    written = make_output().save(tmp_path / "run", fps=8)
    names = {"video.mp4", "depth.mp4", "side_by_side.mp4", "trajectory.json", "trajectory.png", "params.json",
             "input_image.png", "input_depth.png"}
    assert set(written) == names
    assert {path.name for path in (tmp_path / "run").iterdir()} == names
    video = np.stack(imageio.mimread(tmp_path / "run" / "video.mp4"))
    depth = np.stack(imageio.mimread(tmp_path / "run" / "depth.mp4"))
    both = np.stack(imageio.mimread(tmp_path / "run" / "side_by_side.mp4"))
    assert video.shape == depth.shape == (FRAMES, HEIGHT, WIDTH, 3)
    assert both.shape == (FRAMES, HEIGHT, 2 * WIDTH, 3)
    assert abs(float(video[3].mean()) - 120) < 4  # frame i is a flat 40 * i
    ramp = np.tile(np.linspace(0, 255, WIDTH), (HEIGHT, 1))
    assert np.abs(depth[0].mean(axis=-1) - ramp).mean() < 6
    assert np.abs(both[0, :, WIDTH:].mean(axis=-1) - ramp).mean() < 6
    params = json.loads((tmp_path / "run" / "params.json").read_text())
    assert params == {"prompt": "p", "seed": 3, "fps": 8}
    with Image.open(tmp_path / "run" / "input_depth.png") as image:
        assert image.mode == "L" and image.size == (WIDTH, HEIGHT)
    with Image.open(tmp_path / "run" / "trajectory.png") as image:
        assert image.format == "PNG"
    saved = CameraTrajectory.load(tmp_path / "run" / "trajectory.json")
    expected = make_output().trajectory
    np.testing.assert_allclose(saved.c2w, expected.c2w, atol=1e-9)
    np.testing.assert_allclose(saved.intrinsics, expected.intrinsics, atol=1e-9)
    assert saved.source_size == (WIDTH, HEIGHT)


def test_failed_save_leaves_no_partial_files(tmp_path, monkeypatch):
    out_dir = tmp_path / "run"
    make_output().save(out_dir)
    before = {path.name: path.read_bytes() for path in out_dir.iterdir()}
    real_write_video = output_module.write_video

    def write_then_fail(path, frames, fps):
        real_write_video(path, frames, fps)
        if path.name == "side_by_side.mp4":
            raise OSError("disk full")

    monkeypatch.setattr(output_module, "write_video", write_then_fail)
    changed = make_output()
    changed.params = {"prompt": "other"}
    with pytest.raises(OSError, match="disk full"):
        changed.save(out_dir)
    assert {path.name: path.read_bytes() for path in out_dir.iterdir()} == before

    fresh_dir = tmp_path / "fresh"
    with pytest.raises(OSError, match="disk full"):
        make_output().save(fresh_dir)
    assert list(fresh_dir.iterdir()) == []


def test_save_without_trajectory_drops_old_trajectory_files(tmp_path):
    out_dir = tmp_path / "run"
    make_output().save(out_dir)
    written = make_output(with_trajectory=False).save(out_dir)
    for name in ("trajectory.png", "trajectory.json"):
        assert name not in written
        assert not (out_dir / name).exists()


@pytest.mark.parametrize("fps", [0, 2.5, True])
def test_save_rejects_bad_fps(tmp_path, fps):
    with pytest.raises(ValueError, match="fps must be a positive integer"):
        make_output().save(tmp_path / "run", fps=fps)
    assert not (tmp_path / "run").exists()
