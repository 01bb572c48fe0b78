"""DualCamCtrl as a DiffSynth-Studio 2.x plugin.

The names below are imported on first use, so that the command line answers without loading torch and DiffSynth.
Using any of them (``from diffsynth_dualcam import DualCamCtrlDiT``) imports ``diffsynth_dualcam.models.registry``,
which registers the DiT with DiffSynth.
"""
import importlib
from typing import TYPE_CHECKING

# Pillow must load its zlib before pycolmap's bundled one, or PNG writing breaks in the same process.
import PIL.Image  # noqa: F401

if TYPE_CHECKING:
    from .models import OFFICIAL_CONFIG, DualCamCtrlDiT
    from .models.registry import register_checkpoint
    from .pipeline import DualCamCtrlOutput, DualCamCtrlPipeline

__all__ = ["OFFICIAL_CONFIG", "DualCamCtrlDiT", "DualCamCtrlOutput", "DualCamCtrlPipeline", "register_checkpoint"]
_MODULES = {"OFFICIAL_CONFIG": ".models", "DualCamCtrlDiT": ".models", "DualCamCtrlOutput": ".pipeline",
            "DualCamCtrlPipeline": ".pipeline", "register_checkpoint": ".models.registry"}


def __getattr__(name: str) -> object:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    importlib.import_module(".models.registry", __name__)
    return getattr(importlib.import_module(_MODULES[name], __name__), name)
