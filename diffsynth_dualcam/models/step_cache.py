"""Training-free step cache for the dual-branch DiT (TeaCache-style).

Between neighbouring sampling steps the block stack's residual (its output minus its input) changes slowly
while the timestep-modulated input changes little. ``StepCache`` accumulates the relative L1 change of the
modulated input of the first RGB and first depth block,

    rel_t = (|m_rgb,t - m_rgb,t-1|_1 + |m_depth,t - m_depth,t-1|_1) / (|m_rgb,t-1|_1 + |m_depth,t-1|_1),
    m = LayerNorm(tokens) * (1 + scale_msa(t)) + shift_msa(t),

and while the running sum stays below ``threshold`` it skips every block of both branches (and all fusion),
adding the residuals of the last computed step instead. Both branches always skip together. The first
``warmup_steps`` and the last step are always computed. Use one cache per guidance stream (one for the
positive and one for the negative prompt, or one for a merged CFG batch) and a fresh cache per generation.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from diffsynth.models.wan_video_dit import DiTBlock, modulate
from torch import nn

BlockStack = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def modulated_input(block: DiTBlock, tokens: torch.Tensor, t_mod: torch.Tensor) -> torch.Tensor:
    """The self-attention input of ``block``: LayerNorm(tokens) shifted and scaled by the timestep modulation."""
    shift, scale = (block.modulation.to(dtype=t_mod.dtype, device=t_mod.device) + t_mod).chunk(6, dim=1)[:2]
    return modulate(block.norm1(tokens), shift, scale)


class StepCache:
    """Decides per DiT call whether to run the block stack or reuse the cached residuals of both branches.

    ``threshold`` bounds the accumulated relative L1 change of the modulated input between computed steps
    (0 computes every step; TeaCache's usual range is 0.05 to 0.3). Counters ``computed`` and ``skipped`` give
    the realised saving: ``speedup`` = calls / computed calls of the block stack, a count (the embeddings, heads
    and change measure still run at every call, so the time saved is somewhat less; ``benchmarks/bench_cache.py``
    times it).
    """

    def __init__(self, num_inference_steps: int, threshold: float, warmup_steps: int = 1) -> None:
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        if warmup_steps < 1:
            raise ValueError(f"warmup_steps must be >= 1 (the first step has nothing cached), got {warmup_steps}")
        self.num_inference_steps = num_inference_steps
        self.threshold = float(threshold)
        self.warmup_steps = warmup_steps
        self.step = 0
        self.computed = 0
        self.skipped = 0
        self.accumulated_change = 0.0
        self.previous_modulated: tuple[torch.Tensor, torch.Tensor] | None = None
        self.residuals: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def speedup(self) -> float:
        """DiT calls per computed block-stack pass so far (1.0 when nothing was skipped); a count, not a timing."""
        return (self.computed + self.skipped) / max(self.computed, 1)

    def summary(self) -> dict[str, float | int]:
        """Threshold and counters, JSON-friendly (for a run's ``params.json``)."""
        return {"threshold": self.threshold, "computed": self.computed, "skipped": self.skipped,
                "speedup": round(self.speedup, 3)}

    def __call__(
        self, dit: nn.Module, rgb: torch.Tensor, depth: torch.Tensor, t_mod: torch.Tensor, run_blocks: BlockStack
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens of both branches after the block stack: ``run_blocks(rgb, depth)`` or the cached residuals."""
        depth_block = dit.control_blocks[0] if len(dit.control_blocks) else dit.blocks[0]
        current = (modulated_input(dit.blocks[0], rgb, t_mod), modulated_input(depth_block, depth, t_mod))
        if self._reuse(dit, current):
            self.skipped += 1
            rgb_residual, depth_residual = self.residuals
            return rgb + rgb_residual, depth + depth_residual
        new_rgb, new_depth = run_blocks(rgb, depth)
        self.residuals = (new_rgb - rgb, new_depth - depth)
        self.computed += 1
        return new_rgb, new_depth

    def _reuse(self, dit: nn.Module, current: tuple[torch.Tensor, torch.Tensor]) -> bool:
        """Advance one step; True when the residuals of the last computed step may stand in for this one."""
        previous, self.previous_modulated = self.previous_modulated, current
        step, self.step = self.step, self.step + 1
        forced = step < self.warmup_steps or step >= self.num_inference_steps - 1
        if forced or previous is None or self.residuals is None:
            self.accumulated_change = 0.0
            return False
        if previous[0].shape != current[0].shape or previous[1].shape != current[1].shape:
            raise ValueError(
                "StepCache saw a different input shape than at the previous step: use one cache per guidance "
                "stream and per generation"
            )
        # float64 sums: a float16 sum over a full-size clip's ~30M elements would overflow to inf.
        sums = torch.stack([
            sum((now - before).abs().sum(dtype=torch.float64) for now, before in zip(current, previous)),
            sum(before.abs().sum(dtype=torch.float64) for before in previous),
        ])
        state = getattr(dit, "sequence_parallel", None)
        if state is not None and state.world_size > 1:
            # Each rank sees its own frames; all must agree to skip.
            dist.all_reduce(sums, group=state.group)
        self.accumulated_change += (sums[0] / sums[1].clamp_min(1e-12)).item()
        if self.accumulated_change < self.threshold:
            return True
        self.accumulated_change = 0.0
        return False
