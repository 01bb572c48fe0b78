"""Shared pieces of the benchmarks: model configs, interleaved timing, peak memory, result rows.

Every benchmark compares against a baseline run in the same process, so its ratio does not depend on the machine.
Timings interleave candidate and baseline and keep each one's fastest run. On a GPU they are wall times after
synchronising; on the CPU they are the CPU time of one thread (torch limited to one thread while timing), which
other processes sharing the cores do not inflate, unless a benchmark asks for wall time with torch's own threads.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import psutil
import torch

from diffsynth_dualcam.models import OFFICIAL_CONFIG

#: A mid-size DualCamCtrl DiT for CPU runs: the released structure (all blocks doubled, fusion into depth at the
#: first quarter, into RGB at the next three eighths) at a width and depth a CPU steps through in seconds.
MID_CONFIG: dict[str, Any] = {
    **OFFICIAL_CONFIG,
    "dim": 512, "ffn_dim": 2048, "num_heads": 4, "num_layers": 8,
    "control_block_index": list(range(8)), "rgb_inject_blocks": [0, 1], "depth_inject_blocks": [2, 3, 4],
}
#: Latent shapes [channels, T, h, w]: 9 frames at 192x256 (mid), 61 frames at 480x720 (full, the training size),
#: and 9 frames at 64x96 for the smoke run of the tiny model.
LATENTS = {"tiny": (16, 3, 8, 12), "mid": (16, 3, 24, 32), "full": (16, 16, 60, 90)}
SIZES = tuple(LATENTS)
TEXT_TOKENS = 512
DUALCAM_ONLY_KEYS = ("rgb_inject_blocks", "depth_inject_blocks", "control_block_index", "use_gate_3d_linear", "update")


@dataclass
class Row:
    """One line of the benchmark table: a measured value against its in-process baseline."""

    benchmark: str
    measured: str
    baseline: str
    ratio: float
    target: str
    met: bool | None
    device: str

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-friendly)."""
        return asdict(self)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--dtype``, ``--repeats`` and ``--size`` for every benchmark script."""
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                        help="default: float32 on the CPU, bfloat16 on a GPU")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side (the fastest is kept)")
    parser.add_argument("--size", choices=SIZES, default=None,
                        help="model and latent size (default: mid on the CPU, full on a GPU; tiny: smoke run)")


def resolve(device: str, dtype: str | None, size: str | None) -> tuple[torch.device, torch.dtype, str]:
    """Device, dtype and size with the per-device defaults; rejects a CUDA request without a GPU."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was given, but no CUDA device is available")
    if dtype is None:
        dtype = "float32" if device.type == "cpu" else "bfloat16"
    if size is None:
        size = "mid" if device.type == "cpu" else "full"
    return device, getattr(torch, dtype), size


def model_config(size: str) -> dict[str, Any]:
    """The DualCamCtrl DiT config of a benchmark size."""
    if size == "tiny":
        from diffsynth_dualcam.testing import tiny_dit_config

        return tiny_dit_config()
    return dict(OFFICIAL_CONFIG if size == "full" else MID_CONFIG)


def latent_shape(size: str) -> tuple[int, int, int, int]:
    """Latent [C, T, h, w] of a benchmark size."""
    return LATENTS[size]


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_best_times(
    functions: dict[str, Callable[[], Any]], repeats: int, device: torch.device, warmup: int = 1,
    wall_time: bool = False,
) -> dict[str, float]:
    """Fastest time of each function over ``repeats`` rounds that call them in turn (after ``warmup`` rounds).

    GPU, or ``wall_time``: wall time with torch's thread settings as they are. Otherwise (CPU): single-thread CPU
    time of the calling thread.
    """
    wall_time = wall_time or device.type == "cuda"
    clock = time.perf_counter if wall_time else time.thread_time
    threads = torch.get_num_threads()
    if not wall_time:
        torch.set_num_threads(1)
    best = {name: float("inf") for name in functions}
    try:
        for round_index in range(warmup + repeats):
            for name, function in functions.items():
                synchronize(device)
                start = clock()
                result = function()
                synchronize(device)
                elapsed = clock() - start
                del result  # freeing a large output is not part of computing it
                if round_index >= warmup:
                    best[name] = min(best[name], elapsed)
    finally:
        torch.set_num_threads(threads)
    return best


def peak_memory(function: Callable[[], Any], device: torch.device) -> float:
    """Peak memory ``function`` adds, in bytes: ``torch.cuda.max_memory_allocated`` above the allocation at the
    start on a GPU; on the CPU (Linux) the peak resident set of a forked child running ``function`` above the
    child's resident set at its start (NaN elsewhere). The child runs on one thread: a forked process must not
    use the parent's OpenMP pool."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        function()
        synchronize(device)
        return float(torch.cuda.max_memory_allocated(device) - start)
    if sys.platform != "linux":
        return float("nan")
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        status = 1
        try:
            torch.set_num_threads(1)
            start = psutil.Process().memory_info().rss
            function()
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
            os.write(write_end, str(peak - start).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        reported = pipe.read()
    _, status = os.waitpid(child, 0)
    if status != 0 or not reported:
        raise RuntimeError(f"the memory-measuring child process failed (wait status {status})")
    return float(reported)


def gib(num_bytes: float) -> str:
    """Bytes as GiB (or MiB below one GiB) with two decimals."""
    if num_bytes >= 2**30:
        return f"{num_bytes / 2**30:.2f} GiB"
    return f"{num_bytes / 2**20:.1f} MiB"


def seconds(value: float) -> str:
    """A duration in s or ms."""
    return f"{value:.3f} s" if value >= 1 else f"{value * 1000:.1f} ms"
