"""Training data: camera-annotated RGB + depth clips in the RealEstate10K and DL3DV layouts."""
from .clip_dataset import CameraClipDataset, ClipFiles, load_captions
from .dl3dv import DL3DVDataset
from .realestate10k import RealEstate10KDataset

DATASETS: dict[str, type[CameraClipDataset]] = {"realestate10k": RealEstate10KDataset, "dl3dv": DL3DVDataset}

__all__ = ["DATASETS", "CameraClipDataset", "ClipFiles", "DL3DVDataset", "RealEstate10KDataset", "load_captions"]
