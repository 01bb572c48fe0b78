"""Training: top-k loss, stage set-up, what trains (full / LoRA / fusion), timestep weighting, LoRA merging."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from diffsynth_dualcam.data import RealEstate10KDataset
from diffsynth_dualcam.data.synthetic import write_synthetic_dataset
from diffsynth_dualcam.testing import tiny_dit_config, tiny_pipeline
from diffsynth_dualcam.train import DualCamTrainingModule, dit_for_stage, drop_topk_mse, load_config, merged_dit
from diffsynth_dualcam.train.losses import dual_flow_matching_loss


def test_drop_topk_mse_golden_values():
    target = torch.tensor([[1.0, -2.0, 3.0, 4.0], [0.5, 0.0, -1.0, 2.0]])
    prediction = torch.zeros_like(target, requires_grad=True)
    # Squared errors: [1, 4, 9, 16] and [0.25, 0, 1, 4]; the mean stays over all 8 elements.
    assert drop_topk_mse(prediction, target).item() == pytest.approx((30 + 5.25) / 8)
    loss = drop_topk_mse(prediction, target, drop_topk=1)
    assert loss.item() == pytest.approx((14 + 1.25) / 8)
    assert drop_topk_mse(prediction, target, drop_topk=2).item() == pytest.approx((5 + 0.25) / 8)
    loss.backward()
    expected_grad = 2 * (prediction.detach() - target) / 8
    expected_grad[0, 3] = 0.0
    expected_grad[1, 3] = 0.0
    torch.testing.assert_close(prediction.grad, expected_grad)
    with pytest.raises(ValueError, match="drop every one"):
        drop_topk_mse(prediction, target, drop_topk=4)


def test_dual_loss_weights_both_branches():
    rgb_target, depth_target = torch.ones(1, 2, 3), torch.full((1, 2, 3), 2.0)
    rgb_velocity, depth_velocity = torch.zeros(1, 2, 3), torch.zeros(1, 2, 3)
    depth_velocity[0, 0, 0] = 12.0  # one outlier: squared error 100
    loss, terms = dual_flow_matching_loss(rgb_velocity, depth_velocity, rgb_target, depth_target, 0.5, 1)
    assert terms == {"rgb_loss": pytest.approx(1.0), "depth_loss": pytest.approx(20.0 / 6)}
    assert loss.item() == pytest.approx(0.5 * (1.0 + 20.0 / 6))


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """A tiny pipeline and one encoded item (32x48, 5 of 9 frames), shared by the tests below."""
    root = tmp_path_factory.mktemp("clips")
    write_synthetic_dataset(root, num_clips=1, num_frames=9)
    dataset = RealEstate10KDataset(root, height=32, width=48, num_frames=5, stride=2, flip_probability=0.0)
    item = dataset.sample(0, np.random.default_rng(0))
    module = DualCamTrainingModule(tiny_pipeline(seed=0), use_gradient_checkpointing=False)
    return item, module.encode(item)


RGB_INJECT, DEPTH_INJECT = tiny_dit_config()["rgb_inject_blocks"], tiny_dit_config()["depth_inject_blocks"]


def staged_module(stage: str, **options) -> DualCamTrainingModule:
    pipe = tiny_pipeline(seed=0)
    pipe.dit = dit_for_stage(pipe.dit, stage, RGB_INJECT, DEPTH_INJECT)
    return DualCamTrainingModule(pipe, use_gradient_checkpointing=False, **options)


def test_decoupled_stage_has_no_fusion_and_fusion_stage_starts_where_it_ended(encoded):
    _, inputs = encoded
    stage_one = staged_module("decoupled").pipe.dit
    assert len(stage_one.rgb_zero_inits) == 0 and len(stage_one.control_zero_inits) == 0
    assert stage_one.config["rgb_inject_blocks"] == [] and stage_one.config["depth_inject_blocks"] == []
    stage_two = dit_for_stage(stage_one, "fusion", RGB_INJECT, DEPTH_INJECT)
    assert len(stage_two.rgb_zero_inits) == len(RGB_INJECT) and len(stage_two.control_zero_inits) == len(DEPTH_INJECT)
    for fusion in [*stage_two.rgb_zero_inits, *stage_two.control_zero_inits]:
        assert torch.count_nonzero(fusion.proj_out.weight) == 0
    arguments = (torch.randn_like(inputs["rgb_latents"]), torch.randn_like(inputs["depth_latents"]),
                 torch.tensor([700.0]), inputs["context"])
    conditioning = {key: inputs[key] for key in ("clip_feature", "y", "depth_y", "camera_latents")}
    with torch.no_grad():
        before = stage_one(*arguments, **conditioning)
        after = stage_two(*arguments, **conditioning)
    for old, new in zip(before, after):
        torch.testing.assert_close(new, old, atol=0, rtol=0)
    assert dit_for_stage(stage_two, "fusion", RGB_INJECT, DEPTH_INJECT) is stage_two


def test_timestep_weighting_and_shared_noise(encoded):
    _, inputs = encoded
    module = staged_module("decoupled")
    scheduler = module.pipe.scheduler
    timestep = scheduler.timesteps[torch.tensor([250])]
    torch.manual_seed(5)
    loss = module.loss(inputs, timestep)
    torch.manual_seed(5)
    noise = torch.randn_like(inputs["rgb_latents"])
    sigma = timestep.item() / 1000
    with torch.no_grad():
        rgb_velocity, depth_velocity = module.pipe.dit(
            (1 - sigma) * inputs["rgb_latents"] + sigma * noise, (1 - sigma) * inputs["depth_latents"] + sigma * noise,
            timestep, inputs["context"], clip_feature=inputs["clip_feature"], y=inputs["y"],
            depth_y=inputs["depth_y"], camera_latents=inputs["camera_latents"])
    rgb_mse = ((rgb_velocity - (noise - inputs["rgb_latents"])) ** 2).mean()
    depth_mse = ((depth_velocity - (noise - inputs["depth_latents"])) ** 2).mean()
    # DiffSynth's Wan training weight, from the formula: a Gaussian bump over the shifted timesteps, shifted to a
    # zero minimum and normalised to mean 1 over the 1000 training timesteps.
    sigmas = np.linspace(1.0, 0.0, 1001)[:-1]
    shifted = 5 * sigmas / (1 + 4 * sigmas)
    bump = np.exp(-2 * ((1000 * shifted - 500) / 1000) ** 2)
    weight = torch.tensor((bump[250] - bump.min()) * 1000 / (bump - bump.min()).sum(), dtype=torch.float32)
    assert timestep.item() == pytest.approx(1000 * shifted[250], rel=1e-5)
    torch.testing.assert_close(loss.detach(), weight * (rgb_mse + depth_mse), rtol=1e-5, atol=1e-6)


def test_loss_decreases_on_a_repeated_batch_in_both_stages(encoded):
    _, inputs = encoded
    for stage in ("decoupled", "fusion"):
        module = staged_module(stage, drop_loss_topk=30)
        optimizer = torch.optim.AdamW(module.trainable_modules(), lr=2e-3)
        timestep = module.pipe.scheduler.timesteps[torch.tensor([400])]
        losses = []
        for _ in range(4):
            torch.manual_seed(0)  # the same noise every step: a fixed objective
            loss = module.loss(inputs, timestep)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        assert all(np.isfinite(losses))
        assert losses[-1] < 0.8 * losses[0], (stage, losses)


def trainable_names(module: DualCamTrainingModule) -> set[str]:
    return {name.removeprefix("pipe.dit.") for name, p in module.named_parameters() if p.requires_grad}


def test_lora_wiring_per_branch_and_fusion():
    module = staged_module("fusion", trainable="lora", lora_branch="depth", lora_rank=4, train_fusion_with_lora=True)
    names = trainable_names(module)
    lora = {name for name in names if ".lora_" in name}
    assert lora and all(name.startswith("control_blocks.") for name in lora)
    assert {name for name in names if "zero_inits" in name} == {
        name.removeprefix("pipe.dit.") for name, _ in module.named_parameters() if "zero_inits" in name}
    assert names == lora | {name for name in names if "zero_inits" in name}
    assert not any(p.requires_grad for name, p in module.named_parameters() if "base_layer" in name)
    assert not any(p.requires_grad for name, p in module.pipe.vae.named_parameters())

    rgb_only = staged_module("fusion", trainable="lora", lora_branch="rgb", lora_rank=4, train_fusion_with_lora=False)
    names = trainable_names(rgb_only)
    assert names and all(name.startswith("blocks.") and ".lora_" in name for name in names)
    targets = {name.split(".lora_")[0].split(".", 2)[2] for name in names}
    assert targets == {"self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "cross_attn.k",
                       "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2"}

    fusion_only = staged_module("fusion", trainable="fusion")
    assert trainable_names(fusion_only) == {n for n in trainable_names(staged_module("fusion")) if "zero_inits" in n}
    with pytest.raises(ValueError, match="no fusion modules"):
        staged_module("decoupled", trainable="fusion")


def test_lora_gradients_reach_only_trainable_parameters(encoded):
    _, inputs = encoded
    module = staged_module("fusion", trainable="lora", lora_branch="both", lora_rank=4)
    module.loss(inputs, module.pipe.scheduler.timesteps[torch.tensor([500])]).backward()
    for name, parameter in module.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None, name
        else:
            assert parameter.grad is None, name
    # lora_B starts at zero, so lora_A gets no gradient at first, but lora_B and the fusion modules do.
    assert any(p.grad.abs().sum() > 0 for n, p in module.named_parameters() if "lora_B" in n)


def test_merged_lora_dit_matches_the_lora_dit(encoded):
    _, inputs = encoded
    module = staged_module("fusion", trainable="lora", lora_branch="both", lora_rank=4)
    torch.manual_seed(1)
    for name, parameter in module.pipe.dit.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(std=0.05)
    plain = merged_dit(module.pipe.dit)
    assert not any(".lora_" in key or "base_layer" in key for key in plain.state_dict())
    arguments = (torch.randn_like(inputs["rgb_latents"]), torch.randn_like(inputs["depth_latents"]),
                 torch.tensor([300.0]), inputs["context"])
    conditioning = {key: inputs[key] for key in ("clip_feature", "y", "depth_y", "camera_latents")}
    with torch.no_grad():
        for expected, actual in zip(module.pipe.dit(*arguments, **conditioning), plain(*arguments, **conditioning)):
            torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "train"


def test_example_configs_hold_the_published_recipe():
    stage_one = load_config(EXAMPLES / "stage1_decoupled.yaml")
    stage_two = load_config(EXAMPLES / "stage2_fusion.yaml")
    for config in (stage_one, stage_two):
        assert (config.data.height, config.data.width) == (480, 720)
        assert config.train.learning_rate == 3e-6 and config.train.mixed_precision == "bf16"
        assert 30 <= config.train.drop_loss_topk <= 70 and config.train.use_gradient_checkpointing
    accelerate = yaml.safe_load((EXAMPLES / "accelerate_zero2.yaml").read_text())
    assert accelerate["deepspeed_config"]["zero_stage"] == 2
    processes, accumulation = accelerate["num_processes"], accelerate["deepspeed_config"]["gradient_accumulation_steps"]
    assert processes * accumulation == 8 and accumulation == stage_one.train.gradient_accumulation_steps
    assert (stage_one.train.stage, stage_one.train.max_steps) == ("decoupled", 10000)
    assert (stage_two.train.stage, stage_two.train.max_steps) == ("fusion", 70000)
    assert load_config(EXAMPLES / "stage2_lora_depth.yaml").train.lora_branch == "depth"


@pytest.mark.parametrize("override,message", [
    ("train.trainable=fusion", "needs train.stage = 'fusion'"),
    ("train.stage=fused", "train.stage must be one of"),
    ("train.learning_rat=1", "train: unknown keys \\['learning_rat'\\]"),
    ("data.num_frames=8", "data.num_frames must be 4k\\+1"),
    ("model.wan_camera_dit=null", "model.dit or model.wan_camera_dit is required"),
    ("data.root=", "data.root: the dataset folder is required"),
    ("datum.root=x", "unknown config sections \\['datum'\\]"),
])
def test_config_errors_name_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(EXAMPLES / "stage1_decoupled.yaml", [override])


def test_train_command_reports_config_errors(tmp_path, capsys):
    from diffsynth_dualcam.cli import main

    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"data": {"root": str(tmp_path)}, "model": {"tiny_seed": 0},
                                      "train": {"drop_loss_topk": -1}}))
    assert main(["train", "--config", str(config)]) == 2
    assert "train.drop_loss_topk must be >= 0" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2


def test_bf16_autocast_with_offloaded_gradient_checkpointing(encoded):
    item, _ = encoded
    pipe = tiny_pipeline(seed=0, torch_dtype=torch.bfloat16)  # frozen encoders in bf16
    pipe.dit = dit_for_stage(pipe.dit.float(), "decoupled")  # trained weights stay float32
    module = DualCamTrainingModule(pipe, use_gradient_checkpointing=True, use_gradient_checkpointing_offload=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = module(item)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    parameters = list(pipe.dit.parameters())
    assert all(p.dtype == torch.float32 and p.grad is not None and torch.isfinite(p.grad).all() for p in parameters)
