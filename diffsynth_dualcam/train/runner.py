"""The training loop: DiffSynth's ``launch_training_task`` loop with resumption and a progress bar of optimizer steps.

It builds the optimizer, LR schedule and data loader exactly as ``launch_training_task`` does (AdamW over
``trainable_modules()``, DiffSynth's ``ConstantLR``, one item per batch, shuffled) and runs the same
``accumulate / backward / step`` body with the same logger calls. What ``launch_training_task`` has no place for:
loading a saved state before the first step (``Accelerator.load_state``) and skipping the batches already trained
on (``Accelerator.skip_first_batches``). The shuffle order comes from a generator seeded with ``train.seed`` (not
from the global one, which a restored state replaces), so it is the same in a resumed run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from diffsynth.diffusion.runner import (
    exclude_quantized_params_from_ddp_sync,
    initialize_deepspeed_gradient_checkpointing,
)
from safetensors.torch import load_file
from tqdm import tqdm

from .logger import DualCamModelLogger


def first_item(batch: list[dict]) -> dict:
    """Collate a batch of one item into the item itself (what the training module takes)."""
    return batch[0]


def trained_names(model: torch.nn.Module) -> set[str]:
    """State-dict names of the parameters ``model`` trains."""
    return {name for name, parameter in model.named_parameters() if parameter.requires_grad}


def save_trained_weights_only(models: list[torch.nn.Module], weights: list[dict], output_dir: str) -> None:
    """``save_state`` hook: keep only the trained parameters of each model's state dict (the frozen encoders and
    weights are rebuilt from the config, and would make every saved state as large as all the models)."""
    for model, state_dict in zip(models, weights):
        keep = trained_names(model)
        for key in [key for key in state_dict if key not in keep]:
            del state_dict[key]


def load_trained_weights(models: list[torch.nn.Module], input_dir: str) -> None:
    """``load_state`` hook: load the trained parameters that ``save_trained_weights_only`` kept, checking that they
    are exactly the ones this run trains (then accelerate loads the rest of the state)."""
    for index, model in enumerate(models):
        path = Path(input_dir) / f"model{f'_{index}' if index else ''}.safetensors"
        state_dict = load_file(path, device=str(next(model.parameters()).device))
        expected = trained_names(model)
        if set(state_dict) != expected:
            missing, unexpected = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
            raise ValueError(f"{path}: the saved weights are not the ones this run trains "
                             f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
        model.load_state_dict(state_dict, strict=False)
    models.clear()


def run_training(
    accelerator: Accelerator,
    dataset: torch.utils.data.Dataset,
    module: Any,
    logger: DualCamModelLogger,
    learning_rate: float,
    weight_decay: float,
    num_workers: int,
    seed: int,
    max_steps: int,
    resume_from: Path | None = None,
    resume_step: int = 0,
) -> None:
    """Train ``module`` on ``dataset`` for ``max_steps`` optimizer steps, from the state saved in ``resume_from``
    (reached after ``resume_step`` steps) when given."""
    optimizer = torch.optim.AdamW(module.trainable_modules(), lr=learning_rate, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer)
    dataloader = torch.utils.data.DataLoader(dataset, shuffle=True, collate_fn=first_item, num_workers=num_workers,
                                             generator=torch.Generator().manual_seed(seed))
    module.to(device=accelerator.device)
    exclude_quantized_params_from_ddp_sync(accelerator, module)
    model, optimizer, dataloader, scheduler = accelerator.prepare(module, optimizer, dataloader, scheduler)
    initialize_deepspeed_gradient_checkpointing(accelerator)
    accelerator.register_save_state_pre_hook(save_trained_weights_only)
    accelerator.register_load_state_pre_hook(load_trained_weights)
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        dataloader = accelerator.skip_first_batches(dataloader, resume_step * accelerator.gradient_accumulation_steps)
        logger.num_steps = resume_step
    with tqdm(total=max_steps, initial=resume_step, unit="step", disable=not accelerator.is_main_process) as bar:
        for data in dataloader:
            with accelerator.accumulate(model):
                loss = model(data)
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                logger.on_step_end(accelerator, model, loss=loss)
            if accelerator.sync_gradients:
                bar.update(1)
    logger.on_training_end(accelerator, model)
