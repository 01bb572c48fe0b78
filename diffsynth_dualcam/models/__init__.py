"""The DualCamCtrl DiT and its fusion modules."""
from .config import CONFIG_KEYS, OFFICIAL_CONFIG, TINY_CONFIG
from .dit import DualCamCtrlDiT
from .fusion import LinearFusion, SigmaFusion, StackFusion, tokens_to_volume, volume_to_tokens

__all__ = [
    "CONFIG_KEYS", "OFFICIAL_CONFIG", "TINY_CONFIG", "DualCamCtrlDiT", "LinearFusion", "SigmaFusion",
    "StackFusion", "tokens_to_volume", "volume_to_tokens",
]
