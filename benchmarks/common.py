"""Shared pieces of the benchmarks: model configs, interleaved timing, peak memory, result rows.

Every benchmark compares against a baseline run in the same process, so its ratio does not depend on the machine.
Timings interleave candidate and baseline over several rounds and report medians; ratios are the median of the
per-round ratios. On a GPU they are wall times after synchronising; on the CPU they are the CPU time of one thread
(torch limited to one thread while timing), which other processes sharing the cores do not inflate, unless a
benchmark asks for wall time with torch's own threads.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import inspect
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import psutil
import torch
from diffsynth.models.wan_video_dit import WanModel
from PIL import Image

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.models import OFFICIAL_CONFIG
from diffsynth_dualcam.parallel.backend import keep_freed_cpu_memory

#: A mid-size DualCamCtrl DiT for CPU runs: the released structure (all blocks doubled, fusion into depth at the
#: first quarter, into RGB at the next three eighths) at a width and depth a CPU steps through in seconds.
MID_CONFIG: dict[str, Any] = {
    **OFFICIAL_CONFIG,
    "dim": 512, "ffn_dim": 2048, "num_heads": 4, "num_layers": 8,
    "control_block_index": list(range(8)), "rgb_inject_blocks": [0, 1], "depth_inject_blocks": [2, 3, 4],
}
#: Latent shapes [channels, T, h, w]: 17 frames at 384x512 (mid: 3,840 tokens, the largest whose dual-branch step
#: the CPU runs in seconds; 33 frames at 512x768 would have 13,824), 61 frames at 480x720 (full, the training
#: size, 21,600 tokens), and 9 frames at 64x96 for the smoke run of the tiny model.
LATENTS = {"tiny": (16, 3, 8, 12), "mid": (16, 5, 48, 64), "full": (16, 16, 60, 90)}
SIZES = tuple(LATENTS)
#: glibc ``mallopt`` parameters (malloc.h).
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
TEXT_TOKENS = 512


@dataclass
class Row:
    """One line of the benchmark table: a measured value against its in-process baseline. ``target`` names the
    quantity it bounds (the ratio, the speed-up or the measured value)."""

    benchmark: str
    measured: str
    baseline: str
    ratio: float
    target: str
    met: bool | None
    device: str
    ratio_label: str = ""  # what the ratio is, e.g. "dual / single" or "speed-up"

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-friendly)."""
        return asdict(self)

    def report(self) -> str:
        """The row as a benchmark script prints it: name, measured value, baseline, ratio against its target."""
        verdict = "" if self.met is None else f": {'met' if self.met else 'not met'}"
        lines = [self.benchmark, f"  measured  {self.measured}"]
        if self.baseline != "-":
            lines.append(f"  baseline  {self.baseline}")
        ratio = "" if math.isnan(self.ratio) else f"{self.ratio_label or 'ratio'} {self.ratio:.3f}, "
        lines.append(f"  {ratio}target {self.target}{verdict} ({self.device})")
        return "\n".join(lines)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--dtype``, ``--repeats`` and ``--size`` for every benchmark script."""
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                        help="default: float32 on the CPU, bfloat16 on a GPU")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds of each side (medians are reported)")
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
        from diffsynth_dualcam.pipeline.tiny import tiny_dit_config

        return tiny_dit_config()
    return dict(OFFICIAL_CONFIG if size == "full" else MID_CONFIG)


def wan_model_config(config: dict[str, Any]) -> dict[str, Any]:
    """The keys of a DualCamCtrl config that DiffSynth's ``WanModel`` takes: the single-branch model of that size."""
    accepted = inspect.signature(WanModel.__init__).parameters
    wan_config = {key: value for key, value in config.items() if key in accepted}
    wan_config["patch_size"] = tuple(wan_config["patch_size"])
    return wan_config


def latent_shape(size: str) -> tuple[int, int, int, int]:
    """Latent [C, T, h, w] of a benchmark size."""
    return LATENTS[size]


def time_dit_work_as_generation_runs(device: torch.device) -> None:
    """On the CPU, apply ``keep_freed_cpu_memory()`` to this process (the allocator setting recommended for CPU
    generation, see ``diffsynth_dualcam.parallel.backend``) before timing DiT work. It cannot be undone, so the
    memory and Plücker benchmarks, which measure fresh allocations, run before it in ``run_all``."""
    if device.type == "cpu":
        keep_freed_cpu_memory()


def _map_large_allocations_freshly() -> None:
    """In a measuring child: hand the free heap memory inherited from the parent back to the kernel and let glibc map
    every allocation of 128 KiB or more freshly, so that the resident set follows the live tensors whatever
    allocator settings the parent had."""
    if sys.platform == "linux" and platform.libc_ver()[0] == "glibc":
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt(_M_MMAP_MAX, 65536)
        libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
        libc.malloc_trim(0)


def _reset_peak_resident_set() -> None:
    """Restart this process's peak resident set (``ru_maxrss``) from its current resident set (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Timing:
    """The times of one function over the timed rounds, in round order."""

    runs: tuple[float, ...]

    @property
    def median(self) -> float:
        """Median time."""
        return statistics.median(self.runs)


def paired_ratios(numerator: Timing, denominator: Timing) -> list[float]:
    """The ratio of two functions' times in each round."""
    return [a / b for a, b in zip(numerator.runs, denominator.runs, strict=True)]


def paired_ratio(numerator: Timing, denominator: Timing) -> float:
    """Median over rounds of the ratio of two functions' times in the same round: a slow round (other load,
    frequency changes) slows both sides of its ratio alike."""
    return statistics.median(paired_ratios(numerator, denominator))


def interleaved_times(
    functions: dict[str, Callable[[], Any]], repeats: int, device: torch.device, warmup: int = 1,
    wall_time: bool = False,
) -> dict[str, Timing]:
    """Times of each function over ``repeats`` rounds that call them in turn, after ``warmup`` untimed rounds.

    Each round starts one function later in the order, so no function always runs first or right after a given
    one. GPU, or ``wall_time``: wall time with torch's thread settings as they are. Otherwise (CPU): CPU time of
    the calling thread, with torch limited to one thread.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    wall_time = wall_time or device.type == "cuda"
    clock = time.perf_counter if wall_time else time.thread_time
    threads = torch.get_num_threads()
    if not wall_time:
        torch.set_num_threads(1)
    names = list(functions)
    runs: dict[str, list[float]] = {name: [] for name in names}
    try:
        for round_index in range(warmup + repeats):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                synchronize(device)
                start = clock()
                result = functions[name]()
                synchronize(device)
                elapsed = clock() - start
                del result  # freeing a large output is not part of computing it
                if round_index >= warmup:
                    runs[name].append(elapsed)
    finally:
        torch.set_num_threads(threads)
    return {name: Timing(tuple(values)) for name, values in runs.items()}


def peak_memory(function: Callable[[], Any], device: torch.device) -> float:
    """Peak memory ``function`` adds, in bytes: ``torch.cuda.max_memory_allocated`` above the allocation at the
    start on a GPU; on the CPU (Linux) the peak resident set of a forked child running ``function`` above the
    child's resident set at its start (NaN elsewhere), after the child gave the parent's free heap memory back and
    restarted its peak count. The child runs on one thread: a forked process must not use the parent's OpenMP
    pool."""
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
            _map_large_allocations_freshly()
            _reset_peak_resident_set()
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


def check_agreement(reference: Sequence[torch.Tensor], value: Sequence[torch.Tensor], bound: float,
                    what: str) -> None:
    """A ValueError unless each branch's (RGB, depth) ``value`` equals its ``reference`` within relative L2 error
    ``bound``; ``what`` names the candidate in the message. A relative norm, not an elementwise bound: rounding of
    the large elements must not fail the check on elements near zero."""
    for branch, (expected, actual) in zip(("rgb", "depth"), zip(reference, value, strict=True)):
        error = ((actual.double() - expected.double()).norm() / expected.double().norm()).item()
        if not error <= bound:  # also catches NaN
            raise ValueError(f"{what} differs on the {branch} branch: relative error {error:.2e} > {bound:.0e}")


def generation_arguments(frames: int, height: int, width: int, steps: int) -> dict[str, Any]:
    """``DualCamCtrlPipeline`` arguments of an image-to-video benchmark generation: a random image, a depth ramp,
    an orbit, the pipeline's other defaults, no progress bar."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    depth = Image.fromarray(np.tile(np.linspace(0, 255, width), (height, 1)).astype(np.uint8))
    return {
        "prompt": "a slow orbit around a red car", "negative_prompt": "blurry", "input_image": image,
        "input_depth": depth, "camera": CameraTrajectory.preset("orbit_left", num_frames=frames), "height": height,
        "width": width, "num_frames": frames, "num_inference_steps": steps, "seed": 7,
        "progress_bar_cmd": lambda steps: steps,
    }


def gib(num_bytes: float) -> str:
    """Bytes as GiB (or MiB below one GiB) with two decimals."""
    if num_bytes >= 2**30:
        return f"{num_bytes / 2**30:.2f} GiB"
    return f"{num_bytes / 2**20:.1f} MiB"


def seconds(value: float) -> str:
    """A duration in s or ms."""
    return f"{value:.3f} s" if value >= 1 else f"{value * 1000:.1f} ms"
