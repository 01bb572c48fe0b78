"""End to end on the CPU: synthetic dataset -> `dualcam train` stage 1 -> stage 2 -> pipeline generation."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import torch
import yaml
from PIL import Image
from safetensors import safe_open

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.cli import main
from diffsynth_dualcam.data.synthetic import write_synthetic_dataset
from diffsynth_dualcam.models.checkpoints import load_dit
from diffsynth_dualcam.train import load_config
from diffsynth_dualcam.train.stage import stage_pipeline as build_pipeline

FROZEN_BY_BLOCKS = ("patch_embedding.", "text_embedding.", "time_embedding.", "time_projection.", "head.",
                    "img_emb.", "control_adapter.")


def write_config(path: Path, data_root: Path, output_dir: Path, validation_steps: int, validation_frames: int = 5,
                 **train) -> Path:
    config = {
        "data": {"root": str(data_root), "height": 32, "width": 48, "num_frames": 5, "stride": 2, "num_workers": 0},
        "model": {"tiny_seed": 0},
        "train": {"max_steps": 2, "save_steps": 2, "learning_rate": 1e-4, "mixed_precision": "no",
                  "use_gradient_checkpointing": False, "drop_loss_topk": 30, "output_dir": str(output_dir), **train},
        "validation": {"every_steps": validation_steps, "height": 32, "width": 48, "num_frames": validation_frames,
                       "num_inference_steps": 2},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def logged(output_dir: Path) -> dict[str, list[float]]:
    """loss.csv as {key: values in step order}."""
    with open(output_dir / "loss.csv") as file:
        rows = list(csv.DictReader(file))
    values: dict[str, list[float]] = {}
    for row in sorted(rows, key=lambda row: int(row["step"])):
        values.setdefault(row["key"], []).append(float(row["value"]))
    return values


def test_two_stages_then_generate(tmp_path, capsys):
    from diffsynth.core import ModelConfig

    from diffsynth_dualcam import register_checkpoint
    from diffsynth_dualcam.pipeline import DualCamCtrlPipeline
    from diffsynth_dualcam.pipeline.tiny import tiny_dit_config, tiny_pipeline, write_tiny_model_files

    data_root = tmp_path / "data"
    write_synthetic_dataset(data_root, num_clips=3, num_frames=9, width=96, height=64)
    assert main(["check-dataset", str(data_root), "--num-frames", "9"]) == 0
    # Stage 1 fits one repeated batch: a single 9-frame clip (5 frames at stride 2 always start at frame 0), no
    # flip, and the same timestep and noise at every step.
    repeated_root = tmp_path / "one_clip"
    write_synthetic_dataset(repeated_root, num_clips=1, num_frames=9, width=96, height=64, seed=1)

    stage_one = tmp_path / "stage1"
    # The validation clip is longer than the training clips: their 5-camera path is stretched over its 9 frames.
    config = write_config(tmp_path / "stage1.yaml", repeated_root, stage_one, 4, validation_frames=9,
                          stage="decoupled", trainable="blocks", max_steps=4, save_steps=4, learning_rate=2e-3,
                          fixed_noise_seed=0)
    assert main(["train", "--config", str(config), "--set", "data.flip_probability=0"]) == 0
    checkpoint = stage_one / "step-4.safetensors"
    assert f"final checkpoint: {checkpoint}" in capsys.readouterr().out
    values = logged(stage_one)
    assert set(values) == {"loss", "rgb_loss", "depth_loss", "grad_norm"}
    losses = values["loss"]
    assert len(losses) == 4 and all(math.isfinite(loss) for loss in losses), losses
    assert sum(losses[-2:]) < sum(losses[:2]), losses
    assert all(math.isfinite(norm) and norm > 0 for norm in values["grad_norm"])
    assert {path.name for path in (stage_one / "validation" / "step-4").iterdir()} >= {"video.mp4", "depth.mp4"}

    # Step 0 of stage 1 (the same start `dualcam train` built): every depth block a copy of its RGB block, the RGB
    # weights those of the tiny model, not its random depth blocks.
    initial = build_pipeline(load_config(config), "cpu").dit
    tiny = tiny_pipeline(seed=0).dit
    for k, index in enumerate(initial.control_block_index):
        for (name, depth), (_, rgb) in zip(initial.control_blocks[k].state_dict().items(),
                                          initial.blocks[index].state_dict().items()):
            assert torch.equal(depth, rgb), (k, name)
        assert torch.equal(initial.blocks[index].self_attn.q.weight, tiny.blocks[index].self_attn.q.weight)
        assert not torch.equal(initial.control_blocks[k].self_attn.q.weight, tiny.control_blocks[k].self_attn.q.weight)
    trained = load_dit(checkpoint)
    assert trained.config["rgb_inject_blocks"] == []
    # `trainable: blocks`: the embeddings, head and camera adapter are where they started, both branches moved apart.
    start, end = initial.state_dict(), trained.state_dict()
    assert all(torch.equal(end[name], start[name]) for name in start if name.startswith(FROZEN_BY_BLOCKS))
    for prefix in ("blocks.", "control_blocks."):
        assert any(not torch.equal(end[name], start[name]) for name in start if name.startswith(prefix)), prefix
    assert not torch.equal(trained.blocks[0].ffn[0].weight, trained.control_blocks[0].ffn[0].weight)

    stage_two = tmp_path / "stage2"
    config = write_config(tmp_path / "stage2.yaml", data_root, stage_two, 0, stage="fusion", trainable="lora",
                          lora_rank=4)
    assert main(["train", "--config", str(config), "--set", f"model.dit={checkpoint}"]) == 0
    assert all(math.isfinite(loss) for loss in logged(stage_two)["loss"])
    final = stage_two / "step-2.safetensors"
    dit = load_dit(final)
    layout = tiny_dit_config()
    assert len(dit.rgb_zero_inits) == len(layout["rgb_inject_blocks"]) > 0
    assert len(dit.control_zero_inits) == len(layout["depth_inject_blocks"]) > 0
    # The fusion modules started as zero output projections and were trained.
    for fusion in [*dit.rgb_zero_inits, *dit.control_zero_inits]:
        assert torch.count_nonzero(fusion.proj_out.weight) > 0

    model_configs, tokenizer_config = write_tiny_model_files(tmp_path / "tiny")
    register_checkpoint(final)
    model_configs = [ModelConfig(path=str(final))] + model_configs[1:]
    pipe = DualCamCtrlPipeline.from_pretrained(model_configs, tokenizer_config, device="cpu", torch_dtype=torch.float32)
    assert pipe.dit.config == dit.config
    reloaded = pipe.dit.state_dict()
    with safe_open(str(final), framework="pt") as file:
        assert set(file.keys()) == set(reloaded)
        for name in file.keys():
            assert torch.equal(reloaded[name], file.get_tensor(name)), name
    image = Image.open(data_root / "clip000" / "frames" / "00000.png")
    depth = Image.open(data_root / "clip000" / "depth" / "00000.png")
    output = pipe(prompt="", input_image=image, input_depth=depth, camera=CameraTrajectory.preset("orbit_left", 5),
                  height=32, width=48, num_frames=5, num_inference_steps=2, seed=0, tiled=False,
                  progress_bar_cmd=lambda steps: steps)
    assert len(output.video) == 5 and len(output.depth_video) == 5
