"""One size convention: a non-square size (96 wide, 64 high) flows through every path unswapped, and the camera
intrinsics are cover-cropped from a non-square source by the formula."""
from __future__ import annotations

import json
from pathlib import Path

import imageio
import numpy as np
import pytest
from PIL import Image

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.cli import main
from diffsynth_dualcam.pipeline.inputs import check_size, prepare_trajectory
from diffsynth_dualcam.pipeline.tiny import tiny_pipeline
from diffsynth_dualcam.world import generate_long

WIDTH, HEIGHT = 96, 64
#: A 16:9 source, wider than the 3:2 output: cover-cropping scales it by HEIGHT / 90 and crops left and right.
SOURCE = (160, 90)
QUIET = {"num_frames": 5, "num_inference_steps": 1, "seed": 2, "progress_bar_cmd": lambda steps: steps}


def frames_size(path: Path) -> tuple[int, int]:
    """(width, height) of every frame of a video file (all the same)."""
    shapes = {frame.shape[:2] for frame in imageio.mimread(path)}
    assert len(shapes) == 1
    height, width = shapes.pop()
    return width, height


def square_pixel_trajectory(num_frames: int) -> CameraTrajectory:
    """A pan recorded on SOURCE-sized frames with square pixels (fy = fx * width / height)."""
    preset = CameraTrajectory.preset("pan_left", num_frames=num_frames)
    fx = 0.5
    intrinsics = np.tile([fx, fx * SOURCE[0] / SOURCE[1], 0.5, 0.5], (num_frames, 1))
    return CameraTrajectory(preset.c2w, intrinsics, SOURCE)


def expected_pixel_intrinsics() -> list[float]:
    """fx, fy, cx, cy in output pixels of square_pixel_trajectory after the cover crop, by the resize-then-crop
    formula: scale the source to cover the output, then shift the principal point by the crop."""
    scale = max(WIDTH / SOURCE[0], HEIGHT / SOURCE[1])
    focal = 0.5 * SOURCE[0] * scale  # square pixels: the same focal length in x and y
    cx = 0.5 * SOURCE[0] * scale - (SOURCE[0] * scale - WIDTH) / 2
    cy = 0.5 * SOURCE[1] * scale - (SOURCE[1] * scale - HEIGHT) / 2
    return [focal, focal, cx, cy]


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(seed=0)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (SOURCE[1], SOURCE[0], 3), dtype=np.uint8)).save(folder / "image.png")
    Image.fromarray(np.tile(np.linspace(0, 255, SOURCE[0]), (SOURCE[1], 1)).astype(np.uint8)).save(folder / "d.png")
    square_pixel_trajectory(5).save(folder / "pan.json")
    return folder


def test_size_checks_return_width_then_height():
    assert check_size(width=WIDTH, height=HEIGHT) == (WIDTH, HEIGHT)
    with pytest.raises(ValueError, match="height must be a multiple of 16, got 60"):
        check_size(width=WIDTH, height=60)


def test_camera_intrinsics_are_cover_cropped_from_a_non_square_source():
    trajectory = prepare_trajectory(square_pixel_trajectory(5), 5, width=WIDTH, height=HEIGHT, image_size=None,
                                    resample=False)
    assert trajectory.source_size == (WIDTH, HEIGHT)
    np.testing.assert_allclose(trajectory.pixel_intrinsics(width=WIDTH, height=HEIGHT),
                               np.tile(expected_pixel_intrinsics(), (5, 1)), rtol=1e-12)
    # Without a source size of its own, the trajectory is cropped from the input image's (width, height).
    unsized = CameraTrajectory(square_pixel_trajectory(5).c2w, square_pixel_trajectory(5).intrinsics)
    from_image = prepare_trajectory(unsized, 5, width=WIDTH, height=HEIGHT, image_size=SOURCE, resample=False)
    np.testing.assert_allclose(from_image.intrinsics, trajectory.intrinsics, rtol=1e-12)


def test_the_pipeline_call_generates_width_by_height(pipe, inputs):
    image, depth = Image.open(inputs / "image.png"), Image.open(inputs / "d.png")
    output = pipe(prompt="a", input_image=image, input_depth=depth, camera=square_pixel_trajectory(5), width=WIDTH,
                  height=HEIGHT, **QUIET)
    assert {frame.size for frame in output.video + output.depth_video} == {(WIDTH, HEIGHT)}
    assert output.input_image.size == output.input_depth.size == (WIDTH, HEIGHT)
    assert output.latents.shape[-2:] == (HEIGHT // 8, WIDTH // 8)  # tensors keep their [.., H, W] layout
    assert (output.params["width"], output.params["height"]) == (WIDTH, HEIGHT)
    np.testing.assert_allclose(output.trajectory.pixel_intrinsics(width=WIDTH, height=HEIGHT)[0],
                               expected_pixel_intrinsics(), rtol=1e-9)


def test_the_chain_generates_width_by_height(pipe):
    output = generate_long(pipe, prompt="a", t2v=True, camera=square_pixel_trajectory(9), width=WIDTH,
                           height=HEIGHT, chunk_frames=5, **{**QUIET, "num_frames": 9})
    assert len(output.video) == 9
    assert {frame.size for frame in output.video + output.depth_video} == {(WIDTH, HEIGHT)}
    assert (output.params["width"], output.params["height"]) == (WIDTH, HEIGHT)
    np.testing.assert_allclose(output.trajectory.pixel_intrinsics(width=WIDTH, height=HEIGHT)[0],
                               expected_pixel_intrinsics(), rtol=1e-9)


def test_the_command_line_size_is_width_x_height(inputs, tmp_path):
    out = tmp_path / "run"
    assert main(["generate", "--tiny", "--device", "cpu", "--image", str(inputs / "image.png"), "--depth",
                 str(inputs / "d.png"), "--trajectory", str(inputs / "pan.json"), "--frames", "5", "--steps", "1",
                 "--size", f"{WIDTH}x{HEIGHT}", "--out", str(out)]) == 0
    for name in ("video.mp4", "depth.mp4"):
        assert frames_size(out / name) == (WIDTH, HEIGHT)
    assert Image.open(out / "input_image.png").size == (WIDTH, HEIGHT)
    params = json.loads((out / "params.json").read_text())
    assert (params["width"], params["height"]) == (WIDTH, HEIGHT)
    cropped = CameraTrajectory.from_realestate10k(np.array(params["camera"]["realestate10k"]), None)
    np.testing.assert_allclose(cropped.pixel_intrinsics(width=WIDTH, height=HEIGHT)[0], expected_pixel_intrinsics(),
                               rtol=1e-6)


def test_a_batch_file_size_is_width_height(tmp_path):
    jobs = [{"name": "listed", "t2v": True, "preset": "pan_left", "size": [WIDTH, HEIGHT]},
            {"name": "written", "t2v": True, "preset": "pan_left", "size": f"{WIDTH}x{HEIGHT}"}]
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(json.dumps(job) for job in jobs) + "\n")
    out = tmp_path / "out"
    assert main(["generate", "--batch-file", str(path), "--tiny", "--device", "cpu", "--out", str(out), "--frames",
                 "5", "--steps", "1", "--size", "64x48"]) == 0
    for name in ("listed", "written"):
        assert frames_size(out / name / "video.mp4") == (WIDTH, HEIGHT)


def test_the_preview_lifts_the_first_frame_at_width_by_height(inputs, tmp_path, monkeypatch):
    import diffsynth_dualcam.export.preview as preview

    seen = []
    write_preview = preview.write_preview

    def recording_write_preview(path, trajectory, image=None, depth=None, **kwargs):
        seen.append((trajectory, image, depth))
        return write_preview(path, trajectory, image, depth, **kwargs)

    monkeypatch.setattr(preview, "write_preview", recording_write_preview)
    out = tmp_path / "preview"
    assert main(["generate", "--tiny", "--device", "cpu", "--preview-only", "--image", str(inputs / "image.png"),
                 "--depth", str(inputs / "d.png"), "--trajectory", str(inputs / "pan.json"), "--frames", "5",
                 "--size", f"{WIDTH}x{HEIGHT}", "--out", str(out)]) == 0
    (trajectory, image, depth), = seen
    assert image.size == depth.size == (WIDTH, HEIGHT)
    np.testing.assert_allclose(trajectory.pixel_intrinsics(width=WIDTH, height=HEIGHT)[0],
                               expected_pixel_intrinsics(), rtol=1e-9)
    assert (out / "preview.glb").stat().st_size > 0


def test_an_app_request_generates_width_by_height(pipe, inputs, tmp_path):
    from diffsynth_dualcam.app.generation import GenerationRequest, PipelineGenerator

    generator = PipelineGenerator(pipe, tmp_path / "runs", tiled=False)
    request = GenerationRequest(
        image=Image.open(inputs / "image.png"), depth=Image.open(inputs / "d.png"), prompt="a", negative_prompt="",
        camera=square_pixel_trajectory(5), width=WIDTH, height=HEIGHT, num_frames=5, num_inference_steps=1,
        cfg_scale=6.0, seed=1,
    )
    result = generator(request, lambda steps: steps)
    assert frames_size(result.video) == frames_size(result.depth_video) == (WIDTH, HEIGHT)
    assert Image.open(result.input_depth).size == (WIDTH, HEIGHT)
