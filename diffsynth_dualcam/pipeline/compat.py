"""Workarounds for upstream gaps, each applied only where the upstream function is missing.

DiffSynth 2.1.x frees cached memory with ``getattr(torch, device_type).empty_cache()`` whenever it moves offloaded
models, and checks ``vram_limit`` with ``getattr(torch, device_type).mem_get_info(device)``. torch 2.14 has neither
function in ``torch.cpu``, so every offload path fails on a CPU-only machine. The CPU allocator keeps no cache
(``empty_cache`` has nothing to free) and ``mem_get_info`` is answered with the system's (free, total) bytes, which
is what "memory of the computation device" means on a CPU.
"""
from __future__ import annotations

import psutil
import torch


def cpu_empty_cache() -> None:
    """No-op: the CPU allocator returns freed memory to the system itself."""


def cpu_mem_get_info(device: str | torch.device | None = None) -> tuple[int, int]:
    """(free, total) bytes of system memory, the CPU counterpart of ``torch.cuda.mem_get_info``."""
    memory = psutil.virtual_memory()
    return int(memory.available), int(memory.total)


def patch_torch_cpu() -> list[str]:
    """Add the ``torch.cpu`` functions DiffSynth calls when they are missing; returns the names added."""
    added = []
    for name, function in (("empty_cache", cpu_empty_cache), ("mem_get_info", cpu_mem_get_info)):
        if not hasattr(torch.cpu, name):
            setattr(torch.cpu, name, function)
            added.append(name)
    return added
