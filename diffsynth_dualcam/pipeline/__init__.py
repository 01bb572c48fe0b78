"""DualCamCtrl generation on DiffSynth's pipeline API: ``DualCamCtrlPipeline`` and what it returns."""
from .dualcam import DualCamCtrlPipeline, model_fn_dualcamctrl, official_model_configs
from .output import DualCamCtrlOutput

__all__ = ["DualCamCtrlOutput", "DualCamCtrlPipeline", "model_fn_dualcamctrl", "official_model_configs"]
