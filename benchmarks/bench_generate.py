"""End-to-end generation with the tiny pipeline: the step cache against plain sampling.

Runs ``DualCamCtrlPipeline`` on tiny random models (``diffsynth_dualcam.pipeline.tiny.tiny_pipeline``): prompt encoding,
CLIP and VAE encoding, merged-CFG denoising of both branches, tiled decoding of both videos. The cached run uses
``step_cache_threshold``; its speed-up is the wall-time ratio of whole generations (CPU time of one thread on the
CPU) and its quality the relative difference of the final latents. The models are tiny on every device, so the
ratio shows what the cache saves around the DiT, not a full-size speed-up (``bench_cache.py`` times the denoising
loop of the benchmark DiT); peak memory is ``bench_memory.py``'s.

    .venv/bin/python benchmarks/bench_generate.py [--device cuda] [--steps 20] [--threshold 0.2] [--repeats 3]
"""
from __future__ import annotations

import argparse

from common import (
    Row,
    generation_arguments,
    interleaved_times,
    paired_ratio,
    resolve,
    seconds,
    time_dit_work_as_generation_runs,
)

from diffsynth_dualcam.pipeline.tiny import tiny_pipeline

FRAMES, HEIGHT, WIDTH = 9, 64, 96


def run(device: str = "cpu", dtype: str | None = None, steps: int = 20, threshold: float = 0.2,
        repeats: int = 3) -> Row:
    """The step cache's speed-up (uncached / cached time of a whole generation)."""
    device, torch_dtype, _ = resolve(device, dtype, "tiny")
    time_dit_work_as_generation_runs(device)
    pipe = tiny_pipeline(seed=0, device=device, torch_dtype=torch_dtype)
    arguments = generation_arguments(FRAMES, HEIGHT, WIDTH, steps)
    outputs = {}

    def generate(name: str, step_cache_threshold: float | None):
        def call() -> None:
            outputs[name] = pipe(**arguments, step_cache_threshold=step_cache_threshold)
        return call

    times = interleaved_times(
        {"plain": generate("plain", None), "cached": generate("cached", threshold)}, repeats, device
    )
    plain, cached = outputs["plain"], outputs["cached"]
    error = max(
        ((a.float() - b.float()).norm() / b.float().norm()).item()
        for a, b in ((cached.latents, plain.latents), (cached.depth_latents, plain.depth_latents))
    )
    cache_stats = cached.params["step_cache"]
    ratio = paired_ratio(times["plain"], times["cached"])
    return Row(
        benchmark=(f"end-to-end generation, step cache {threshold} vs plain (tiny pipeline, {FRAMES} frames "
                   f"{HEIGHT}x{WIDTH}, {steps} steps)"),
        measured=(f"{seconds(times['cached'].median)} cached ({cache_stats['computed']} of {steps} steps computed, "
                  f"latents differ by {error:.1e})"),
        baseline=f"{seconds(times['plain'].median)} plain", ratio=ratio, ratio_label="speed-up", target="report",
        met=None,
        device=f"{device.type} {torch_dtype}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                        help="default: float32 on the CPU, bfloat16 on a GPU")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threshold", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    row = run(args.device, args.dtype, args.steps, args.threshold, args.repeats)
    print(row.report())


if __name__ == "__main__":
    main()
