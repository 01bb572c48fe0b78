"""One training stage (``dualcam train --config FILE``) on DiffSynth's training framework and accelerate.

A run into an ``output_dir`` that holds an interrupted run of the same config resumes it (see ``resume``).

Multi-GPU and DeepSpeed ZeRO-2 come from ``accelerate launch`` (see examples/train/ and docs/training.md).
Gradient clipping (``train.max_grad_norm``) is done by ``ClippingAccelerator``, the loop is ``runner.run_training``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..camera import CameraTrajectory
from ..data import DATASETS, CameraClipDataset
from ..pipeline.inputs import check_same_aspect
from .config import TrainConfig, save_config
from .distributed import ClippingAccelerator, check_distributed_setup
from .logger import DualCamModelLogger, ValidationInputs
from .module import DualCamTrainingModule, dit_for_stage, frame_to_image
from .resume import CONFIG_FILE, check_process_count, check_run_folder, clear_after, last_complete_step, state_dir

DTYPES = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def build_dataset(config: TrainConfig, num_processes: int = 1) -> CameraClipDataset:
    """The dataset of ``config.data``, long enough for ``max_steps`` optimizer steps on every process, its items
    drawn from ``train.seed`` and their index."""
    data, train = config.data, config.train
    return DATASETS[data.layout](
        data.root, height=data.height, width=data.width, num_frames=data.num_frames, stride=data.stride,
        min_stride=data.min_stride, flip_probability=data.flip_probability, use_captions=data.use_captions,
        num_samples=train.max_steps * train.gradient_accumulation_steps * num_processes, seed=train.seed,
    )


def stage_pipeline(config: TrainConfig, device: str | torch.device):
    """The pipeline with the stage's DiT: trained weights in float32, frozen encoders in the mixed-precision dtype.

    Without ``model.dit`` the DiT starts from a Wan camera DiT (``model.wan_camera_dit``; with ``model.tiny_seed``,
    the tiny DiT's own Wan part) through ``dit_from_wan_camera``: every depth block a copy of its RGB block.
    """
    from ..models import OFFICIAL_CONFIG
    from ..models.checkpoints import DUAL_BRANCH_PREFIXES, dit_from_wan_camera, load_dit
    from ..pipeline import DualCamCtrlPipeline

    model, train = config.model, config.train
    dtype = DTYPES[train.mixed_precision]
    if model.tiny_seed is not None:
        from ..pipeline.tiny import tiny_dit_config, tiny_pipeline

        pipe = tiny_pipeline(seed=model.tiny_seed, device=device, torch_dtype=dtype)
        reference = tiny_dit_config()
        wan_camera = {key: value for key, value in pipe.dit.state_dict().items()
                      if not key.startswith(DUAL_BRANCH_PREFIXES)}
    else:
        from diffsynth.core import ModelConfig
        from diffsynth.models.wan_video_text_encoder import HuggingfaceTokenizer

        from ..pipeline.dualcam import MODEL_NAMES, TOKENIZER_LENGTH

        pipe = DualCamCtrlPipeline(device=device, torch_dtype=dtype)
        paths = [model.text_encoder, model.vae, model.image_encoder]
        pool = pipe.download_and_load_models([ModelConfig(path=path) for path in paths])
        for name in ("text_encoder", "vae", "image_encoder"):
            component = pool.fetch_model(MODEL_NAMES[name])
            if component is None:
                raise ValueError(f"model.{name}: {getattr(model, name)} is not a {MODEL_NAMES[name]} file")
            setattr(pipe, name, component.to(device=device, dtype=dtype))
        pipe.tokenizer = HuggingfaceTokenizer(name=model.tokenizer, seq_len=TOKENIZER_LENGTH, clean="whitespace")
        reference = OFFICIAL_CONFIG
        wan_camera = model.wan_camera_dit
    if model.dit:
        dit = load_dit(model.dit)
    else:
        dit = dit_from_wan_camera(wan_camera, config={**reference, "rgb_inject_blocks": [], "depth_inject_blocks": []})
    pipe.dit = dit_for_stage(dit.float(), train.stage, reference["rgb_inject_blocks"],
                             reference["depth_inject_blocks"]).to(device)
    return pipe


def validation_inputs(config: TrainConfig, dataset: CameraClipDataset) -> ValidationInputs | None:
    """The validation generation: the configured image/depth/camera, else the first clip of the dataset."""
    settings = config.validation
    if not settings.every_steps:
        return None
    if settings.image:
        if not settings.depth:
            raise ValueError("validation.depth: a depth map is needed with validation.image")
        image, depth = Image.open(settings.image).convert("RGB"), Image.open(settings.depth).convert("RGB")
        try:
            check_same_aspect(image, depth, width=settings.width, height=settings.height)
        except ValueError as error:
            raise ValueError(f"validation.depth: {error}") from None
        names = CameraTrajectory.preset_names()
        camera = (CameraTrajectory.preset(settings.camera, num_frames=settings.num_frames)
                  if settings.camera in names else CameraTrajectory.load(settings.camera))
        prompt = settings.prompt
    else:
        item = dataset.sample(0, np.random.default_rng(settings.seed), flip=False)
        image, depth = frame_to_image(item["video"][:, 0]), frame_to_image(item["depth"][:, 0])
        camera, prompt = item["camera"], settings.prompt or item["prompt"]
    return ValidationInputs(image=image, depth=depth, camera=camera, prompt=prompt, settings=settings)


def train(config: TrainConfig) -> DualCamModelLogger:
    """Run one stage as configured, or resume it from the last complete checkpoint in ``train.output_dir``;
    returns the logger (checkpoint paths in ``saved``)."""
    from accelerate.utils import set_seed

    from .runner import run_training

    train_config = config.train
    output_dir = Path(train_config.output_dir)
    accelerator = ClippingAccelerator(gradient_accumulation_steps=train_config.gradient_accumulation_steps,
                                      mixed_precision=train_config.mixed_precision,
                                      max_grad_norm=train_config.max_grad_norm)
    check_distributed_setup(accelerator.state.deepspeed_plugin, train_config.max_grad_norm)
    check_run_folder(output_dir, config)
    resume_step = last_complete_step(output_dir)
    if resume_step:
        check_process_count(output_dir, resume_step, accelerator.num_processes)
    if resume_step >= train_config.max_steps:
        logger = DualCamModelLogger(output_dir)
        logger.num_steps = resume_step
        logger.saved.append(output_dir / f"step-{resume_step}.safetensors")
        if accelerator.is_main_process:
            print(f"{output_dir} holds this run finished at step {resume_step}: nothing to train")
        return logger
    set_seed(train_config.seed, device_specific=True)
    dataset = build_dataset(config, accelerator.num_processes)
    module = DualCamTrainingModule(
        stage_pipeline(config, accelerator.device), trainable=train_config.trainable,
        lora_branch=train_config.lora_branch, lora_rank=train_config.lora_rank,
        lora_target_modules=train_config.lora_target_modules,
        train_fusion_with_lora=train_config.train_fusion_with_lora, drop_loss_topk=train_config.drop_loss_topk,
        share_noise=train_config.share_noise, min_timestep_boundary=train_config.min_timestep_boundary,
        max_timestep_boundary=train_config.max_timestep_boundary,
        use_gradient_checkpointing=train_config.use_gradient_checkpointing,
        use_gradient_checkpointing_offload=train_config.use_gradient_checkpointing_offload,
        noise_seed=train_config.fixed_noise_seed,
    )
    accelerator.track_parameters(module.trainable_modules())
    validation = validation_inputs(config, dataset)
    if accelerator.is_main_process:
        removed = clear_after(output_dir, resume_step)
        if removed:
            print(f"removed what the interrupted run left after step {resume_step}: "
                  + ", ".join(str(path) for path in removed))
        save_config(config, output_dir / CONFIG_FILE)
        print(f"stage {train_config.stage}, training {train_config.trainable}: "
              f"{module.trainable_parameter_count():,} parameters, {train_config.max_steps} steps"
              + (f", resuming after step {resume_step} from {state_dir(output_dir, resume_step)}"
                 if resume_step else ""))
    accelerator.wait_for_everyone()
    logger = DualCamModelLogger(output_dir, save_steps=train_config.save_steps, validation=validation,
                                validation_steps=config.validation.every_steps)
    run_training(accelerator, dataset, module, logger, learning_rate=train_config.learning_rate,
                 weight_decay=train_config.weight_decay, num_workers=config.data.num_workers,
                 seed=train_config.seed, max_steps=train_config.max_steps,
                 resume_from=state_dir(output_dir, resume_step) if resume_step else None, resume_step=resume_step)
    return logger
