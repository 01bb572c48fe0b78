"""Long camera paths: chained clips over an RGB-D world cache (see docs/long_paths.md)."""
from .cache import Alignment, WorldCache, robust_scale_shift
from .chain import ChainResult, ClipRecord, clip_ranges, generate_chained
from .long import ChainedOutput, generate_long

__all__ = ["Alignment", "ChainResult", "ChainedOutput", "ClipRecord", "WorldCache", "clip_ranges", "generate_chained",
           "generate_long", "robust_scale_shift"]
