"""Gradient clipping in the training loop (``runner``), and the check of the distributed set-up.

The loop (DiffSynth's ``launch_training_task`` body) calls ``accelerator.backward(loss)`` and then
``optimizer.step()`` inside ``accelerator.accumulate``; it does not clip. ``ClippingAccelerator`` clips in
``backward`` on the micro-batches that end an accumulation (``sync_gradients``), which is where accelerate's own
training loops clip: after the gradients are complete (and all-reduced under DDP), before the step. Under DeepSpeed
the engine steps inside ``backward`` and clips by its config's ``gradient_clipping``, which must then equal
``train.max_grad_norm``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from accelerate import Accelerator

#: The value accelerate gives an ``auto`` DeepSpeed ``gradient_clipping`` when it prepares the engine.
DEEPSPEED_AUTO_GRADIENT_CLIPPING = 1.0


class ClippingAccelerator(Accelerator):
    """An ``Accelerator`` that clips the gradient norm of ``clipped_parameters`` to ``max_grad_norm`` on every
    gradient-synchronising ``backward`` (0 or None: no clipping) and keeps the norm before clipping in
    ``last_grad_norm`` (computed also without clipping)."""

    def __init__(self, *args: Any, max_grad_norm: float | None = 1.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.max_grad_norm = max_grad_norm or None
        self.clipped_parameters: list[torch.nn.Parameter] = []
        self.last_grad_norm: float | None = None

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        super().backward(loss, **kwargs)
        if not self.sync_gradients or not self.clipped_parameters:
            return
        # An infinite bound leaves the gradients unchanged and still returns their norm (unscaled under fp16).
        norm = self.clip_grad_norm_(self.clipped_parameters, self.max_grad_norm or math.inf)
        self.last_grad_norm = None if norm is None else float(norm)

    def track_parameters(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Clip (and measure) the gradients of these parameters: the ones the optimizer updates."""
        self.clipped_parameters = [parameter for parameter in parameters if parameter.requires_grad]


def deepspeed_gradient_clipping(deepspeed_plugin: Any) -> float:
    """The gradient norm DeepSpeed will clip to (0: none), from the plugin's DeepSpeed config."""
    value = deepspeed_plugin.deepspeed_config.get("gradient_clipping", 0.0)
    if value == "auto":
        return DEEPSPEED_AUTO_GRADIENT_CLIPPING
    return float(value or 0.0)


def check_distributed_setup(deepspeed_plugin: Any, max_grad_norm: float | None) -> None:
    """Raise ValueError for a DeepSpeed set-up training cannot run with (before any model is built).

    ZeRO stage 3 partitions the parameters themselves: checkpoints and validation read the full weights on the main
    process, which would then see only its shard. Under DeepSpeed the engine clips the gradients, so its
    ``gradient_clipping`` must be ``train.max_grad_norm``.
    """
    if deepspeed_plugin is None:
        return
    if int(deepspeed_plugin.zero_stage) == 3:
        raise ValueError("DeepSpeed ZeRO stage 3 is not supported (checkpoints and validation need the full weights "
                         "on the main process): use zero_stage: 2 in the accelerate config")
    clipping = deepspeed_gradient_clipping(deepspeed_plugin)
    if not math.isclose(clipping, float(max_grad_norm or 0.0)):
        raise ValueError(f"train.max_grad_norm is {max_grad_norm} but DeepSpeed clips the gradient norm to {clipping} "
                         "(gradient_clipping in the accelerate config's deepspeed_config; 0 = none): set them equal")
