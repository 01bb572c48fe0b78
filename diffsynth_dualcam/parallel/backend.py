"""Which kernels, compilation and CPU allocator settings the DiT runs with: reported at the start of a generation."""
from __future__ import annotations

import ctypes
import ctypes.util
import platform

import torch
from diffsynth.models import wan_video_dit

#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
#: Free memory at the top of the heap that glibc keeps before giving some back to the kernel (mallopt takes an int).
_KEPT_FREE_BYTES = 2**31 - 1
#: Whether ``keep_freed_cpu_memory`` took effect in this process (it cannot be undone).
_cpu_memory_kept = False


def attention_backend() -> str:
    """The kernel of ``diffsynth.models.wan_video_dit.flash_attention`` (the DiT's self- and cross-attention).

    DiffSynth picks the first available of FlashAttention 3, FlashAttention 2 and SageAttention, else PyTorch's
    ``scaled_dot_product_attention`` (which itself picks flash / memory-efficient / math kernels on a GPU).
    """
    if wan_video_dit.FLASH_ATTN_3_AVAILABLE:
        return "flash_attention_3 (flash_attn_interface)"
    if wan_video_dit.FLASH_ATTN_2_AVAILABLE:
        return "flash_attention_2 (flash_attn)"
    if wan_video_dit.SAGE_ATTN_AVAILABLE:
        return "sage_attention (sageattention)"
    return "torch scaled_dot_product_attention"


def compile_dit(pipe: torch.nn.Module, mode: str = "default") -> None:
    """Compile every ``DiTBlock`` of the pipeline's DiT (RGB and depth) with ``torch.compile``.

    DiffSynth's regional compilation (``compile_pipeline``): one compiled graph serves all blocks of a shape, so
    compiling costs seconds, and dynamic shapes avoid recompiling for another resolution. The first denoising
    step pays the compilation.
    """
    pipe.compile_pipeline(mode=mode, dynamic=True, fullgraph=False, compile_models=["dit"])


def keep_freed_cpu_memory() -> bool:
    """Make glibc's ``malloc`` serve every CPU tensor from its heap and keep freed memory for reuse (True), or do
    nothing outside glibc (False). Applies to the whole process.

    By default glibc maps each allocation above its mmap threshold (at most 32 MiB) fresh from the kernel and
    unmaps it when it is freed, so every layer of a CPU forward whose activations are larger page-faults and zeroes
    them anew. On the benchmark DiT (dim 512, 3,840 tokens) the batch-2 activations of merged guidance cross that
    line where the batch-1 ones of two separate calls stay under it, which made the merged call about 10% slower
    than two calls; kept memory makes it as fast or faster. The cost: the process holds on to its peak memory until
    it exits.
    """
    global _cpu_memory_kept
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    applied = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _KEPT_FREE_BYTES))
    _cpu_memory_kept = _cpu_memory_kept or applied
    return applied


def configure_runtime(pipe: torch.nn.Module, compile: bool = False) -> str:
    """Prepare a process that generates with ``pipe`` and return its ``runtime_summary``.

    A DiT computing on the CPU gets ``keep_freed_cpu_memory`` (its activations are then reused instead of
    page-faulted in afresh at every layer, which merged guidance needs to be no slower than two calls); ``compile``
    compiles the DiT blocks (``compile_dit``).
    """
    if torch.device(pipe.device).type == "cpu":
        keep_freed_cpu_memory()
    if compile:
        compile_dit(pipe)
    return runtime_summary(pipe)


def runtime_summary(pipe: torch.nn.Module) -> str:
    """One line: device, dtype, attention kernel, sequence parallel state, and the CPU allocator setting when it
    is applied."""
    state = getattr(pipe.dit, "sequence_parallel", None)
    parallel = "off" if state is None else f"{state.world_size} ranks ({'xfuser' if state.use_xfuser else 'ulysses'})"
    allocator = "; cpu allocator: keeps freed memory" if _cpu_memory_kept else ""
    return (f"DiT on {pipe.device} {str(pipe.torch_dtype).replace('torch.', '')}; attention: {attention_backend()}; "
            f"sequence parallel: {parallel}{allocator}")
