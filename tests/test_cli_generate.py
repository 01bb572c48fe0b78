"""`dualcam generate`: a tiny end-to-end run, and exit code 2 with a message for every bad argument."""
from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pytest
from PIL import Image

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.cli import main
from diffsynth_dualcam.depth import DepthEstimator
from diffsynth_dualcam.pipeline import cli as generate_cli
from diffsynth_dualcam.pipeline.inputs import prepare_image
from diffsynth_dualcam.testing import save_tiny_depth_anything, tiny_depth_estimator


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)).save(folder / "image.png")
    Image.fromarray(np.tile(np.linspace(0, 255, 160), (90, 1)).astype(np.uint8)).save(folder / "depth.png")
    (folder / "not_an_image.png").write_text("plain text")
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
    assert params["seed"] == 5 and params["prompt"] == "a house" and params["model"] == "tiny-random"
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
        expected = tiny_depth_estimator()(prepare_image(image, 64, 48))
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
    setup = generate_cli.resolve_setup(parser.parse_args(["--preset", "static", "--checkpoint-dir", str(tmp_path)]))
    assert setup.tiny and "not found" in setup.reason
    assert (setup.size, setup.frames, setup.steps) == ((96, 64), 9, 3)


BAD_ARGUMENTS = [
    (["--frames", "10"], "--frames: num_frames must be 4k\\+1"),
    (["--size", "100x64"], "--size: width must be a multiple of 16"),
    (["--size", "64x50"], "--size: height must be a multiple of 16"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--cfg", "nan"], "--cfg must be a finite number"),
    (["--seed", "-3"], "--seed must be >= 0"),
    (["--fps", "0"], "--fps must be at least 1"),
    (["--speed", "0"], "--speed must be a positive number"),
    (["--checkpoint", "missing.safetensors"], "--checkpoint: no such file"),
]


@pytest.mark.parametrize(("extra", "message"), BAD_ARGUMENTS)
def test_bad_values_exit_2(inputs, tmp_path, capsys, extra, message):
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
     "at least 2 are needed to resample it"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUTS)
def test_bad_inputs_exit_2(inputs, tmp_path, capsys, argv, message):
    code, _, stderr = run_cli(capsys, "--tiny", "--out", str(tmp_path / "run"),
                              *(item.format(inputs=inputs) for item in argv))
    assert code == 2
    assert message in stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv", [
    ["--size", "64"], ["--size", "0x64"], ["--frames", "many"], ["--preset", "sideways"],
    ["--preset", "static", "--trajectory", "x.json"], [],
])
def test_argparse_errors_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--tiny", *argv])
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err
