"""Camera trajectories: formats, presets, Plücker conditioning and plots (see docs/camera.md)."""
from .plucker import pack_plucker
from .trajectory import CameraTrajectory

__all__ = ["CameraTrajectory", "pack_plucker"]
