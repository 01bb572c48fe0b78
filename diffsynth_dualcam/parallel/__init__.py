"""Multi-process inference: the sequence parallel DiT (one video over many GPUs) and the process set-up that batch
generation (``cli.batch``) shares with it."""
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
