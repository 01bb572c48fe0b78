"""The demo script and every example run end to end on the tiny models, writing into a temporary folder."""
from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.pipeline.tiny import tiny_model_source

pytestmark = pytest.mark.usefixtures("one_thread")

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = REPO_ROOT / "examples"
#: example -> (its output folder, params it fixes)
EXAMPLES = {
    "i2v_demo_scene.py": ("i2v_astronaut", {"t2v": False, "seed": 42, "cfg_scale": 6.0}),
    "t2v.py": ("t2v_library", {"t2v": True, "seed": 7, "input_image": None}),
    "custom_trajectory.py": ("custom_trajectory", {"t2v": False, "seed": 3}),
    "colmap_trajectory.py": ("colmap_trajectory", {"t2v": False, "seed": 42}),
    "low_vram.py": ("low_vram", {"t2v": False, "seed": 42, "tiled": True}),
}
TINY_FRAMES, TINY_WIDTH, TINY_HEIGHT = 9, 96, 64


def test_every_example_is_covered():
    assert sorted(EXAMPLES) == sorted(path.name for path in EXAMPLES_DIR.glob("*.py") if path.name != "common.py")


def check_run(run_dir: Path, frames: int, width: int, height: int) -> dict:
    """The run folder's videos have the recorded size and length; returns its params."""
    params = json.loads((run_dir / "params.json").read_text())
    assert (params["num_frames"], params["width"], params["height"]) == (frames, width, height)
    for name in ("video.mp4", "depth.mp4"):
        video = np.stack(imageio.mimread(run_dir / name))
        assert video.shape == (frames, height, width, 3)
    return params


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs_on_tiny_models(name, tmp_path, demo_dir, monkeypatch, capsys):
    folder, expected = EXAMPLES[name]
    monkeypatch.syspath_prepend(str(EXAMPLES_DIR))
    monkeypatch.delitem(sys.modules, "common", raising=False)  # the examples' own helper module, fresh per run
    monkeypatch.setattr(sys, "argv", [name, "--tiny", "--out", str(tmp_path)])
    runpy.run_path(str(EXAMPLES_DIR / name), run_name="__main__")
    run_dir = tmp_path / folder
    assert str(run_dir / "params.json") in capsys.readouterr().out  # the example lists what it wrote
    params = check_run(run_dir, TINY_FRAMES, TINY_WIDTH, TINY_HEIGHT)
    assert {key: params[key] for key in expected} == expected
    assert params["camera"]["type"] == "trajectory" and (run_dir / "trajectory.json").is_file()
    if name == "low_vram.py":  # loaded from (tiny) model files with offloading: the files are recorded
        assert params["models"]["dit"] == str(tmp_path / "tiny_models" / "tiny_dit.safetensors")
    else:
        assert params["models"] == tiny_model_source()
    if name == "colmap_trajectory.py":  # the demo path went through a COLMAP text model and back
        assert (run_dir / "sparse" / "images.txt").is_file()
        route66 = CameraTrajectory.load(demo_dir / "route66.torch")
        assert params["camera"]["input_frames"] == len(route66) and params["camera"]["input_source_size"] == [640, 360]
    if name == "custom_trajectory.py":
        assert len(CameraTrajectory.load(run_dir / "camera.json")) == TINY_FRAMES
        assert (run_dir / "camera_preview.png").is_file()


@pytest.mark.parametrize("name", ["t2v.py", "low_vram.py"])  # load_pipeline, and low_vram's own loading
def test_example_without_weights_falls_back_to_the_tiny_models(name, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(EXAMPLES_DIR))
    monkeypatch.delitem(sys.modules, "common", raising=False)
    import common

    monkeypatch.setattr(common, "CHECKPOINT_DIR", tmp_path / "checkpoints")  # no official DiT there
    monkeypatch.setattr(sys, "argv", [name, "--out", str(tmp_path)])
    runpy.run_path(str(EXAMPLES_DIR / name), run_name="__main__")
    captured = capsys.readouterr()
    assert f"the official DualCamCtrl weights were not found in {tmp_path / 'checkpoints'}/" in captured.err
    assert "Using TINY RANDOM models" in captured.err
    check_run(tmp_path / EXAMPLES[name][0], TINY_FRAMES, TINY_WIDTH, TINY_HEIGHT)


def test_every_other_example_loads_through_load_pipeline():
    for name in sorted(set(EXAMPLES) - {"low_vram.py"}):
        assert "load_pipeline(args.tiny)" in (EXAMPLES_DIR / name).read_text(), name


def test_demo_script_writes_every_scene(tmp_path, demo_dir, monkeypatch, capsys):
    """``python -m test_script.test_demo --tiny``, run as a script in this process (one torch thread)."""
    from test_script.test_demo import SCENES, TINY_SETTINGS

    out = tmp_path / "demo"
    monkeypatch.setattr(sys, "argv", ["test_demo", "--tiny", "--demo-dir", str(demo_dir), "--out", str(out)])
    with pytest.raises(SystemExit) as exit_info:
        # run_path, not run_module: pytest's import hook claims modules named test_*.
        runpy.run_path(str(REPO_ROOT / "test_script" / "test_demo.py"), run_name="__main__")
    captured = capsys.readouterr()
    assert exit_info.value.code == 0, captured.err
    assert "TINY RANDOM models" in captured.err
    for scene in SCENES:
        params = check_run(out / scene.name, TINY_SETTINGS.num_frames, TINY_SETTINGS.width, TINY_SETTINGS.height)
        assert params["prompt"] == scene.prompt and params["seed"] == TINY_SETTINGS.seed
        assert params["models"] == tiny_model_source()
        assert str(out / scene.name / "params.json") in captured.out
    assert f"overview: {out / 'overview.png'}" in captured.out
    with Image.open(out / "overview.png") as overview:  # a row per scene: 2 inputs, 4 frames, their 4 depths
        assert overview.size == (10 * (TINY_SETTINGS.width + 4) - 4, 3 * (TINY_SETTINGS.height + 4) - 4)
        # The README's picture is this overview: regenerate docs/images/demo_tiny.png when the demo changes.
        with Image.open(REPO_ROOT / "docs" / "images" / "demo_tiny.png") as documented:
            difference = np.abs(np.asarray(overview.convert("RGB"), dtype=np.float64)
                                - np.asarray(documented.convert("RGB"), dtype=np.float64))
        assert documented.size == overview.size and difference.mean() < 2.0, difference.mean()
