"""End-to-end generation with the tiny pipeline: the step cache against plain sampling, and peak memory.

Runs ``DualCamCtrlPipeline`` on tiny random models (``diffsynth_dualcam.testing.tiny_pipeline``): prompt encoding,
CLIP and VAE encoding, merged-CFG denoising of both branches, tiled decoding of both videos. The cached run uses
``step_cache_threshold``; its speed-up is the wall-time ratio of whole generations and its quality the relative
difference of the final latents. Peak memory is that of one uncached generation (GPU: allocated; CPU: the
resident-set rise of a forked child running it).

    .venv/bin/python benchmarks/bench_generate.py [--device cuda] [--steps 20] [--threshold 0.2] [--repeats 3]
"""
from __future__ import annotations

import argparse

import numpy as np
from common import Row, gib, interleaved_best_times, peak_memory, resolve, seconds
from PIL import Image

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.testing import tiny_pipeline

FRAMES, HEIGHT, WIDTH = 9, 64, 96


def quiet(iterable):
    """A progress bar that prints nothing."""
    return iterable


def run(device: str = "cpu", steps: int = 20, threshold: float = 0.2, repeats: int = 3) -> tuple[Row, Row]:
    """Rows for the step cache's speed-up (uncached / cached time) and for peak memory of one generation."""
    device, torch_dtype, _ = resolve(device, "float32", "mid")
    pipe = tiny_pipeline(seed=0, device=device, torch_dtype=torch_dtype)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8))
    depth = Image.fromarray(np.tile(np.linspace(0, 255, WIDTH), (HEIGHT, 1)).astype(np.uint8))
    camera = CameraTrajectory.preset("orbit_left", num_frames=FRAMES)
    arguments = {
        "prompt": "a slow orbit around a red car", "negative_prompt": "blurry", "input_image": image,
        "input_depth": depth, "camera": camera, "height": HEIGHT, "width": WIDTH, "num_frames": FRAMES,
        "num_inference_steps": steps, "seed": 7, "progress_bar_cmd": quiet,
    }

    outputs = {}

    def generate(name: str, step_cache_threshold: float | None):
        def call() -> None:
            outputs[name] = pipe(**arguments, step_cache_threshold=step_cache_threshold)
        return call

    times = interleaved_best_times(
        {"plain": generate("plain", None), "cached": generate("cached", threshold)}, repeats, device
    )
    plain, cached = outputs["plain"], outputs["cached"]
    error = max(
        ((a - b).norm() / b.norm()).item()
        for a, b in ((cached.latents, plain.latents), (cached.depth_latents, plain.depth_latents))
    )
    memory = peak_memory(generate("memory", None), device)
    cache_stats = cached.params["step_cache"]
    label = f"tiny pipeline, {FRAMES} frames {WIDTH}x{HEIGHT}, {steps} steps"
    device_name = f"{device.type} {torch_dtype}"
    speed_row = Row(
        benchmark=f"end-to-end generation: plain / step cache {threshold} ({label})",
        measured=(f"{seconds(times['cached'])} cached ({cache_stats['computed']} of {steps} steps computed, "
                  f"latents differ by {error:.1e})"),
        baseline=f"{seconds(times['plain'])} plain", ratio=times["plain"] / times["cached"], target="report",
        met=None, device=device_name,
    )
    memory_row = Row(
        benchmark=f"peak memory of one generation ({label})", measured=gib(memory),
        baseline="-", ratio=float("nan"), target="report", met=None, device=device_name,
    )
    return speed_row, memory_row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threshold", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for row in run(args.device, args.steps, args.threshold, args.repeats):
        print(f"{row.benchmark}\n  {row.measured} | {row.baseline} | ratio {row.ratio:.2f} (target {row.target})")


if __name__ == "__main__":
    main()
