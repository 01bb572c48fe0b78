"""Denoising loop with the step cache against the plain loop, on the benchmark DiT.

Euler flow-matching sampling of both branches (one guidance stream) with ``StepCache``: the ratio is the
measured speed-up of the whole loop (time, not a count of skipped steps), reported with the relative difference of
the final latents to the plain loop.
Random weights decide how fast the modulated input drifts, so the skipped-step count of a trained model differs;
the cost saved per skipped step does not.

    .venv/bin/python benchmarks/bench_cache.py [--device cuda] [--size mid|full] [--steps 8] [--threshold 0.2]
"""
from __future__ import annotations

import argparse

import torch
from bench_step import make_inputs
from common import (
    Row,
    add_common_arguments,
    interleaved_times,
    latent_shape,
    model_config,
    paired_ratio,
    resolve,
    seconds,
    time_dit_work_as_generation_runs,
)
from diffsynth.diffusion import FlowMatchScheduler

from diffsynth_dualcam.models import DualCamCtrlDiT
from diffsynth_dualcam.models.step_cache import StepCache


def run(device: str = "cpu", dtype: str | None = None, size: str | None = None, repeats: int = 1,
        steps: int = 8, threshold: float = 0.2) -> Row:
    """Time the plain and the cached loop (``repeats`` rounds after one warm-up DiT call); the row's ratio is the
    speed-up, plain / cached wall time (CPU time of one thread on the CPU)."""
    device, torch_dtype, size = resolve(device, dtype, size)
    time_dit_work_as_generation_runs(device)
    config = model_config(size)
    with torch.device(device):
        dit = DualCamCtrlDiT(**config).to(torch_dtype).eval().requires_grad_(False)
    inputs = make_inputs(config, latent_shape(size), device, torch_dtype)
    noise = inputs.pop("x")
    inputs.pop("depth_latents")
    inputs.pop("timestep")
    # The last run of each loop: final latents of both branches, and the cache.
    results: dict[str, tuple[torch.Tensor, torch.Tensor, StepCache | None]] = {}

    def sample(name: str, cached: bool):
        def loop() -> None:
            scheduler = FlowMatchScheduler("Wan")
            scheduler.set_timesteps(steps, shift=5.0)
            cache = StepCache(steps, threshold) if cached else None
            rgb, depth = noise.clone(), noise.clone()
            for timestep in scheduler.timesteps:
                timestep = timestep.unsqueeze(0).to(device=device, dtype=torch_dtype)
                velocity, depth_velocity = dit(rgb, depth, timestep, step_cache=cache, **inputs)
                rgb = scheduler.step(velocity, timestep, rgb)
                depth = scheduler.step(depth_velocity, timestep, depth)
            results[name] = (rgb, depth, cache)
        return loop

    with torch.inference_mode():
        inputs["camera_embedding"] = dit.embed_camera(inputs.pop("camera_latents"))
        dit(noise, noise, torch.tensor([500.0], device=device, dtype=torch_dtype), **inputs)  # warm-up call
        loops = {"plain": sample("plain", False), "cached": sample("cached", True)}
        times = interleaved_times(loops, repeats, device, warmup=0)
    *plain, _ = results["plain"]
    *cached, cache = results["cached"]
    error = max(((a.float() - b.float()).norm() / b.float().norm()).item() for a, b in zip(cached, plain))
    shape = "x".join(str(n) for n in latent_shape(size)[1:])
    return Row(
        benchmark=f"denoising loop, step cache {threshold} vs plain ({size} DiT, {shape} latents, {steps} steps)",
        measured=(f"{seconds(times['cached'].median)} cached ({cache.computed} of {steps} steps computed, "
                  f"latents differ by {error:.1e})"),
        baseline=f"{seconds(times['plain'].median)} plain", ratio=paired_ratio(times["plain"], times["cached"]),
        ratio_label="speed-up", target="report", met=None, device=f"{device.type} {torch_dtype}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threshold", type=float, default=0.2)
    parser.set_defaults(repeats=1)
    args = parser.parse_args()
    row = run(args.device, args.dtype, args.size, args.repeats, args.steps, args.threshold)
    print(row.report())


if __name__ == "__main__":
    main()
