"""The file names of the dataset layouts, apart from the datasets that read them (which need torch), so that the
command line offers them as choices without loading torch."""
from __future__ import annotations

#: RealEstate10K layout, one folder per clip: the RGB video (or its frames), the depth video, the camera metadata.
RGB_NAMES = ("video.mp4", "frames")
DEPTH_NAMES = ("depth_vitl_fp16.mp4", "depth.mp4", "depth")
META_FILE = "meta_data.json"
#: DL3DV layout, one folder per scene: image folders at full and reduced resolution, the COLMAP model (and the
#: depth video, named as in the RealEstate10K layout).
IMAGE_FOLDERS = ("images", "images_2", "images_4", "images_8")
MODEL_FOLDERS = ("sparse/0", "colmap/sparse/0")
#: The depth video ``dualcam prepare-data`` writes.
PREPARED_DEPTH_NAME = "depth.mp4"
#: layout -> (RGB sources, depth sources) a clip folder is searched for, in order (as the datasets do).
LAYOUT_SOURCES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "realestate10k": (RGB_NAMES, DEPTH_NAMES),
    "dl3dv": (IMAGE_FOLDERS, DEPTH_NAMES),
}
