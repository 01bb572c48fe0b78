"""`dualcam generate`: a tiny end-to-end run, and exit code 2 with a message for every bad argument."""
from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.cli import generate as generate_cli
from diffsynth_dualcam.cli import main
from diffsynth_dualcam.models.depth_estimator import DepthEstimator
from diffsynth_dualcam.pipeline.inputs import prepare_image, prepare_trajectory
from diffsynth_dualcam.pipeline.tiny import save_tiny_depth_anything, tiny_depth_estimator, tiny_model_source


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)).save(folder / "image.png")
    Image.fromarray(np.tile(np.linspace(0, 255, 160), (90, 1)).astype(np.uint8)).save(folder / "depth.png")
    (folder / "not_an_image.png").write_text("plain text")
    Image.fromarray(np.tile(np.linspace(0, 65535, 160), (90, 1)).astype(np.uint16)).save(folder / "depth16.png")
    (folder / "taken").write_text("a file, not a folder")
    (folder / "dangling").symlink_to(folder / "gone")
    CameraTrajectory.preset("static", num_frames=1).save(folder / "one_frame.json")
    return folder


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["generate", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_tiny_generation_writes_and_lists_files(inputs, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, stderr = run_cli(
        capsys, "--tiny", "--image", str(inputs / "image.png"), "--depth", str(inputs / "depth.png"), "--preset",
        "orbit_left", "--prompt", "a house", "--frames", "5", "--size", "64x48", "--steps", "2", "--seed", "5",
        "--out", str(out),
    )
    assert code == 0, stderr
    assert "TINY RANDOM models" in stderr
    for name in ("video.mp4", "depth.mp4", "side_by_side.mp4", "trajectory.png", "params.json"):
        assert (out / name).is_file() and str(out / name) in stdout
    params = json.loads((out / "params.json").read_text())
    assert (params["width"], params["height"], params["num_frames"]) == (64, 48, 5)
    assert params["seed"] == 5 and params["prompt"] == "a house"
    assert params["models"] == tiny_model_source()
    assert params["camera"]["type"] == "trajectory" and len(params["camera"]["realestate10k"]) == 5


def test_tiny_generation_without_depth_estimates_it_with_the_tiny_depth_model(inputs, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, stderr = run_cli(
        capsys, "--tiny", "--image", str(inputs / "image.png"), "--preset", "pan_left", "--frames", "5", "--size",
        "64x48", "--steps", "1", "--out", str(out),
    )
    assert code == 0, stderr
    assert json.loads((out / "params.json").read_text())["depth_estimated"] is True
    with Image.open(inputs / "image.png") as image:
        expected = tiny_depth_estimator()(prepare_image(image, width=64, height=48))
    with Image.open(out / "input_depth.png") as depth:
        np.testing.assert_array_equal(np.asarray(depth), np.asarray(expected))


def test_depth_model_option_loads_the_given_model(inputs, tmp_path):
    model_dir = save_tiny_depth_anything(tmp_path / "depth_model", seed=4)
    parser = argparse.ArgumentParser()
    generate_cli.add_arguments(parser)
    args = parser.parse_args(["--tiny", "--image", str(inputs / "image.png"), "--preset", "static",
                              "--depth-model", str(model_dir), "--device", "cpu"])
    estimator = generate_cli.load_depth_estimator(args, generate_cli.resolve_setup(args))
    with Image.open(inputs / "image.png") as image:
        expected = DepthEstimator.from_pretrained(str(model_dir))(image)
        np.testing.assert_array_equal(np.asarray(estimator(image)), np.asarray(expected))
        assert not np.array_equal(np.asarray(tiny_depth_estimator()(image)), np.asarray(expected))


def test_missing_official_weights_fall_back_to_tiny_defaults(tmp_path):
    parser = argparse.ArgumentParser()
    generate_cli.add_arguments(parser)
    setup = generate_cli.resolve_setup(parser.parse_args(["--t2v", "--preset", "static", "--checkpoint-dir",
                                                          str(tmp_path)]))
    assert setup.tiny and "not found" in setup.reason
    assert (setup.size, setup.frames, setup.steps) == ((96, 64), 9, 3)


BAD_ARGUMENTS = [
    (["--frames", "10"], "--frames: num_frames must be 4k\\+1"),
    (["--size", "100x64"], "--size: width must be a multiple of 16"),
    (["--size", "64x50"], "--size: height must be a multiple of 16"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--cfg", "nan"], "--cfg: guidance scale must be a number between -100 and 100 .*, got nan"),
    (["--seed", "-3"], "--seed: seed must be >= 0"),
    (["--seed", str(2**63)], "--seed: seed must be below 2\\*\\*63"),
    (["--fps", "0"], "--fps must be at least 1"),
    (["--speed", "0"], "--speed must be a positive number"),
    (["--checkpoint", "missing.safetensors"], "--tiny runs tiny random models: drop --checkpoint"),
    (["--out", "{inputs}/dangling"], "--out .*dangling is a link to .*gone, which does not exist"),
    (["--device", "bogus"], "--device: 'bogus' is not a torch device"),
    (["--device", "cpu:x"], "--device: 'cpu:x' is not a torch device"),
    (["--out", "{inputs}/taken"], "--out must be a folder, .*taken is a file"),
    (["--out", "{inputs}/taken/run"], "--out must be a folder, .*taken/run is inside .*taken, which is a file"),
]


@pytest.fixture
def no_pipeline(monkeypatch):
    """Bad arguments must fail before any model is built."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the pipeline was built before the arguments were checked")

    monkeypatch.setattr(generate_cli, "build_pipeline", forbidden)


@pytest.mark.parametrize(("extra", "message"), BAD_ARGUMENTS)
def test_bad_values_exit_2(inputs, tmp_path, capsys, no_pipeline, extra, message):
    extra = [item.format(inputs=inputs) for item in extra]
    code, _, stderr = run_cli(
        capsys, "--tiny", "--image", str(inputs / "image.png"), "--depth", str(inputs / "depth.png"), "--preset",
        "static", "--out", str(tmp_path / "run"), *extra,
    )
    assert code == 2
    assert re.search(message, stderr), stderr
    assert not (tmp_path / "run").exists()


BAD_INPUTS = [
    (["--preset", "static"], "--image is required"),
    (["--image", "{inputs}/image.png", "--preset", "static", "--depth-model", "{inputs}/no_depth_model"],
     "--depth was not given and the depth model"),
    (["--t2v", "--image", "{inputs}/image.png", "--preset", "static"], "--t2v generates from the prompt alone"),
    (["--image", "{inputs}/nope.png", "--depth", "{inputs}/depth.png", "--preset", "static"],
     "--image: no such file"),
    (["--image", "{inputs}/not_an_image.png", "--depth", "{inputs}/depth.png", "--preset", "static"],
     "--image: cannot read"),
    (["--image", "{inputs}/image.png", "--depth", "{inputs}/depth.png", "--trajectory", "{inputs}/none.json"],
     "no trajectory at"),
    (["--image", "{inputs}/image.png", "--depth", "{inputs}/depth.png", "--trajectory", "{inputs}/depth.png"],
     "not a UTF-8 text file and not a torch file"),
    (["--image", "{inputs}/image.png", "--depth", "{inputs}/depth.png", "--trajectory", "{inputs}/one_frame.json"],
     "camera trajectory has 1 frames, num_frames=9 are needed: the path is followed frame by frame"),
    (["--image", "{inputs}/image.png", "--depth", "{inputs}/depth.png", "--trajectory", "{inputs}/one_frame.json",
      "--resample-camera"], "at least 2 are needed to resample it"),
    (["--image", "{inputs}/image.png", "--depth", "{inputs}/depth16.png", "--preset", "static"],
     "--depth: {inputs}/depth16.png has PIL mode 'I;16', expected an 8-bit image"),
    (["--image", "{inputs}/depth16.png", "--depth", "{inputs}/depth.png", "--preset", "static"],
     "--image: {inputs}/depth16.png has PIL mode 'I;16'"),
    (["--t2v"], "a camera is required: --trajectory FILE or --preset NAME"),
]


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_device_without_hardware_exits_2(inputs, tmp_path, capsys, no_pipeline, monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, stderr = run_cli(capsys, "--tiny", "--t2v", "--preset", "static", "--device", device, "--out",
                              str(tmp_path / "run"))
    assert code == 2
    assert f"--device {device}: no cuda device is available on this machine" in stderr


def test_device_index_beyond_the_devices_exits_2(tmp_path, capsys, no_pipeline, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    code, _, stderr = run_cli(capsys, "--tiny", "--t2v", "--preset", "static", "--device", "cuda:2", "--out",
                              str(tmp_path / "run"))
    assert code == 2
    assert "--device cuda:2: this machine has 2 cuda device(s), numbered from 0" in stderr


@pytest.mark.parametrize(("argv", "message"), BAD_INPUTS)
def test_bad_inputs_exit_2(inputs, tmp_path, capsys, no_pipeline, argv, message):
    code, _, stderr = run_cli(capsys, "--tiny", "--out", str(tmp_path / "run"),
                              *(item.format(inputs=inputs) for item in argv))
    assert code == 2
    assert message.format(inputs=inputs) in stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv", [
    ["--size", "64"], ["--size", "0x64"], ["--frames", "many"], ["--preset", "sideways"],
    ["--preset", "static", "--trajectory", "x.json"],
])
def test_argparse_errors_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--tiny", *argv])
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_batch_clips_without_a_camera_take_the_command_lines(inputs, tmp_path, capsys):
    """``--trajectory`` with ``--batch-file``: the camera of clips that give none; a clip's own preset replaces it."""
    trajectory_file = tmp_path / "orbit.json"
    CameraTrajectory.preset("orbit_left", num_frames=9).save(trajectory_file)
    batch_file = tmp_path / "jobs.jsonl"
    batch_file.write_text(json.dumps({"name": "default", "t2v": True}) + "\n"
                          + json.dumps({"name": "own", "t2v": True, "preset": "pan_left"}) + "\n")
    out = tmp_path / "out"
    code, _, stderr = run_cli(capsys, "--tiny", "--device", "cpu", "--batch-file", str(batch_file), "--trajectory",
                              str(trajectory_file), "--frames", "5", "--size", "64x48", "--steps", "1", "--out",
                              str(out))
    assert code == 0, stderr
    for name, camera in (("default", CameraTrajectory.load(trajectory_file)),
                         ("own", CameraTrajectory.preset("pan_left", num_frames=5))):
        prepared = prepare_trajectory(camera, 5, width=64, height=48, image_size=None, resample=False)
        expected = prepared.to_realestate10k()
        rows = json.loads((out / name / "params.json").read_text())["camera"]["realestate10k"]
        np.testing.assert_allclose(rows, expected, atol=1e-9)


def test_batch_clip_without_any_camera_exits_2_before_models_load(tmp_path, capsys, no_pipeline):
    batch_file = tmp_path / "jobs.jsonl"
    batch_file.write_text(json.dumps({"name": "a", "t2v": True, "preset": "static"}) + "\n"
                          + json.dumps({"name": "b", "t2v": True}) + "\n")
    code, _, stderr = run_cli(capsys, "--tiny", "--device", "cpu", "--batch-file", str(batch_file), "--out",
                              str(tmp_path / "out"))
    assert code == 2
    assert "clip 'b': a camera is required" in stderr
    assert not (tmp_path / "out").exists()


def test_checkpoint_and_device_arguments_are_checked_and_normalised(inputs, tmp_path, capsys, no_pipeline):
    common = ["--image", str(inputs / "image.png"), "--depth", str(inputs / "depth.png"), "--preset", "static",
              "--out", str(tmp_path / "run")]
    code, _, stderr = run_cli(capsys, *common, "--checkpoint", str(tmp_path / "missing.safetensors"))
    assert code == 2 and "--checkpoint: no such file" in stderr
    official = tmp_path / "dualcamctrl_diffusion_transformer.pt"
    official.write_bytes(b"weights")
    code, _, stderr = run_cli(capsys, *common, "--checkpoint", str(official))
    assert code == 2 and f"convert the official .pt first with: dualcam convert-checkpoint {official}" in stderr
    assert generate_cli.check_device("cpu:0") == "cpu" and generate_cli.check_device("cpu") == "cpu"


def test_unwritable_out_is_refused_before_models_load(inputs, tmp_path, capsys, no_pipeline, monkeypatch):
    real_access = generate_cli.os.access
    monkeypatch.setattr(generate_cli.os, "access", lambda path, mode: False if path == tmp_path else
                        real_access(path, mode))
    code, _, stderr = run_cli(capsys, "--tiny", "--image", str(inputs / "image.png"), "--preset", "static",
                              "--out", str(tmp_path / "new" / "run"))
    assert code == 2 and f"this process may not write in {tmp_path}" in stderr


def test_images_are_read_upright_by_their_exif_orientation(tmp_path):
    pixels = np.zeros((40, 60, 3), dtype=np.uint8)
    pixels[:, :10] = 255  # a white band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    Image.fromarray(pixels).save(tmp_path / "photo.jpg", exif=exif, quality=95)
    upright = np.asarray(generate_cli.load_image("--image", tmp_path / "photo.jpg"))
    assert upright.shape[:2] == (60, 40)
    assert upright[:10].mean() > 200 and upright[-10:].mean() < 50  # the band is now on top
    Image.new("CMYK", (64, 64)).save(tmp_path / "print.jpg")
    with pytest.raises(ValueError, match="mode 'CMYK', expected an 8-bit image .*; convert it to RGB first"):
        generate_cli.load_image("--image", tmp_path / "print.jpg")


def test_a_depth_map_of_another_frame_damaged_exif_and_links_to_nowhere_fail_before_models_load(
    inputs, tmp_path, capsys, no_pipeline, monkeypatch
):
    Image.fromarray(np.zeros((160, 90), dtype=np.uint8)).save(tmp_path / "portrait_depth.png")
    common = ["--tiny", "--image", str(inputs / "image.png"), "--preset", "static"]
    code, _, stderr = run_cli(capsys, *common, "--depth", str(tmp_path / "portrait_depth.png"),
                              "--out", str(tmp_path / "run"))
    assert code == 2 and "--depth: input_depth is 90x160" in stderr
    (tmp_path / "gone_parent").symlink_to(tmp_path / "nowhere")
    code, _, stderr = run_cli(capsys, *common, "--out", str(tmp_path / "gone_parent" / "run"))
    assert code == 2 and "gone_parent is a link to" in stderr

    def damaged(image):
        raise SyntaxError("not a TIFF file")

    monkeypatch.setattr(generate_cli.ImageOps, "exif_transpose", damaged)
    code, _, stderr = run_cli(capsys, *common, "--out", str(tmp_path / "run"))
    assert code == 2 and "holds damaged EXIF data (not a TIFF file)" in stderr
    assert not (tmp_path / "run").exists()


def test_recorded_path_is_followed_frame_by_frame(demo_dir, tmp_path, capsys):
    """``--frames 61`` on the 142-camera demo path records its first 61 cameras made relative to the first, with the
    intrinsics cover-cropped to the output: computed here from the raw .torch rows."""
    out = tmp_path / "run"
    code, _, stderr = run_cli(
        capsys, "--tiny", "--image", str(demo_dir / "astronaut.png"), "--depth", str(demo_dir / "astronaut_depth.png"),
        "--trajectory", str(demo_dir / "astronaut.torch"), "--frames", "61", "--size", "96x64", "--steps", "1",
        "--out", str(out),
    )
    assert code == 0, stderr
    rows = torch.load(demo_dir / "astronaut.torch", weights_only=True)["cameras"].double().numpy()
    assert len(rows) == 142
    w2c = np.tile(np.eye(4), (61, 1, 1))
    w2c[:, :3, :] = rows[:61, 6:].reshape(61, 3, 4)
    expected_c2w = w2c[0] @ np.linalg.inv(w2c)
    # Demo .torch rows are normalised by RealEstate10K's 640 x 360 frames (docs/camera.md), wider than 96 x 64:
    # scaled to cover 64 high, left and right cropped.
    ratio = (64 * 640 / 360) / 96
    fx, fy, cx, cy = rows[:61, 0] * ratio, rows[:61, 1], 0.5 + (rows[:61, 2] - 0.5) * ratio, rows[:61, 3]
    recorded = json.loads((out / "trajectory.json").read_text())
    assert len(recorded["frames"]) == 61
    np.testing.assert_allclose([frame["c2w"] for frame in recorded["frames"]], expected_c2w, atol=1e-6)
    np.testing.assert_allclose([frame["intrinsics"] for frame in recorded["frames"]],
                               np.stack([fx, fy, cx, cy], axis=1), atol=1e-6)
    assert json.loads((out / "params.json").read_text())["resample_camera"] is False


def test_resample_camera_stretches_the_recorded_path(demo_dir, tmp_path):
    """With ``--resample-camera`` the whole path spans the clip: its last frame is the file's last camera."""
    parser = argparse.ArgumentParser()
    generate_cli.add_arguments(parser)
    camera = str(demo_dir / "astronaut.torch")
    common = ["--tiny", "--t2v", "--trajectory", camera, "--frames", "61", "--size", "96x64", "--out",
              str(tmp_path / "run")]
    _, _, _, followed = generate_cli.prepare_clip(parser.parse_args(common))
    _, _, _, stretched = generate_cli.prepare_clip(parser.parse_args([*common, "--resample-camera"]))
    whole = CameraTrajectory.load(camera).relative()
    np.testing.assert_allclose(stretched.c2w[-1], whole.c2w[-1], atol=1e-9)
    np.testing.assert_allclose(followed.c2w[-1], whole.c2w[60], atol=1e-9)
