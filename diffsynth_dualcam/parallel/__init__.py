"""Multi-process inference: sequence parallel DiT (one video over many GPUs) and data-parallel batch generation."""
from .comm import FrameShards
from .sequence import (
    SequenceParallelState,
    enable_sequence_parallel,
    init_distributed,
    local_device,
    xfuser_available,
)

__all__ = [
    "FrameShards", "SequenceParallelState", "enable_sequence_parallel", "init_distributed", "local_device",
    "xfuser_available",
]
