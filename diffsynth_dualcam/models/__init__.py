"""The DualCamCtrl DiT and its fusion modules, the DiT's registration with DiffSynth (``registry``), its checkpoint
files (``checkpoints``), the step cache and the depth estimator.

The names are imported on first use, so that the light modules here (``config``, ``checkpoints``' file names,
``depth_estimator``) load without torch.
"""
import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import CONFIG_KEYS, OFFICIAL_CONFIG, TINY_CONFIG
    from .dit import DualCamCtrlDiT
    from .fusion import LinearFusion, SigmaFusion, StackFusion, tokens_to_volume, volume_to_tokens

__all__ = [
    "CONFIG_KEYS", "OFFICIAL_CONFIG", "TINY_CONFIG", "DualCamCtrlDiT", "LinearFusion", "SigmaFusion",
    "StackFusion", "tokens_to_volume", "volume_to_tokens",
]
_MODULES = {"CONFIG_KEYS": ".config", "OFFICIAL_CONFIG": ".config", "TINY_CONFIG": ".config",
            "DualCamCtrlDiT": ".dit", "LinearFusion": ".fusion", "SigmaFusion": ".fusion", "StackFusion": ".fusion",
            "tokens_to_volume": ".fusion", "volume_to_tokens": ".fusion"}


def __getattr__(name: str) -> object:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULES[name], __name__), name)
