"""Training: top-k loss, stage set-up, what trains (full / blocks / LoRA / fusion), timestep weighting, LoRA merging,
gradient clipping and the distributed set-up check."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from diffsynth_dualcam.data import RealEstate10KDataset
from diffsynth_dualcam.data.synthetic import write_synthetic_dataset
from diffsynth_dualcam.pipeline.tiny import tiny_dit_config, tiny_pipeline
from diffsynth_dualcam.train import DualCamTrainingModule, dit_for_stage, drop_topk_mse, load_config, merged_dit
from diffsynth_dualcam.train.distributed import ClippingAccelerator, check_distributed_setup
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


def test_blocks_trains_what_the_reference_trained():
    for stage in ("decoupled", "fusion"):
        module = staged_module(stage, trainable="blocks")
        everything = {name for name, _ in module.pipe.dit.named_parameters()}
        # The reference's rule, by substring: RGB blocks ("blocks." but not "control"), depth blocks, and the
        # fusion modules in stage 2 (its stage 1 kept them frozen; ours has none).
        expected = {name for name in everything if ("blocks." in name and "control" not in name)
                    or "control_blocks." in name or "zero_inits" in name}
        assert trainable_names(module) == expected
        assert any(name.startswith("control_adapter.residual_blocks.") for name in everything - expected)
        frozen = {name.split(".")[0] for name in everything - expected}
        assert frozen == {"patch_embedding", "text_embedding", "time_embedding", "time_projection", "head", "img_emb",
                          "control_adapter"}
        fusion = {name for name in expected if "zero_inits" in name}
        assert bool(fusion) == (stage == "fusion")
    full = staged_module("fusion", trainable="full")
    assert trainable_names(full) == {name for name, _ in full.pipe.dit.named_parameters()}


def test_noise_seed_fixes_the_objective(encoded):
    _, inputs = encoded
    module = staged_module("decoupled", noise_seed=3)
    torch.manual_seed(0)
    first = module.loss(inputs).item()
    torch.manual_seed(1)  # the global generator no longer matters
    assert module.loss(inputs).item() == first
    module.noise_seed = 4
    assert module.loss(inputs).item() != first


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


def flat_gradient(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([parameter.grad.flatten() for parameter in model.parameters()])


@pytest.mark.parametrize("max_grad_norm", [0.5, 0.0])
def test_accelerator_clips_the_accumulated_gradient_on_sync_steps(max_grad_norm):
    accelerator = ClippingAccelerator(gradient_accumulation_steps=2, max_grad_norm=max_grad_norm)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.track_parameters(model.parameters())
    batches = [torch.randn(8, 4) * 10, torch.randn(8, 4) * 10]
    # Independent reference: the gradients of the two halves of the accumulated loss.
    expected = []
    for batch in batches:
        gradients = torch.autograd.grad((model(batch) ** 2).mean() / 2, list(model.parameters()))
        expected.append(torch.cat([gradient.flatten() for gradient in gradients]))
    with accelerator.accumulate(model):
        accelerator.backward((model(batches[0]) ** 2).mean())
    assert not accelerator.sync_gradients and accelerator.last_grad_norm is None
    torch.testing.assert_close(flat_gradient(model), expected[0])  # mid-accumulation: untouched
    with accelerator.accumulate(model):
        accelerator.backward((model(batches[1]) ** 2).mean())
    assert accelerator.sync_gradients
    total = expected[0] + expected[1]
    assert accelerator.last_grad_norm == pytest.approx(total.norm().item(), rel=1e-5)
    if max_grad_norm:
        assert total.norm() > max_grad_norm
        assert flat_gradient(model).norm() <= max_grad_norm * (1 + 1e-5)
        torch.testing.assert_close(flat_gradient(model), total * max_grad_norm / total.norm(), rtol=1e-4, atol=1e-6)
    else:
        torch.testing.assert_close(flat_gradient(model), total)


def test_distributed_setup_check():
    from accelerate.utils import DeepSpeedPlugin

    check_distributed_setup(None, 1.0)  # plain DDP or one process: the accelerator clips
    check_distributed_setup(DeepSpeedPlugin(zero_stage=2, gradient_clipping=1.0), 1.0)
    check_distributed_setup(DeepSpeedPlugin(zero_stage=2), 1.0)  # "auto": accelerate sets 1.0
    check_distributed_setup(DeepSpeedPlugin(hf_ds_config={"zero_optimization": {"stage": 2}}), None)  # no clipping
    with pytest.raises(ValueError, match="ZeRO stage 3 is not supported"):
        check_distributed_setup(DeepSpeedPlugin(zero_stage=3, gradient_clipping=1.0), 1.0)
    with pytest.raises(ValueError, match="ZeRO stage 3"):
        check_distributed_setup(DeepSpeedPlugin(hf_ds_config={"zero_optimization": {"stage": 3}}), 1.0)
    with pytest.raises(ValueError, match="max_grad_norm is 0.5 but DeepSpeed clips the gradient norm to 1.0"):
        check_distributed_setup(DeepSpeedPlugin(zero_stage=2, gradient_clipping=1.0), 0.5)


def test_train_refuses_zero3_before_building_anything(tmp_path, monkeypatch, capsys):
    from accelerate.utils import DeepSpeedPlugin

    import diffsynth_dualcam.train.stage as train_stage
    from diffsynth_dualcam.cli import main

    def zero3_accelerator(**options) -> ClippingAccelerator:
        accelerator = ClippingAccelerator(**options)
        accelerator.state = SimpleNamespace(deepspeed_plugin=DeepSpeedPlugin(zero_stage=3, gradient_clipping=1.0))
        return accelerator

    monkeypatch.setattr(train_stage, "ClippingAccelerator", zero3_accelerator)
    write_synthetic_dataset(tmp_path / "data", num_clips=1)
    config = tmp_path / "zero3.yaml"
    # Small enough that, were the check missing, the run would end quickly (and the test fail).
    config.write_text(yaml.safe_dump({
        "data": {"root": str(tmp_path / "data"), "height": 32, "width": 48, "num_frames": 5, "num_workers": 0},
        "model": {"tiny_seed": 0},
        "train": {"mixed_precision": "no", "max_steps": 1, "use_gradient_checkpointing": False,
                  "output_dir": str(tmp_path / "run")}}))
    assert main(["train", "--config", str(config)]) == 2
    assert "DeepSpeed ZeRO stage 3 is not supported" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "train"


def test_example_configs_hold_the_published_recipe():
    stage_one = load_config(EXAMPLES / "stage1_decoupled.yaml")
    stage_two = load_config(EXAMPLES / "stage2_fusion.yaml")
    for config in (stage_one, stage_two):
        assert (config.data.height, config.data.width) == (480, 720)
        # The released RealEstate10K loader: sample_n_frames=61, sample_stride=8, minimum_sample_stride=2, no flip.
        assert (config.data.num_frames, config.data.stride, config.data.min_stride) == (61, 8, 2)
        assert config.data.flip_probability == 0.0
        assert config.train.learning_rate == 3e-6 and config.train.mixed_precision == "bf16"
        assert 30 <= config.train.drop_loss_topk <= 70 and config.train.use_gradient_checkpointing
        assert config.train.trainable == "blocks" and config.train.max_grad_norm == 1.0
    accelerate = yaml.safe_load((EXAMPLES / "accelerate_zero2.yaml").read_text())
    assert accelerate["deepspeed_config"]["zero_stage"] == 2
    assert accelerate["deepspeed_config"]["gradient_clipping"] == stage_one.train.max_grad_norm
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
    ("validation.height=330", "validation.width/height must be multiples of 16, got 480x330"),
    ("validation.num_inference_steps=0", "validation.num_inference_steps must be >= 1, got 0"),
    ("model.wan_camera_dit=null", "model.dit or model.wan_camera_dit is required"),
    ("data.root=", "data.root: the dataset folder is required"),
    ("datum.root=x", "unknown config sections \\['datum'\\]"),
    ("data.min_stride=9", "data.min_stride must be between 1 and data.stride=8"),
    ("train.max_grad_norm=-1", "train.max_grad_norm must be a number >= 0"),
    ("train.fixed_noise_seed=x", "train.fixed_noise_seed must be null or an integer"),
    ("train.trainable=block", "train.trainable must be one of \\['full', 'blocks', 'lora', 'fusion'\\]"),
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


def test_a_validation_depth_map_of_another_frame_is_refused_at_start_up(tmp_path):
    from PIL import Image

    from diffsynth_dualcam.train.stage import validation_inputs

    Image.new("RGB", (480, 320)).save(tmp_path / "image.png")
    Image.new("L", (320, 480)).save(tmp_path / "depth.png")
    Image.new("L", (240, 160)).save(tmp_path / "depth_small.png")
    overrides = ["validation.every_steps=10", f"validation.image={tmp_path / 'image.png'}"]
    config = load_config(EXAMPLES / "stage1_decoupled.yaml", [*overrides, f"validation.depth={tmp_path / 'depth.png'}"])
    with pytest.raises(ValueError, match="validation.depth: input_depth is 320x480"):
        validation_inputs(config, dataset=None)
    config = load_config(EXAMPLES / "stage1_decoupled.yaml",
                         [*overrides, f"validation.depth={tmp_path / 'depth_small.png'}"])
    assert validation_inputs(config, dataset=None).depth.size == (240, 160)


def test_tiny_seed_builds_without_the_wan_files_and_mixed_precision_no_is_accepted(tmp_path):
    from diffsynth_dualcam.train.stage import stage_pipeline as build_pipeline

    # The stage-1 example names Wan files that do not exist here; a bare `no` is YAML for false.
    config = load_config(EXAMPLES / "stage1_decoupled.yaml",
                         ["model.tiny_seed=0", "train.mixed_precision=no", f"data.root={tmp_path}"])
    assert config.train.mixed_precision == "no"
    assert not Path(config.model.wan_camera_dit).exists()
    dit = build_pipeline(config, "cpu").dit
    assert next(dit.parameters()).dtype == torch.float32
    for k, index in enumerate(dit.control_block_index):  # the depth branch copied from the tiny RGB blocks
        assert torch.equal(dit.control_blocks[k].self_attn.q.weight, dit.blocks[index].self_attn.q.weight)


def test_the_tiny_example_config_runs_as_documented(tmp_path, monkeypatch):
    from diffsynth_dualcam.cli import main

    tiny = EXAMPLES / "tiny.yaml"
    header = [line.removeprefix("#").strip() for line in tiny.read_text().splitlines() if line.startswith("#   ")]
    docs = (EXAMPLES.parents[1] / "docs" / "training.md").read_text()
    assert len(header) == 2 and all(command in docs for command in header)  # the same commands in both
    monkeypatch.chdir(tmp_path)  # the config's relative data.root and output_dir, as in the docs
    write_synthetic_dataset(tmp_path / load_config(tiny).data.root)
    assert main(["train", "--config", str(tiny), "--set", "train.max_steps=2"]) == 0
    run = tmp_path / "runs" / "tiny"
    assert (run / "step-2.safetensors").is_file() and (run / "validation" / "step-2" / "video.mp4").is_file()
    assert len((run / "loss.csv").read_text().splitlines()) == 1 + 2 * 4


def test_train_out_option_replaces_the_configs_output_dir(tmp_path):
    from diffsynth_dualcam.cli import build_parser
    from diffsynth_dualcam.cli.train import load_run_config

    config = Path(__file__).resolve().parents[1] / "examples" / "train" / "tiny.yaml"
    parser = build_parser(["train"])
    assert load_run_config(parser.parse_args(["train", "--config", str(config)])).train.output_dir == "runs/tiny"
    out = tmp_path / "a: b #c"  # YAML would read this unquoted as a mapping and a comment
    args = parser.parse_args(["train", "--config", str(config), "--set", "train.max_steps=3", "--out", str(out)])
    loaded = load_run_config(args)
    assert loaded.train.output_dir == str(out) and loaded.train.max_steps == 3
