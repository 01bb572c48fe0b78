"""Resuming `dualcam train`: an interrupted run plus its resumption equals the uninterrupted run; the dead run's
later files and staging debris go; a folder of another run is refused; a finished run is left alone."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from diffsynth_dualcam.cli import main
from diffsynth_dualcam.data.synthetic import write_synthetic_dataset
from diffsynth_dualcam.train import load_config
from diffsynth_dualcam.train.config import save_config
from diffsynth_dualcam.train.logger import DualCamModelLogger


class Killed(Exception):
    """Stands for the process dying at a given point."""


def write_config(path: Path, data_root: Path, output_dir: Path) -> Path:
    config = {
        "data": {"root": str(data_root), "height": 32, "width": 48, "num_frames": 5, "stride": 2, "num_workers": 0},
        "model": {"tiny_seed": 0},
        # Accumulation, a shuffled 2-clip dataset with flips, LoRA-free full training and random noise: the data
        # position, the optimizer moments, the generators and the accumulation counter all have to come back.
        "train": {"max_steps": 4, "save_steps": 2, "gradient_accumulation_steps": 2, "learning_rate": 1e-3,
                  "mixed_precision": "no", "use_gradient_checkpointing": False, "trainable": "blocks",
                  "output_dir": str(output_dir)},
        "validation": {"every_steps": 2, "height": 32, "width": 48, "num_frames": 5, "num_inference_steps": 1},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def loss_rows(output_dir: Path) -> list[tuple[int, str, float]]:
    with open(output_dir / "loss.csv") as file:
        return sorted((int(row["step"]), row["key"], float(row["value"])) for row in csv.DictReader(file))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    write_synthetic_dataset(root, num_clips=2, num_frames=9, width=96, height=64)
    return root


def test_interrupted_run_plus_resumption_equals_the_uninterrupted_run(tmp_path, data_root, monkeypatch, capsys):
    straight = tmp_path / "straight"
    assert main(["train", "--config", str(write_config(tmp_path / "a.yaml", data_root, straight))]) == 0
    progress = capsys.readouterr().err
    assert "4/4 [" in progress and "/8 [" not in progress  # optimizer steps, not the 8 micro-batches

    resumed = tmp_path / "resumed"
    config = write_config(tmp_path / "b.yaml", data_root, resumed)
    save_state = DualCamModelLogger.save_state

    def dies_while_saving_step_4(self, accelerator):
        if self.num_steps == 4:  # the DiT of step 4 and its validation are written, its state is not
            (Path(self.output_path) / "state" / ".step-4.partial").mkdir()
            (Path(self.output_path) / ".step-4.safetensors.x1y2.safetensors").write_bytes(b"\0corrupt")
            raise Killed
        save_state(self, accelerator)

    monkeypatch.setattr(DualCamModelLogger, "save_state", dies_while_saving_step_4)
    with pytest.raises(Killed):
        main(["train", "--config", str(config)])
    monkeypatch.undo()
    assert (resumed / "step-4.safetensors").is_file() and (resumed / "validation" / "step-4").is_dir()
    assert {row[0] for row in loss_rows(resumed)} == {1, 2, 3, 4}
    assert sorted(path.name for path in (resumed / "state").iterdir()) == [".step-4.partial", "step-2"]
    capsys.readouterr()

    assert main(["train", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "resuming after step 2" in out
    assert str(resumed / "step-4.safetensors") in out.split("removed what the interrupted run left")[1]

    for name in ("step-2.safetensors", "step-4.safetensors"):
        expected, actual = load_file(straight / name), load_file(resumed / name)
        assert set(actual) == set(expected)
        for key in expected:
            torch.testing.assert_close(actual[key], expected[key], rtol=1e-5, atol=1e-6, msg=f"{name} {key}")
    # Training moved the weights, so the comparison above is not of two untouched copies.
    start, end = load_file(straight / "step-2.safetensors"), load_file(straight / "step-4.safetensors")
    assert any(not torch.equal(start[key], end[key]) for key in start)

    rows, expected_rows = loss_rows(resumed), loss_rows(straight)
    assert len({(step, key) for step, key, _ in rows}) == len(rows) == 16  # 4 steps x 4 keys, no duplicates
    assert [row[:2] for row in rows] == [row[:2] for row in expected_rows]
    torch.testing.assert_close(torch.tensor([row[2] for row in rows]), torch.tensor([row[2] for row in expected_rows]),
                               rtol=1e-5, atol=1e-7)
    # Only complete results remain: no staging debris, one (the newest) saved state.
    assert not list(resumed.glob(".*")) and sorted(p.name for p in (resumed / "state").iterdir()) == ["step-4"]
    assert sorted(p.name for p in (resumed / "validation").iterdir()) == ["step-2", "step-4"]

    # Run again: finished, nothing changes.
    before = (resumed / "loss.csv").read_bytes()
    assert main(["train", "--config", str(config)]) == 0
    assert "finished at step 4: nothing to train" in capsys.readouterr().out
    assert (resumed / "loss.csv").read_bytes() == before


def test_a_folder_of_another_run_is_refused(tmp_path, data_root, capsys):
    output_dir = tmp_path / "run"
    config = write_config(tmp_path / "a.yaml", data_root, output_dir)
    save_config(load_config(config, ["train.learning_rate=0.002", "data.num_workers=1"]), output_dir / "config.json")
    recorded = (output_dir / "config.json").read_text()
    (output_dir / "loss.csv").write_text("step,key,value\n1,loss,0.5\n")
    assert main(["train", "--config", str(config)]) == 2
    error = capsys.readouterr().err
    assert f"train.output_dir: {output_dir} holds a run of another config" in error
    # The worker count may change on resuming, the learning rate may not.
    assert "(train.learning_rate: 0.002 there, 0.001 here)" in error
    assert (output_dir / "config.json").read_text() == recorded
    assert (output_dir / "loss.csv").read_text() == "step,key,value\n1,loss,0.5\n"

    (output_dir / "config.json").unlink()
    assert main(["train", "--config", str(config)]) == 2
    assert "holds training files (loss.csv) but no config.json" in capsys.readouterr().err

    # The same config, saved by two processes: this one process may not continue it.
    save_config(load_config(config), output_dir / "config.json")
    state = output_dir / "state" / "step-2"
    state.mkdir(parents=True)
    for index in range(2):
        (state / f"random_states_{index}.pkl").write_bytes(b"")
    assert main(["train", "--config", str(config)]) == 2
    assert "was trained by 2 processes and this one has 1; resume it with 2" in capsys.readouterr().err
    assert (output_dir / "loss.csv").read_text() == "step,key,value\n1,loss,0.5\n"


def test_a_run_killed_before_its_first_complete_checkpoint_starts_over_without_debris(tmp_path):
    from diffsynth_dualcam.train.resume import clear_after, last_complete_step

    run = tmp_path / "run"
    (run / "state" / ".step-2.partial").mkdir(parents=True)  # killed while saving the first state
    (run / "state" / ".step-2.partial" / "optimizer.bin").write_bytes(b"\0")
    (run / "validation" / "step-2").mkdir(parents=True)
    (run / "validation" / ".step-2.partial-123").mkdir()
    for name in ("step-2.safetensors", ".step-2.safetensors.ab12.safetensors", "config.json", "notes.txt"):
        (run / name).write_text("x")
    (run / "loss.csv").write_text("step,key,value\n1,loss,0.5\n2,loss,0.4\n")
    assert last_complete_step(run) == 0  # a staging folder is never a checkpoint
    removed = clear_after(run, 0)
    assert {path.relative_to(run).as_posix() for path in removed} == {
        "state/.step-2.partial", "validation/step-2", "validation/.step-2.partial-123", "step-2.safetensors",
        ".step-2.safetensors.ab12.safetensors", "loss.csv"}
    assert sorted(path.name for path in run.iterdir()) == ["config.json", "loss.csv", "notes.txt", "state",
                                                           "validation"]
    assert (run / "loss.csv").read_text() == "step,key,value\n"
