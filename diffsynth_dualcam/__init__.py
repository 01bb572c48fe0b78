"""DualCamCtrl as a DiffSynth-Studio 2.x plugin: importing the package registers the DiT with DiffSynth."""
# Pillow must load its zlib before pycolmap's bundled one, or PNG writing breaks in the same process.
import PIL.Image  # noqa: F401

from .models import OFFICIAL_CONFIG, DualCamCtrlDiT
from .pipeline import DualCamCtrlOutput, DualCamCtrlPipeline
from .registry import register_checkpoint

__all__ = ["OFFICIAL_CONFIG", "DualCamCtrlDiT", "DualCamCtrlOutput", "DualCamCtrlPipeline", "register_checkpoint"]
