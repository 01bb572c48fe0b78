"""Long camera paths: chained clips over an RGB-D world cache (see docs/long_paths.md)."""
from .cache import Alignment, WorldCache, robust_scale_shift
from .chain import ChainResult, ClipRecord, clip_ranges, generate_chained

__all__ = ["Alignment", "ChainResult", "ClipRecord", "WorldCache", "clip_ranges", "generate_chained",
           "robust_scale_shift"]
