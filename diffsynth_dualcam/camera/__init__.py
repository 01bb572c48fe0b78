"""Camera trajectories: formats, presets, Plücker conditioning and plots (see docs/camera.md)."""
from typing import TYPE_CHECKING

from .trajectory import CameraTrajectory

if TYPE_CHECKING:
    from .plucker import pack_plucker

__all__ = ["CameraTrajectory", "pack_plucker"]


def __getattr__(name: str) -> object:
    # pack_plucker needs torch, which reading, writing and plotting camera files does not.
    if name == "pack_plucker":
        from .plucker import pack_plucker

        return pack_plucker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
