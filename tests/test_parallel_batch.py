"""`dualcam generate --batch-file`: batch files, the per-process share under torchrun, resuming, and errors."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffsynth_dualcam.cli import generate as generate_cli
from diffsynth_dualcam.cli import main
from diffsynth_dualcam.cli.batch import (
    clip_arguments,
    job_arguments,
    load_jobs,
    own_default_options,
    process_share,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def write_jsonl(path: Path, jobs: list[dict], header: str = "# clips\n\n") -> Path:
    path.write_text(header + "\n".join(json.dumps(job) for job in jobs) + "\n")
    return path


@pytest.fixture
def batch_file(tmp_path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.tile(np.linspace(0, 255, 64), (48, 1)).astype(np.uint8)).save(tmp_path / "a_depth.png")
    jobs = [
        {"name": "orbit", "image": "a.png", "depth": "a_depth.png", "preset": "orbit_left", "prompt": "a room"},
        {"name": "t2v-dolly", "t2v": True, "preset": "dolly_in", "prompt": "a street", "seed": 3},
        {"name": "t2v-pan", "t2v": True, "preset": "pan_left", "steps": 2},
    ]
    return write_jsonl(tmp_path / "jobs.jsonl", jobs)


def test_load_jobs_reads_lines_and_resolves_paths_against_the_file(batch_file: Path) -> None:
    jobs = load_jobs(batch_file)
    assert [job["name"] for job in jobs] == ["orbit", "t2v-dolly", "t2v-pan"]
    assert jobs[0]["image"] == str(batch_file.parent / "a.png")
    assert jobs[1]["preset"] == "dolly_in"
    array_file = batch_file.with_suffix(".json")
    array_file.write_text(json.dumps([{"name": "x", "preset": "static", "image": "/abs/i.png"}]))
    assert load_jobs(array_file) == [{"name": "x", "preset": "static", "image": "/abs/i.png"}]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"name": "a", "preset": "static", "colour": "red"}\n', r"line 1: unknown keys \['colour'\]"),
        ('{"name": "a"}\n{"name": "a"}\n', "line 2: the name 'a' is used twice"),
        ('{"name": "../up"}\n', "line 1: 'name' must be a folder name"),
        ('{"preset": "static"}\n', "line 1: 'name' must be a folder name"),
        ("# nothing\n\n", "no clips in the file"),
        ('{"name": "a",\n', "line 1 is not a JSON object"),
        ('[{"name": "a"}, 3]', "entry 2: expected a JSON object, got int"),
        ('{"name": "a", "t2v": "yes"}\n', "line 1: 't2v' must be true or false \\(or null\\), got \"yes\""),
        ('{"name": "a", "cfg": true}\n', "line 1: 'cfg' must be a value, not true or false \\(or null\\), got true"),
    ],
)
def test_bad_batch_files_name_the_line_and_the_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_jobs(path)


def test_missing_batch_file() -> None:
    with pytest.raises(FileNotFoundError, match="--batch-file: no such file"):
        load_jobs("does/not/exist.jsonl")


def test_job_arguments_become_generate_options() -> None:
    job = {"name": "a", "preset": "orbit_left", "t2v": True, "size": [96, 64], "seed": 3, "source_size": "640x360",
           "prompt": "two words", "negative_prompt": None}
    assert job_arguments(job) == [
        "--preset=orbit_left", "--t2v", "--size=96x64", "--seed=3", "--source-size=640x360", "--prompt=two words",
    ]
    with pytest.raises(ValueError, match="size must be"):
        job_arguments({"name": "a", "size": [1, 2, 3]})


def test_a_clip_sets_its_inputs_and_its_camera_as_a_whole() -> None:
    assert own_default_options({"name": "a", "seed": 1}) == set()
    assert own_default_options({"name": "a", "image": "b.png"}) == {"depth", "t2v"}
    assert own_default_options({"name": "a", "t2v": False, "image": "b.png"}) == {"depth", "t2v"}
    assert own_default_options({"name": "a", "preset": "static", "steps": None}) == {"trajectory", "source_size",
                                                                                      "speed", "resample_camera",
                                                                                      "steps"}


def _command_line(*options: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    generate_cli.add_arguments(parser)
    return parser.parse_args(["--tiny", "--device", "cpu", "--out", "outputs/batch", *options])


def test_clip_options_override_the_command_line_by_group_and_null_restores_the_own_default() -> None:
    image_to_video = _command_line("--image", "a.png", "--depth", "a_depth.png", "--preset", "orbit_left",
                                   "--steps", "3", "--negative-prompt", "blurry")
    own_image = clip_arguments(image_to_video, {"name": "b", "image": "b.png"})
    assert (own_image.image, own_image.depth, own_image.t2v) == (Path("b.png"), None, False)
    assert (own_image.preset, own_image.steps, own_image.out) == ("orbit_left", 3, Path("outputs/batch/b"))
    text = clip_arguments(image_to_video, {"name": "t", "t2v": True, "trajectory": "path.txt", "steps": None})
    assert (text.image, text.depth, text.t2v, text.trajectory, text.preset) == (None, None, True, Path("path.txt"),
                                                                               None)
    assert text.steps is None  # generate's own default (the model's), not the command line's 3
    dashed = clip_arguments(image_to_video, {"name": "d", "negative_prompt": "-blurry,-lowres"})
    assert (dashed.negative_prompt, dashed.image) == ("-blurry,-lowres", Path("a.png"))

    text_to_video = _command_line("--t2v", "--preset", "static")
    from_image = clip_arguments(text_to_video, {"name": "i", "t2v": False, "image": "a.png"})
    assert (from_image.t2v, from_image.image) == (False, Path("a.png"))
    assert clip_arguments(text_to_video, {"name": "s", "seed": 7}).t2v is True


def test_process_shares_cover_every_clip_once() -> None:
    shares = [process_share(7, rank, 3) for rank in range(3)]
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]
    with pytest.raises(ValueError, match="rank 3 outside a world of 3"):
        process_share(7, 3, 3)


def test_two_processes_split_the_batch_and_a_rerun_resumes(batch_file, tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "out"
    argv = ["generate", "--batch-file", str(batch_file), "--tiny", "--device", "cpu", "--out", str(out),
            "--frames", "5", "--size", "64x48", "--steps", "1"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(argv) == 0
    assert "attention: " in capsys.readouterr().err  # the kernel in use is reported at the start
    assert sorted(path.name for path in out.iterdir()) == ["t2v-dolly"]
    params = json.loads((out / "t2v-dolly" / "params.json").read_text())
    assert (params["seed"], params["num_inference_steps"], params["t2v"]) == (3, 1, True)

    monkeypatch.setenv("RANK", "0")
    assert main(argv) == 0
    assert sorted(path.name for path in out.iterdir()) == ["orbit", "t2v-dolly", "t2v-pan"]
    # Options on the command line are defaults; the clip's own "steps" wins.
    assert json.loads((out / "t2v-pan" / "params.json").read_text())["num_inference_steps"] == 2
    assert json.loads((out / "orbit" / "params.json").read_text())["input_image"] is not None

    capsys.readouterr()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "orbit: already done" in printed and "t2v-pan: already done" in printed
    assert "0 of 3 clips to generate" in printed


def test_a_bad_clip_fails_before_models_load_with_exit_code_2(tmp_path, capsys) -> None:
    jobs = [{"name": "good", "t2v": True, "preset": "static"}, {"name": "bad", "t2v": True, "preset": "wobble"}]
    path = write_jsonl(tmp_path / "jobs.jsonl", jobs)
    out = tmp_path / "out"
    code = main(["generate", "--batch-file", str(path), "--tiny", "--device", "cpu", "--out", str(out)])
    assert code == 2
    assert "clip 'bad'" in capsys.readouterr().err
    assert not out.exists()


def test_clips_without_depth_get_it_from_the_depth_model(batch_file, tmp_path) -> None:
    """A clip's own image never takes the command line's depth map: without a depth of its own it is estimated."""
    Image.open(batch_file.parent / "a.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "b.png")
    jobs = [{"name": "estimated", "image": "b.png", "preset": "pan_left"},
            {"name": "given", "preset": "pan_left"}]
    path = write_jsonl(batch_file.parent / "depth_jobs.jsonl", jobs)
    out = tmp_path / "out"
    assert main(["generate", "--batch-file", str(path), "--tiny", "--device", "cpu", "--out", str(out),
                 "--image", str(tmp_path / "a.png"), "--depth", str(tmp_path / "a_depth.png"),
                 "--frames", "5", "--size", "64x48", "--steps", "1"]) == 0
    estimated = json.loads((out / "estimated" / "params.json").read_text())
    given = json.loads((out / "given" / "params.json").read_text())
    assert (estimated["depth_estimated"], given["depth_estimated"]) == (True, False)
    seen = [np.asarray(Image.open(out / name / "input_image.png")) for name in ("estimated", "given")]
    np.testing.assert_array_equal(seen[0], seen[1][:, ::-1])  # each clip was conditioned on its own image


def test_a_clip_longer_than_its_chunk_is_chained(batch_file, tmp_path) -> None:
    jobs = [{"name": "long", "image": "a.png", "depth": "a_depth.png", "preset": "orbit_left", "frames": 9,
             "chunk_frames": 5},
            {"name": "short", "t2v": True, "preset": "pan_left"}]
    path = write_jsonl(batch_file.parent / "long_jobs.jsonl", jobs)
    out = tmp_path / "out"
    assert main(["generate", "--batch-file", str(path), "--tiny", "--device", "cpu", "--out", str(out),
                 "--frames", "5", "--size", "64x48", "--steps", "1"]) == 0
    long = json.loads((out / "long" / "params.json").read_text())
    assert [clip["frames"] for clip in long["clips"]] == [[0, 4], [4, 8]]
    assert (out / "long" / "world.ply").is_file() and not (out / ".long.clips").exists()
    assert "clips" not in json.loads((out / "short" / "params.json").read_text())
    assert not (out / "short" / "world.ply").exists()
