"""Evaluation: camera accuracy of generated videos (pose estimation by SfM, RotErr / TransErr / CamMC)."""
from .metrics import camera_errors
from .sfm import EstimatedTrajectory, PoseEstimationError, UnregisteredFramesWarning, estimate_trajectory

__all__ = [
    "EstimatedTrajectory",
    "PoseEstimationError",
    "UnregisteredFramesWarning",
    "camera_errors",
    "estimate_trajectory",
]
