"""Hostile inputs to `dualcam generate`, run in-process through the command line: each one is refused with exit code
and message before any model loads, and leaves the files as they were (see docs/limits.md)."""
from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffsynth_dualcam import cli, limits
from diffsynth_dualcam.camera import CameraTrajectory

T2V = ["generate", "--tiny", "--t2v", "--preset", "pan_left"]
I2V = ["generate", "--tiny", "--image", "{w}/image.png", "--depth", "{w}/depth.png"]
RE10K_ROW = "0 0.5 0.9 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 0"


def png_claiming_size(path: Path, width: int, height: int) -> None:
    """A small PNG whose header claims width x height: a decompression bomb's header, without the bomb."""
    Image.new("L", (16, 16)).save(path)
    data = bytearray(path.read_bytes())
    header = struct.pack(">II", width, height) + bytes(data[24:29])  # IHDR: width, height, depth, colour, ...
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    path.write_bytes(bytes(data))


def trajectory_document(change) -> str:
    c2w = np.tile(np.eye(4), (2, 1, 1))
    c2w[1, 0, 3] = 0.1
    document = json.loads(json.dumps({"format": "dualcam-trajectory", "version": 1, "source_size": [640, 360],
                                      "frames": [{"c2w": pose.tolist(), "intrinsics": [0.5, 0.9, 0.5, 0.5]}
                                                 for pose in c2w]}))
    change(document)
    return json.dumps(document)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Every attack's input files, made once."""
    w = tmp_path_factory.mktemp("attacks")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(w / "image.png")
    Image.fromarray(rng.integers(0, 256, (64, 96), dtype=np.uint8)).save(w / "depth.png")
    png_claiming_size(w / "bomb.png", 20000, 20000)
    png_claiming_size(w / "large.png", 8200, 8200)
    os.mkfifo(w / "fifo.txt")
    (w / "underscore.txt").write_text(RE10K_ROW.replace("0.5 0.9", "0_889 0.9", 1) + "\n")
    (w / "arabic.txt").write_text(RE10K_ROW.replace("0.9", "\u0660.\u0669", 1) + "\n")
    (w / "rows.txt").write_text((RE10K_ROW + "\n") * (limits.MAX_TRAJECTORY_FRAMES + 1))
    with open(w / "huge.txt", "wb") as file:  # sparse: no disk used
        file.truncate(limits.MAX_TRAJECTORY_BYTES + 1)
    (w / "source_size.txt").write_text(f"dualcam-trajectory source_size=\u0666\u0664\u0660x360\n{RE10K_ROW}\n")
    changes = {
        "string.json": lambda d: d["frames"][0].__setitem__("intrinsics", ["0.5", 0.9, 0.5, 0.5]),
        "source_1e30.json": lambda d: d.__setitem__("source_size", [1e30, 360]),
        "source_2_70.json": lambda d: d.__setitem__("source_size", [2**70, 360]),
        "focal.json": lambda d: d["frames"][1].__setitem__("intrinsics", [1e308, 0.9, 0.5, 0.5]),
        "principal.json": lambda d: d["frames"][0].__setitem__("intrinsics", [0.5, 0.9, 1e300, 0.5]),
        "position.json": lambda d: d["frames"][1]["c2w"][0].__setitem__(3, 1e300),
    }
    for name, change in changes.items():
        (w / name).write_text(trajectory_document(change))
    digits = trajectory_document(lambda d: d["frames"][0].__setitem__("intrinsics", [12345, 0.9, 0.5, 0.5]))
    (w / "digits.json").write_text(digits.replace("12345", "1" * 5000, 1))
    (w / "nan.json").write_text(trajectory_document(lambda d: None).replace("0.9", "NaN", 1))
    (w / "utf16.jsonl").write_bytes('{"name": "a", "t2v": true}\n'.encode("utf-16"))
    (w / "nested.jsonl").write_text("[" * 100_000 + "]" * 100_000)
    (w / "big_clip.jsonl").write_text('{"name": "a", "t2v": true, "size": [16000, 16000]}\n')
    old_run = w / "old_run"
    old_run.mkdir()
    for name in ("video.mp4", "depth.mp4", "params.json"):
        (old_run / name).write_text(f"old {name}")
    (old_run / "side_by_side.mp4").mkdir()
    return w


ATTACKS = [
    # (command line, exit code, error text, files that must be unchanged)
    (T2V + ["--size", "16000x16000"], 2, "--size: 16000x16000 is larger than the limit of 2048 pixels per side", []),
    (T2V + ["--frames", "100001"], 2, "--frames: 100001 frames are more than the limit of 4001", []),
    (T2V + ["--size", "720x480", "--frames", "1001", "--chunk-frames", "1001"], 2,
     "--size / --frames / --chunk-frames: a clip of 1001 frames at 720x480 is 345,945,600 pixels, more than the "
     "limit of 111,513,600", []),
    (T2V + ["--steps", "1000000000"], 2, "--steps: 1000000000 steps are more than the limit of 1000", []),
    (T2V + ["--cfg", "1e308"], 2, "--cfg: guidance scale must be a number between -100 and 100", []),
    (T2V + ["--speed", "1e308"], 2, "--preset pan_left at --speed 1e+308: frame 1: c2w contains NaN or inf", []),
    (T2V + ["--source-size", "99999999x360"], 2, "source_size must be (width, height) in positive whole pixels "
     "of at most 65536", []),
    (["generate", "--tiny", "--batch-file", "{w}/big_clip.jsonl"], 2,
     "clip 'a': --size: 16000x16000 is larger than the limit of 2048", ["big_clip.jsonl"]),
    (["generate", "--tiny", "--image", "{w}/bomb.png", "--preset", "pan_left"], 2,
     "--image: {w}/bomb.png: the image is larger than the limit of 67,108,864 pixels", ["bomb.png"]),
    (["generate", "--tiny", "--image", "{w}/large.png", "--preset", "pan_left"], 2,
     "--image: {w}/large.png: the image is 8200x8200, more than the limit of 67,108,864 pixels", ["large.png"]),
    (I2V + ["--trajectory", "{w}/fifo.txt"], 2, "{w}/fifo.txt: not a regular file", []),
    (I2V + ["--trajectory", "/dev/zero"], 2, "/dev/zero: not a regular file", []),
    (I2V + ["--trajectory", "{w}/huge.txt"], 2, "{w}/huge.txt: 67,108,865 bytes, more than the limit of 67,108,864",
     ["huge.txt"]),
    (I2V + ["--trajectory", "{w}/rows.txt"], 2, "{w}/rows.txt: 100,001 frames, more than the limit of 100,000",
     ["rows.txt"]),
    (I2V + ["--trajectory", "{w}/underscore.txt"], 2, "row 0 holds a value that is not a number: '0 0_889",
     ["underscore.txt"]),
    (I2V + ["--trajectory", "{w}/arabic.txt"], 2, "row 0 holds a value that is not a number", ["arabic.txt"]),
    (I2V + ["--trajectory", "{w}/source_size.txt"], 2, "first line: source_size must be WIDTHxHEIGHT", []),
    (I2V + ["--trajectory", "{w}/string.json"], 2, 'frame 0 intrinsics must be numbers, got "0.5" among them',
     ["string.json"]),
    (I2V + ["--trajectory", "{w}/source_1e30.json"], 2, "source_size must be (width, height) in positive whole "
     "pixels of at most 65536, got [1e+30, 360]", []),
    (I2V + ["--trajectory", "{w}/source_2_70.json"], 2, "of at most 65536, got [1180591620717411303424, 360]", []),
    (I2V + ["--trajectory", "{w}/digits.json"], 2, "{w}/digits.json: invalid JSON (Exceeds the limit (4300 digits)",
     ["digits.json"]),
    (I2V + ["--trajectory", "{w}/nan.json"], 2, "{w}/nan.json: invalid JSON (NaN is not a number JSON allows)", []),
    (I2V + ["--trajectory", "{w}/focal.json"], 2, "frame 1: focal lengths must be positive, between 0.001 and 1000",
     []),
    (I2V + ["--trajectory", "{w}/principal.json"], 2, "frame 0: principal point (cx, cy) = (1e+300, 0.5) is more "
     "than 10 image sides from the centre", []),
    (I2V + ["--trajectory", "{w}/position.json"], 2, "frame 1: camera position [1e+300, 0.0, 0.0] is farther than "
     "1e+06 scene units", []),
    (["generate", "--tiny", "--batch-file", "{w}/utf16.jsonl"], 2, "--batch-file {w}/utf16.jsonl: not UTF-8 text",
     ["utf16.jsonl"]),
    (["generate", "--tiny", "--batch-file", "{w}/nested.jsonl"], 2,
     "--batch-file {w}/nested.jsonl: not valid JSON (nested too deeply)", []),
    (T2V + ["--out", "{w}/old_run"], 2, "--out: {w}/old_run/side_by_side.mp4 is a folder, where a run saves its "
     "side_by_side.mp4", ["old_run/video.mp4", "old_run/depth.mp4", "old_run/params.json"]),
]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(path.relative_to(folder)): (path.read_bytes() if path.is_file() and path.stat().st_size < 2**20
                                            else None) for path in sorted(folder.rglob("*"))}


@pytest.mark.parametrize(("argv", "code", "message", "unchanged"), ATTACKS,
                         ids=[" ".join(attack[0][-2:]) for attack in ATTACKS])
def test_attack_is_refused_before_models_load(argv, code, message, unchanged, workspace, tmp_path, monkeypatch,
                                              capsys):
    from diffsynth_dualcam.cli import generate as generate_cli
    from diffsynth_dualcam.pipeline import tiny
    from diffsynth_dualcam.pipeline.dualcam import DualCamCtrlPipeline

    def no_models(*args, **kwargs):
        pytest.fail("a model was loaded before the input was refused")

    for target, name in ((generate_cli, "build_pipeline"), (generate_cli, "load_depth_estimator"),
                         (tiny, "tiny_pipeline"), (DualCamCtrlPipeline, "from_pretrained")):
        monkeypatch.setattr(target, name, no_models)
    monkeypatch.chdir(tmp_path)  # the default --out, outputs/generate, goes here
    argv = [arg.format(w=workspace) for arg in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    kept = {name: (workspace / name).read_bytes() for name in unchanged}
    before = snapshot(workspace)
    assert cli.main(argv) == code
    error = capsys.readouterr().err
    assert message.format(w=workspace) in error and "Traceback" not in error
    assert {name: (workspace / name).read_bytes() for name in unchanged} == kept
    assert snapshot(workspace) == before
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("arguments", "message"), [
    ({"height": 16000, "width": 16000}, "16000x16000 is larger than the limit of 2048 pixels per side"),
    ({"num_frames": 100001}, "100001 frames are more than the limit of 4001"),
    ({"height": 1024, "width": 1024, "num_frames": 201}, "a clip of 201 frames at 1024x1024"),
    ({"num_inference_steps": 10**9}, "num_inference_steps: 1000000000 steps are more than the limit of 1000"),
    ({"cfg_scale": 1e308}, "cfg_scale: guidance scale must be a number between -100 and 100"),
])
def test_pipeline_call_refuses_unbounded_work_before_any_model_runs(arguments, message, monkeypatch):
    from diffsynth_dualcam.pipeline import units
    from diffsynth_dualcam.pipeline.tiny import tiny_pipeline

    pipe = tiny_pipeline()
    for unit in pipe.units[1:]:  # only the input check may run
        monkeypatch.setattr(unit, "process", lambda *args, **kwargs: pytest.fail("a unit ran after the check"))
    assert isinstance(pipe.units[0], units.DualCamUnit_InputChecker)
    camera = CameraTrajectory(np.tile(np.eye(4), (2, 1, 1)), np.tile([0.7, 1.0, 0.5, 0.5], (2, 1)))
    with pytest.raises(ValueError, match=message):
        pipe("x", t2v=True, camera=camera, **{"height": 64, "width": 96, "num_frames": 5, **arguments})


def test_a_file_system_error_is_one_line_with_exit_code_1(monkeypatch, capsys):
    from diffsynth_dualcam.cli import generate as generate_cli

    def full_disk(args):
        raise OSError(28, "No space left on device", "outputs/run/video.mp4")

    monkeypatch.setattr(generate_cli, "run", full_disk)
    assert cli.main(["generate", "--tiny", "--t2v", "--preset", "pan_left"]) == 1
    error = capsys.readouterr().err
    assert error == "dualcam generate: error: [Errno 28] No space left on device: 'outputs/run/video.mp4'\n"
