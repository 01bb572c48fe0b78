"""DualCamCtrl generation on DiffSynth's pipeline API: ``DualCamCtrlPipeline`` and what it returns.

The names are imported on first use, so that ``dualcam generate`` checks its arguments without loading DiffSynth.
"""
import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .dualcam import DualCamCtrlPipeline, model_fn_dualcamctrl, official_model_configs
    from .output import DualCamCtrlOutput

__all__ = ["DualCamCtrlOutput", "DualCamCtrlPipeline", "model_fn_dualcamctrl", "official_model_configs"]
_MODULES = {"DualCamCtrlOutput": ".output", "DualCamCtrlPipeline": ".dualcam", "model_fn_dualcamctrl": ".dualcam",
            "official_model_configs": ".dualcam"}


def __getattr__(name: str) -> object:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULES[name], __name__), name)
