"""Tiled VAE decoding (the pipeline's default) against decoding the whole latent video at once.

Tiling bounds the decoder's activations by the tile size at the cost of decoding the tile overlaps twice. On a GPU:
the real-width Wan2.1 VAE at 61 frames 480x720 with the pipeline's tiles (30x52, stride 15x26). On the CPU: a
narrow VAE (same architecture, base width 16) at 5 frames 128x192 with tiles scaled down alike (8x12, stride 4x6).
Peak memory is ``torch.cuda.max_memory_allocated`` on a GPU and the resident-set rise of a forked child on the CPU.

    .venv/bin/python benchmarks/bench_vae.py [--device cuda] [--size mid|full] [--repeats 5]
"""
from __future__ import annotations

import argparse

import torch
from common import Row, add_common_arguments, gib, interleaved_times, paired_ratio, peak_memory, resolve, seconds
from diffsynth.models.wan_video_vae import WanVideoVAE

from diffsynth_dualcam.pipeline.tiny import TinyWanVideoVAE

#: (latents [C, T, h, w], tile size, tile stride) per benchmark size.
SETTINGS = {
    "tiny": ((16, 2, 8, 12), (4, 6), (2, 3)),
    "mid": ((16, 2, 16, 24), (8, 12), (4, 6)),
    "full": ((16, 16, 60, 90), (30, 52), (15, 26)),
}


def run(device: str = "cpu", dtype: str | None = None, size: str | None = None,
        repeats: int = 5) -> tuple[Row, Row]:
    """Rows for decode time and for peak memory, each tiled / untiled."""
    device, torch_dtype, size = resolve(device, dtype, size)
    latents_shape, tile_size, tile_stride = SETTINGS[size]
    with torch.device(device):
        vae = WanVideoVAE() if size == "full" else TinyWanVideoVAE(dim=8 if size == "tiny" else 16)
    vae = vae.to(dtype=torch_dtype).eval().requires_grad_(False)
    latents = torch.randn(1, *latents_shape, generator=torch.Generator().manual_seed(0)).to(device, torch_dtype)

    def decode(tiled: bool):
        return lambda: vae.decode(latents, device=device, tiled=tiled, tile_size=tile_size, tile_stride=tile_stride)

    with torch.inference_mode():
        times = interleaved_times({"tiled": decode(True), "whole": decode(False)}, repeats, device)
        peaks = {"tiled": peak_memory(decode(True), device), "whole": peak_memory(decode(False), device)}
    frames = 4 * latents_shape[1] - 3
    label = f"{frames} frames {8 * latents_shape[2]}x{8 * latents_shape[3]}, tiles {tile_size[0]}x{tile_size[1]}"
    device_name = f"{device.type} {torch_dtype}"
    time_row = Row(
        benchmark=f"VAE decode time, tiled vs whole ({label})", measured=f"{seconds(times['tiled'].median)} tiled",
        baseline=f"{seconds(times['whole'].median)} whole", ratio=paired_ratio(times["tiled"], times["whole"]),
        ratio_label="tiled / whole", target="report", met=None, device=device_name,
    )
    memory_row = Row(
        benchmark=f"VAE decode peak memory, tiled vs whole ({label})", measured=f"{gib(peaks['tiled'])} tiled",
        baseline=f"{gib(peaks['whole'])} whole", ratio=peaks["tiled"] / max(peaks["whole"], 1),
        ratio_label="tiled / whole", target="ratio < 1",
        met=peaks["tiled"] < peaks["whole"], device=device_name,
    )
    return time_row, memory_row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    args = parser.parse_args()
    for row in run(args.device, args.dtype, args.size, args.repeats):
        print(row.report())


if __name__ == "__main__":
    main()
