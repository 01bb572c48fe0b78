"""Classifier-free guidance as one batched DiT call (``cfg_merge``) against two calls, through the pipeline's code.

Both sides run ``DualCamCtrlPipeline.guided_velocity`` on the same inputs, the merged side after the pipeline's
``DualCamUnit_CfgMerger`` stacked the two prompt contexts (the shared inputs stay batch 1); the results are checked
to agree before timing. Goal: the merged call is at least 1.3x faster on a GPU and not slower on the CPU, where
batching saves no arithmetic and the gain is the work before each branch's first cross-attention, which the merged
call does once (docs/performance.md).

    .venv/bin/python benchmarks/bench_cfg.py [--device cuda] [--size mid|full] [--repeats 5]
"""
from __future__ import annotations

import argparse

import torch
from bench_step import make_inputs
from common import (
    Row,
    add_common_arguments,
    check_agreement,
    interleaved_times,
    latent_shape,
    model_config,
    paired_ratio,
    paired_ratios,
    resolve,
    seconds,
    time_dit_work_as_generation_runs,
)

from diffsynth_dualcam.models import DualCamCtrlDiT
from diffsynth_dualcam.pipeline import DualCamCtrlPipeline
from diffsynth_dualcam.pipeline.units import DualCamUnit_CfgMerger

GOAL_GPU = 1.3
GOAL_CPU = 1.0
CFG_SCALE = 6.0


def guidance_inputs(config: dict, size: str, device: torch.device, dtype: torch.dtype):
    """``(shared, positive, negative)`` input dicts as the pipeline's units leave them before denoising."""
    inputs = make_inputs(config, latent_shape(size), device, dtype)
    negative_context = torch.randn_like(inputs["context"])
    shared = {
        "latents": inputs["x"], "depth_latents": inputs["depth_latents"], "clip_feature": inputs["clip_feature"],
        "y": inputs["y"], "depth_y": inputs["depth_y"], "camera_latents": inputs["camera_latents"],
    }
    return shared, {"context": inputs["context"]}, {"context": negative_context}


#: Largest ||merged - separate|| / ||separate|| of each branch's velocity per prompt: the two compute the same
#: function, but a GPU may pick other kernels (another summation order) for a batch of 2, and a bf16 result keeps ~3
#: digits (~8e-3 apart at the full size). The raw velocities are compared, not the guided ones: with random weights
#: the two prompts' velocities nearly agree, so guidance would scale their rounding by about 2 * CFG_SCALE.
AGREEMENT = {torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 1e-2}


def run(device: str = "cpu", dtype: str | None = None, size: str | None = None, repeats: int = 5) -> Row:
    """Time guidance with two calls and with one merged call; the row's ratio is separate / merged."""
    device, torch_dtype, size = resolve(device, dtype, size)
    time_dit_work_as_generation_runs(device)
    config = model_config(size)
    pipe = DualCamCtrlPipeline(device=device, torch_dtype=torch_dtype)
    with torch.device(device):
        pipe.dit = DualCamCtrlDiT(**config).to(torch_dtype).eval().requires_grad_(False)
    models = {"dit": pipe.dit}
    timestep = torch.tensor([500.0], device=device, dtype=torch_dtype)
    with torch.inference_mode():
        shared, positive, negative = guidance_inputs(config, size, device, torch_dtype)
        shared["camera_embedding"] = pipe.dit.embed_camera(shared.pop("camera_latents"))
        merged = DualCamUnit_CfgMerger().process(
            pipe, {**shared, "cfg_merge": True, "cfg_scale": CFG_SCALE}, dict(positive), dict(negative)
        )

        def separate_calls():
            return pipe.guided_velocity(models, CFG_SCALE, False, timestep, shared, positive, negative)

        def merged_call():
            return pipe.guided_velocity(models, CFG_SCALE, True, timestep, *merged)

        both = pipe.model_fn(**models, **merged[0], **merged[1], timestep=timestep)
        for half, stream in ((slice(0, 1), positive), (slice(1, 2), negative)):
            check_agreement(pipe.model_fn(**models, **shared, **stream, timestep=timestep),
                            [velocity[half] for velocity in both], AGREEMENT[torch_dtype], "merged guidance")
        times = interleaved_times({"separate": separate_calls, "merged": merged_call}, repeats, device)
    ratio = paired_ratio(times["separate"], times["merged"])
    rounds = paired_ratios(times["separate"], times["merged"])
    goal = GOAL_GPU if device.type == "cuda" else GOAL_CPU
    shape = "x".join(str(n) for n in latent_shape(size)[1:])
    return Row(
        benchmark=f"guidance, one merged call vs two calls ({size} DiT, {shape} latents)",
        measured=(f"{seconds(times['merged'].median)} merged (speed-up per round {min(rounds):.2f}-{max(rounds):.2f})"),
        baseline=f"{seconds(times['separate'].median)} two calls",
        ratio=ratio, ratio_label="speed-up", target=f"speed-up >= {goal}", met=ratio >= goal,
        device=f"{device.type} {torch_dtype}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    args = parser.parse_args()
    row = run(args.device, args.dtype, args.size, args.repeats)
    print(row.report())


if __name__ == "__main__":
    main()
