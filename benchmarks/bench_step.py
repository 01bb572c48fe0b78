"""One dual-branch denoising step against one single-branch Wan Fun-Camera step of the same size.

The baseline is DiffSynth's own ``model_fn_wan_video`` on a ``WanModel`` built with the same config (no depth
branch); the candidate is ``DualCamCtrlDiT`` with the same inputs plus depth latents. The depth branch doubles the
block compute, so 2.0x is the floor; the goal is at most 2.05x (fusion and glue under 5%). A third run without
fusion modules splits the overhead into fusion and the rest.

    .venv/bin/python benchmarks/bench_step.py [--device cuda] [--size mid|full] [--repeats 5]
"""
from __future__ import annotations

import argparse
import math

import torch
from common import (
    TEXT_TOKENS,
    Row,
    add_common_arguments,
    interleaved_times,
    latent_shape,
    model_config,
    paired_ratio,
    paired_ratios,
    resolve,
    seconds,
    time_dit_work_as_generation_runs,
    wan_model_config,
)
from diffsynth.models.wan_video_dit import WanModel
from diffsynth.pipelines.wan_video import model_fn_wan_video

from diffsynth_dualcam.models import DualCamCtrlDiT

GOAL_RATIO = 2.05


def build_models(config: dict, device: torch.device, dtype: torch.dtype) -> dict[str, torch.nn.Module]:
    """The single-branch Wan DiT, the dual-branch DiT and the dual-branch DiT without fusion, all random."""
    no_fusion = {**config, "rgb_inject_blocks": [], "depth_inject_blocks": []}
    with torch.device(device):
        models = {
            "single": WanModel(**wan_model_config(config)),
            "dual": DualCamCtrlDiT(**config),
            "dual_no_fusion": DualCamCtrlDiT(**no_fusion),
        }
    return {name: model.to(dtype=dtype).eval().requires_grad_(False) for name, model in models.items()}


def make_inputs(config: dict, latents: tuple[int, int, int, int], device: torch.device, dtype: torch.dtype,
                batch: int = 1) -> dict[str, torch.Tensor]:
    """Random DiT inputs for ``batch`` samples of ``latents`` [C, T, h, w]."""
    generator = torch.Generator(device=device).manual_seed(0)
    channels, frames, height, width = latents

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, device=device).to(dtype)

    return {
        "x": randn(batch, channels, frames, height, width),
        "depth_latents": randn(batch, channels, frames, height, width),
        "y": randn(batch, channels, frames, height, width),
        "depth_y": randn(batch, channels, frames, height, width),
        "timestep": torch.full((batch,), 500.0, device=device, dtype=dtype),
        "context": randn(batch, TEXT_TOKENS, config["text_dim"]),
        "clip_feature": randn(batch, 257, 1280),
        "camera_latents": randn(batch, config["in_dim_control_adapter"], frames, 8 * height, 8 * width),
    }


def run(device: str = "cpu", dtype: str | None = None, size: str | None = None, repeats: int = 5) -> Row:
    """Time the three steps; the row's ratio is dual / single (median of the per-round ratios). Fusion's share is
    the part of the dual step the run without fusion modules saves; the glue's share is how much more than two
    single-branch steps that run costs (negative: work the branches share, such as the text embedding)."""
    device, torch_dtype, size = resolve(device, dtype, size)
    time_dit_work_as_generation_runs(device)
    config = model_config(size)
    models = build_models(config, device, torch_dtype)
    inputs = make_inputs(config, latent_shape(size), device, torch_dtype)

    def single_step() -> torch.Tensor:
        return model_fn_wan_video(
            dit=models["single"], latents=inputs["x"], timestep=inputs["timestep"], context=inputs["context"],
            clip_feature=inputs["clip_feature"], y=inputs["y"], control_camera_latents_input=inputs["camera_latents"],
        )

    def dual_step(name: str):
        return lambda: models[name](**inputs)

    with torch.inference_mode():
        times = interleaved_times(
            {"single": single_step, "dual": dual_step("dual"), "dual_no_fusion": dual_step("dual_no_fusion")},
            repeats, device,
        )
    ratio = paired_ratio(times["dual"], times["single"])
    rounds = paired_ratios(times["dual"], times["single"])
    fusion_share = 1 - paired_ratio(times["dual_no_fusion"], times["dual"])
    glue_share = paired_ratio(times["dual_no_fusion"], times["single"]) / 2 - 1
    tokens = math.prod(latent_shape(size)[1:]) // math.prod(config["patch_size"])
    shape = "x".join(str(n) for n in latent_shape(size)[1:])
    return Row(
        benchmark=f"one denoising step, dual-branch vs single-branch ({size} DiT, {shape} latents, {tokens} tokens)",
        measured=(f"{seconds(times['dual'].median)} (fusion {fusion_share:+.1%}, other glue {glue_share:+.1%}; "
                  f"ratio per round {min(rounds):.2f}-{max(rounds):.2f})"),
        baseline=f"{seconds(times['single'].median)} (model_fn_wan_video)",
        ratio=ratio, ratio_label="dual / single", target=f"ratio <= {GOAL_RATIO}", met=ratio <= GOAL_RATIO,
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
