"""Training data: camera-annotated RGB + depth clips in the RealEstate10K and DL3DV layouts.

The names are imported on first use (the datasets need torch; reading frames and captions does not).
"""
import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .clip_dataset import CameraClipDataset, ClipFiles, load_captions
    from .dl3dv import DL3DVDataset
    from .realestate10k import RealEstate10KDataset

    DATASETS: dict[str, type[CameraClipDataset]]

__all__ = ["DATASETS", "CameraClipDataset", "ClipFiles", "DL3DVDataset", "RealEstate10KDataset", "load_captions"]
_MODULES = {"CameraClipDataset": ".clip_dataset", "ClipFiles": ".clip_dataset", "load_captions": ".clip_dataset",
            "DL3DVDataset": ".dl3dv", "RealEstate10KDataset": ".realestate10k"}


def __getattr__(name: str) -> object:
    if name == "DATASETS":
        from .dl3dv import DL3DVDataset
        from .realestate10k import RealEstate10KDataset

        return {"realestate10k": RealEstate10KDataset, "dl3dv": DL3DVDataset}
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULES[name], __name__), name)
