"""End to end on the CPU: synthetic dataset -> `dualcam train` stage 1 -> stage 2 -> pipeline generation."""
from __future__ import annotations

import csv
from pathlib import Path

import torch
import yaml
from PIL import Image

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.checkpoints import load_dit
from diffsynth_dualcam.cli import main
from diffsynth_dualcam.data.synthetic import write_synthetic_dataset


def write_config(path: Path, data_root: Path, output_dir: Path, validation_steps: int, **train) -> Path:
    config = {
        "data": {"root": str(data_root), "height": 32, "width": 48, "num_frames": 5, "stride": 2, "num_workers": 0},
        "model": {"tiny_seed": 0},
        "train": {"max_steps": 2, "save_steps": 2, "learning_rate": 1e-4, "mixed_precision": "no",
                  "use_gradient_checkpointing": False, "drop_loss_topk": 30, "output_dir": str(output_dir), **train},
        "validation": {"every_steps": validation_steps, "height": 32, "width": 48, "num_frames": 5,
                       "num_inference_steps": 2},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_two_stages_then_generate(tmp_path, capsys):
    from diffsynth.core import ModelConfig

    from diffsynth_dualcam import register_checkpoint
    from diffsynth_dualcam.pipeline import DualCamCtrlPipeline
    from diffsynth_dualcam.testing import tiny_dit_config, write_tiny_model_files

    data_root = tmp_path / "data"
    write_synthetic_dataset(data_root, num_clips=3, num_frames=9, width=96, height=64)
    assert main(["check-dataset", str(data_root), "--num-frames", "9"]) == 0

    stage_one = tmp_path / "stage1"
    config = write_config(tmp_path / "stage1.yaml", data_root, stage_one, 2, stage="decoupled")
    assert main(["train", "--config", str(config)]) == 0
    checkpoint = stage_one / "step-2.safetensors"
    assert f"final checkpoint: {checkpoint}" in capsys.readouterr().out
    assert load_dit(checkpoint).config["rgb_inject_blocks"] == []
    with open(stage_one / "loss.csv") as file:
        rows = list(csv.DictReader(file))
    assert {row["key"] for row in rows} == {"loss", "rgb_loss", "depth_loss"}
    assert [row["step"] for row in rows if row["key"] == "loss"] == ["1", "2"]
    assert {path.name for path in (stage_one / "validation" / "step-2").iterdir()} >= {"video.mp4", "depth.mp4"}

    stage_two = tmp_path / "stage2"
    config = write_config(tmp_path / "stage2.yaml", data_root, stage_two, 0, stage="fusion", trainable="lora",
                          lora_rank=4)
    assert main(["train", "--config", str(config), "--set", f"model.dit={checkpoint}"]) == 0
    final = stage_two / "step-2.safetensors"
    dit = load_dit(final)
    layout = tiny_dit_config()
    assert len(dit.rgb_zero_inits) == len(layout["rgb_inject_blocks"]) > 0
    assert len(dit.control_zero_inits) == len(layout["depth_inject_blocks"]) > 0

    model_configs, tokenizer_config = write_tiny_model_files(tmp_path / "tiny")
    register_checkpoint(final)
    model_configs = [ModelConfig(path=str(final))] + model_configs[1:]
    pipe = DualCamCtrlPipeline.from_pretrained(model_configs, tokenizer_config, device="cpu", torch_dtype=torch.float32)
    assert pipe.dit.config == dit.config
    image = Image.open(data_root / "clip000" / "frames" / "00000.png")
    depth = Image.open(data_root / "clip000" / "depth" / "00000.png")
    output = pipe(prompt="", input_image=image, input_depth=depth, camera=CameraTrajectory.preset("orbit_left", 5),
                  height=32, width=48, num_frames=5, num_inference_steps=2, seed=0, tiled=False,
                  progress_bar_cmd=lambda steps: steps)
    assert len(output.video) == 5 and len(output.depth_video) == 5
