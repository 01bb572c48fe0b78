"""Checkpoints, loss logs and validation videos during training (a DiffSynth ``ModelLogger``)."""
from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from diffsynth.diffusion.logger import ModelLogger
from PIL import Image

from ..camera import CameraTrajectory
from ..models.checkpoints import save_dit
from .config import ValidationConfig
from .module import merged_dit
from .resume import remove_states_before, staging_state_dir, state_dir


@dataclass
class ValidationInputs:
    """One generation run periodically with the weights being trained: its inputs and the configured sampling
    (negative prompt, size, frames, steps, guidance, seed, fps)."""

    image: Image.Image
    depth: Image.Image
    camera: CameraTrajectory
    prompt: str
    settings: ValidationConfig


class DualCamModelLogger(ModelLogger):
    """Counts optimizer steps (not micro-batches), saves the whole DiT with ``save_dit`` (LoRA merged) every
    ``save_steps`` and at the end, logs the loss, both branch losses and the gradient norm before clipping (what a
    ``ClippingAccelerator`` measured), and renders ``validation`` every ``validation_steps`` into
    ``output_path/validation/step-N/``. After each checkpoint (and its validation) accelerate's state is saved in
    ``output_path/state/step-N/`` for resuming (see ``resume``)."""

    def __init__(
        self,
        output_path: str | Path,
        save_steps: int | None = None,
        validation: ValidationInputs | None = None,
        validation_steps: int = 0,
        **logger_options: Any,
    ):
        super().__init__(str(output_path), enable_csv_log=True, **logger_options)
        self.save_steps = save_steps
        self.validation = validation
        self.validation_steps = validation_steps
        self.saved: list[Path] = []
        self.validation_dirs: list[Path] = []

    def on_step_end(self, accelerator: Accelerator, model: torch.nn.Module, save_steps: int | None = None,
                    **kwargs: Any) -> None:
        if not accelerator.sync_gradients:
            return
        self.num_steps += 1
        module = accelerator.unwrap_model(model)
        if accelerator.is_main_process:
            if not self.loggers_initialized:
                self.init_loggers()
            values = {"loss": kwargs.get("loss"), **getattr(module, "last_loss_terms", {}),
                      "grad_norm": getattr(accelerator, "last_grad_norm", None)}
            for logger in self.loggers:
                for key, value in values.items():
                    if value is not None:
                        logger.log(key, value, self.num_steps)
        checkpoint = bool(self.save_steps) and self.num_steps % self.save_steps == 0
        if checkpoint:
            self.save_model(accelerator, model, f"step-{self.num_steps}.safetensors")
        if self.validation is not None and self.validation_steps and self.num_steps % self.validation_steps == 0:
            self.validate(accelerator, model)
        if checkpoint:  # last, so that a resumed run starts from the generators as they are after validation
            self.save_state(accelerator)

    def on_epoch_end(self, accelerator: Accelerator, model: torch.nn.Module, epoch_id: int) -> None:
        """Checkpoints follow steps, not epochs (an epoch is the whole run)."""

    def on_training_end(self, accelerator: Accelerator, model: torch.nn.Module, save_steps: int | None = None
                        ) -> None:
        if not self.save_steps or self.num_steps % self.save_steps:
            self.save_model(accelerator, model, f"step-{self.num_steps}.safetensors")
            self.save_state(accelerator)
        for logger in self.loggers:
            logger.close()

    def save_model(self, accelerator: Accelerator, model: torch.nn.Module, file_name: str) -> None:
        """Write the DiT (fusion and LoRA included, LoRA merged) as a pipeline-loadable safetensors file."""
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            dit = accelerator.unwrap_model(model).pipe.dit
            path = save_dit(merged_dit(dit), Path(self.output_path) / file_name)
            self.saved.append(path)
            print(f"checkpoint saved: {path}")

    def save_state(self, accelerator: Accelerator) -> None:
        """Save accelerate's state of this step: written under a staging name and renamed when complete, so
        ``state/step-N`` is either whole or absent; older states are then removed."""
        staging = staging_state_dir(self.output_path, self.num_steps)
        final = state_dir(self.output_path, self.num_steps)
        if accelerator.is_main_process and staging.exists():
            shutil.rmtree(staging)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(staging))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            if final.exists():
                shutil.rmtree(final)
            staging.rename(final)
            remove_states_before(self.output_path, self.num_steps)
        accelerator.wait_for_everyone()

    def validate(self, accelerator: Accelerator, model: torch.nn.Module) -> None:
        """Generate the validation clip with the current weights (main process) and save it."""
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            pipe = accelerator.unwrap_model(model).pipe
            inputs, settings = self.validation, self.validation.settings
            pipe.dit.eval()
            autocast = accelerator.autocast() if accelerator.mixed_precision != "no" else contextlib.nullcontext()
            try:
                with torch.no_grad(), autocast:
                    output = pipe(
                        prompt=inputs.prompt, negative_prompt=settings.negative_prompt, input_image=inputs.image,
                        input_depth=inputs.depth, camera=inputs.camera, height=settings.height, width=settings.width,
                        num_frames=settings.num_frames, num_inference_steps=settings.num_inference_steps,
                        cfg_scale=settings.cfg_scale, seed=settings.seed, tiled=False,
                        resample_camera=True,  # a training clip's path spans the validation clip, whatever its length
                    )
            finally:
                pipe.dit.train()
                pipe.scheduler.set_timesteps(1000, training=True)
            directory = Path(self.output_path) / "validation" / f"step-{self.num_steps}"
            output.save(directory, fps=settings.fps)
            self.validation_dirs.append(directory)
            print(f"validation video saved in {directory}")
        accelerator.wait_for_everyone()
