"""Which kernels and compilation the DiT runs with: reported at the start of a generation."""
from __future__ import annotations

import torch
from diffsynth.models import wan_video_dit


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


def runtime_summary(pipe: torch.nn.Module) -> str:
    """One line: device, dtype, attention kernel, sequence parallel state."""
    state = getattr(pipe.dit, "sequence_parallel", None)
    parallel = "off" if state is None else f"{state.world_size} ranks ({'xfuser' if state.use_xfuser else 'ulysses'})"
    return (f"DiT on {pipe.device} {str(pipe.torch_dtype).replace('torch.', '')}; attention: {attention_backend()}; "
            f"sequence parallel: {parallel}")
