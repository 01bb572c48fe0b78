"""DualCamCtrlOutput.save: the files of a run, written atomically."""
from __future__ import annotations

import json
import os
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.pipeline import DualCamCtrlOutput
from diffsynth_dualcam.pipeline import output as output_module

FRAMES, HEIGHT, WIDTH = 5, 32, 48


def make_output(with_trajectory: bool = True, camera_tensor: torch.Tensor | None = None) -> DualCamCtrlOutput:
    video = [Image.fromarray(np.full((HEIGHT, WIDTH, 3), 40 * i, np.uint8)) for i in range(FRAMES)]
    depth = [Image.fromarray(np.tile(np.linspace(0, 255, WIDTH), (HEIGHT, 1)).astype(np.uint8)) for _ in video]
    c2w = np.tile(np.eye(4), (FRAMES, 1, 1))
    c2w[:, 2, 3] = np.linspace(0, 1, FRAMES)
    trajectory = CameraTrajectory(c2w, np.tile([0.8, 1.2, 0.5, 0.5], (FRAMES, 1)), (WIDTH, HEIGHT))
    return DualCamCtrlOutput(
        video=video, depth_video=depth, latents=torch.zeros(1, 16, 2, 4, 6), depth_latents=torch.zeros(1, 16, 2, 4, 6),
        params={"prompt": "p", "seed": 3}, trajectory=trajectory if with_trajectory else None,
        input_image=video[0], input_depth=depth[0], camera_tensor=camera_tensor,
    )


def test_save_writes_every_file(tmp_path):
    written = make_output().save(tmp_path / "run", fps=8)
    names = {"video.mp4", "depth.mp4", "side_by_side.mp4", "trajectory.json", "trajectory.png", "params.json",
             "input_image.png", "input_depth.png"}
    assert set(written) == names
    assert {path.name for path in (tmp_path / "run").iterdir()} == names
    assert [path.name for path in tmp_path.iterdir()] == ["run"]  # no staging folder left beside it
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
    assert not fresh_dir.exists()
    assert [path.name for path in tmp_path.iterdir()] == ["run"]


def test_new_or_empty_folder_is_replaced_in_one_rename(tmp_path, monkeypatch):
    renames = []
    real_replace = os.replace

    def recording_replace(source, target):
        if os.path.dirname(target) == str(tmp_path):  # not the writers' own atomic writes inside the staging folder
            renames.append((os.path.basename(source), os.path.basename(target)))
        real_replace(source, target)

    monkeypatch.setattr(output_module.os, "replace", recording_replace)
    (tmp_path / "empty").mkdir()
    for name in ("new", "empty"):
        renames.clear()
        written = make_output().save(tmp_path / name)
        assert len(renames) == 1 and renames[0][0].startswith(f".{name}.partial-") and renames[0][1] == name
        assert set(written) == {path.name for path in (tmp_path / name).iterdir()}
    reference_folder = tmp_path / "made_by_mkdir"
    reference_folder.mkdir()
    assert (tmp_path / "new").stat().st_mode == reference_folder.stat().st_mode  # not a private temporary folder


def test_an_empty_mount_point_is_filled_file_by_file(tmp_path, monkeypatch):
    """rename(2) cannot replace a mount point (EBUSY): its run is staged inside it and moved file by file."""
    mount = tmp_path / "volume"
    mount.mkdir()
    real_ismount = os.path.ismount
    monkeypatch.setattr(output_module.os.path, "ismount", lambda path: Path(path) == mount or real_ismount(path))
    real_replace = os.replace

    def refusing_replace(source, target):
        if Path(target) == mount:
            raise OSError(16, "Device or resource busy")
        real_replace(source, target)

    monkeypatch.setattr(output_module.os, "replace", refusing_replace)
    written = make_output().save(mount)
    assert set(written) == {path.name for path in mount.iterdir()}


def test_saving_over_a_run_replaces_file_by_file_with_params_last(tmp_path, monkeypatch):
    out_dir = tmp_path / "run"
    make_output().save(out_dir)
    (out_dir / "notes.txt").write_text("kept")
    moves = []
    real_replace = os.replace

    def recording_replace(source, target):
        if os.path.dirname(target) == str(out_dir):
            moves.append((os.path.basename(target), (out_dir / "params.json").exists()))
        real_replace(source, target)

    monkeypatch.setattr(output_module.os, "replace", recording_replace)
    changed = make_output(with_trajectory=False)
    changed.params = {"prompt": "other"}
    changed.save(out_dir, fps=5)
    assert [name for name, _ in moves] == ["video.mp4", "depth.mp4", "side_by_side.mp4", "input_image.png",
                                           "input_depth.png", "params.json"]
    assert not any(params_present for _, params_present in moves)  # the old params.json went first
    assert (out_dir / "notes.txt").read_text() == "kept"
    assert json.loads((out_dir / "params.json").read_text()) == {"prompt": "other", "fps": 5}


def test_saving_into_the_empty_working_directory_keeps_it(tmp_path, monkeypatch):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    written = make_output().save(".")
    assert Path.cwd() == here and here.samefile(os.getcwd())  # the folder was filled, not renamed over
    assert {path.name for path in here.iterdir()} == set(written)
    assert [path.name for path in tmp_path.iterdir()] == ["here"]


def test_packed_camera_tensor_is_saved(tmp_path):
    camera = torch.randn(1, 24, 2, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(0))
    output = make_output(with_trajectory=False, camera_tensor=camera)
    output.params["camera"] = {"type": "plucker_tensor", "shape": [1, 24, 2, HEIGHT, WIDTH]}
    written = output.save(tmp_path / "run")
    assert "camera.safetensors" in written and "trajectory.json" not in written and "trajectory.png" not in written
    assert torch.equal(load_file(tmp_path / "run" / "camera.safetensors")["camera"], camera)
    params = json.loads((tmp_path / "run" / "params.json").read_text())
    assert params["camera"] == {"type": "plucker_tensor", "shape": [1, 24, 2, HEIGHT, WIDTH],
                                "file": "camera.safetensors"}
    assert "file" not in output.params["camera"]
    make_output().save(tmp_path / "run")  # a trajectory run over it drops the tensor file
    assert not (tmp_path / "run" / "camera.safetensors").exists()


def test_save_into_a_file_fails_before_writing(tmp_path):
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(NotADirectoryError, match="out_dir must be a folder"):
        make_output().save(tmp_path / "taken")
    assert [path.name for path in tmp_path.iterdir()] == ["taken"]


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


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry under ``folder`` by relative path: a file's bytes, None for a folder."""
    return {str(path.relative_to(folder)): (path.read_bytes() if path.is_file() else None)
            for path in sorted(folder.rglob("*"))}


def test_a_folder_where_a_file_goes_is_refused_and_the_old_run_kept(tmp_path):
    out_dir = tmp_path / "run"
    make_output().save(out_dir)
    (out_dir / "side_by_side.mp4").unlink()
    (out_dir / "side_by_side.mp4").mkdir()
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"side_by_side.mp4 is a folder, where a run saves its side_by_side.mp4"):
        make_output(with_trajectory=False).save(out_dir)
    assert snapshot(tmp_path) == before


def test_an_error_while_moving_files_in_puts_the_old_run_back(tmp_path, monkeypatch):
    out_dir = tmp_path / "run"
    make_output().save(out_dir)
    before = snapshot(tmp_path)
    real_replace = os.replace

    def failing_replace(source, target):
        if Path(target) == out_dir / "side_by_side.mp4" and ".partial-" in str(source):
            raise OSError(5, "Input/output error")
        real_replace(source, target)

    monkeypatch.setattr(output_module.os, "replace", failing_replace)
    changed = make_output(with_trajectory=False)
    changed.params = {"prompt": "other"}
    with pytest.raises(OSError, match="Input/output error"):
        changed.save(out_dir)
    assert snapshot(tmp_path) == before


def test_a_run_saved_into_the_same_new_folder_meanwhile_is_replaced_with_a_warning(tmp_path, monkeypatch):
    """Two generations on one new folder: the second to finish finds it filled by the first (simulated by saving the
    first while the second writes its files) and replaces that run whole, with a warning and no error."""
    out_dir = tmp_path / "run"
    first, second = make_output(), make_output(with_trajectory=False)
    first.params, second.params = {"prompt": "first"}, {"prompt": "second"}
    real_write_files = DualCamCtrlOutput.write_files

    def write_files_while_the_first_saves(self, folder, fps):
        if self is second:
            first.save(out_dir)
        real_write_files(self, folder, fps)

    monkeypatch.setattr(DualCamCtrlOutput, "write_files", write_files_while_the_first_saves)
    with pytest.warns(UserWarning, match="was filled by another run while this one was generating"):
        written = second.save(out_dir)
    assert json.loads((out_dir / "params.json").read_text())["prompt"] == "second"
    assert {path.name for path in out_dir.iterdir()} == set(written)  # the first run's trajectory files are gone
    assert [path.name for path in tmp_path.iterdir()] == ["run"]


def dead_process_id() -> int:
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_staging_of_killed_processes_is_removed_and_others_kept(tmp_path):
    from diffsynth_dualcam.io import host_tag

    out_dir = tmp_path / "run"
    make_output().save(out_dir)
    dead, live, host = dead_process_id(), os.getppid(), host_tag()
    debris = [tmp_path / f".run.partial-{host}-{dead}-0badc0de", out_dir / f".run.partial-{host}-{dead}-0badc0de",
              out_dir / f".run.backup-{host}-{dead}-0badc0de"]
    kept = [tmp_path / f".run.partial-{host}-{live}-0badc0de", tmp_path / f".run.partial-00000000-{dead}-0badc0de",
            tmp_path / ".run.notes"]
    for folder in debris + kept:
        folder.mkdir()
        (folder / "video.mp4").write_bytes(b"half")
    make_output().save(out_dir)
    assert not any(folder.exists() for folder in debris)
    assert all(folder.exists() for folder in kept)


def test_two_processes_saving_into_one_new_folder_both_finish_with_one_complete_run(tmp_path):
    import subprocess
    import sys

    script = (
        "import sys\n"
        "sys.path.insert(0, sys.argv[3])\n"
        "from test_pipeline_output import make_output\n"
        "output = make_output(with_trajectory=sys.argv[2] == 'with')\n"
        "output.params = {'prompt': sys.argv[2]}\n"
        "output.save(sys.argv[1])\n"
    )
    out_dir = tmp_path / "run"
    processes = [subprocess.Popen([sys.executable, "-c", script, str(out_dir), kind, str(Path(__file__).parent)],
                                  stderr=subprocess.PIPE, text=True) for kind in ("with", "without")]
    errors = [process.communicate()[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], errors
    assert not any("Traceback" in error for error in errors)
    assert sum("was filled by another run while this one was generating" in error for error in errors) <= 1
    winner = json.loads((out_dir / "params.json").read_text())["prompt"]
    expected = {"video.mp4", "depth.mp4", "side_by_side.mp4", "input_image.png", "input_depth.png", "params.json"}
    expected |= {"trajectory.json", "trajectory.png"} if winner == "with" else set()
    assert {path.name for path in out_dir.iterdir()} == expected
    assert [path.name for path in tmp_path.iterdir()] == ["run"]
