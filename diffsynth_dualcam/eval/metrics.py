"""Camera-accuracy metrics between a requested and an estimated trajectory: RotErr, TransErr and CamMC.

Both trajectories are first made relative to their own first frame (``c2w_rel[i] = inv(c2w[0]) @ c2w[i]``, OpenCV
axes), so frame 0 is the identity in both. The translation compared is the camera centre of ``c2w_rel`` (the last
column: where camera i sits in the coordinates of camera 0).

* RotErr: sum over frames of the geodesic angle of ``R_ref^T R_est`` (radians; degrees reported too).
* TransErr: sum over frames of ``||t_ref - t_est||`` after scale normalisation.
* CamMC: sum over frames of the Frobenius norm of ``[R_ref | t_ref] - [R_est | t_est]`` (3x4), with the normalised
  translations.

Scale normalisation (SfM recovers poses only up to scale):

* ``"max"`` (CamI2V convention): each trajectory's translations are divided by its own largest ``||t||``; a
  trajectory without any translation is left as it is.
* ``"sim3"``: the estimated camera centres are mapped onto the reference ones by the least-squares similarity
  (rotation, translation and scale) of Umeyama (1991); the reference keeps its own units. Orientations are compared
  as relative rotations, untouched by the alignment, so RotErr is the same under both normalisations.
"""
from __future__ import annotations

from typing import Literal, Protocol

import numpy as np

Normalization = Literal["max", "sim3"]
NORMALIZATIONS: tuple[str, ...] = ("max", "sim3")

# Below this length a translation counts as zero (no camera motion to normalise by).
_ZERO_MOTION = 1e-12

#: The sentence stating each convention, repeated in every output.
CONVENTIONS: dict[str, str] = {
    "max": (
        "poses relative to frame 0 (c2w_rel = inv(c2w_0) @ c2w_i, OpenCV axes); t = camera centre of c2w_rel; "
        "each trajectory's t divided by its own max ||t|| (CamI2V); RotErr = sum_i angle(R_ref^T R_est) [rad]; "
        "TransErr = sum_i ||t_ref - t_est||; CamMC = sum_i ||[R|t]_ref - [R|t]_est||_F; *_mean = sum / frames"
    ),
    "sim3": (
        "poses relative to frame 0 (c2w_rel = inv(c2w_0) @ c2w_i, OpenCV axes); t = camera centre of c2w_rel; "
        "estimated t mapped onto the reference t by the Umeyama least-squares similarity (reference units); "
        "rotations compared relative to frame 0, not re-aligned; RotErr = sum_i angle(R_ref^T R_est) [rad]; "
        "TransErr = sum_i ||t_ref - t_est||; CamMC = sum_i ||[R|t]_ref - [R|t]_est||_F; *_mean = sum / frames"
    ),
}


class HasPoses(Protocol):
    """Anything with camera-to-world matrices ``c2w`` [F, 4, 4], such as ``CameraTrajectory``."""

    c2w: np.ndarray


def relative_to_first(c2w: np.ndarray) -> np.ndarray:
    """Express every camera-to-world matrix [F, 4, 4] in the coordinates of the first camera."""
    return np.linalg.inv(c2w[0])[None] @ c2w


def rotation_angles(rotations_a: np.ndarray, rotations_b: np.ndarray) -> np.ndarray:
    """Geodesic angle (radians) of ``A^T B`` for each pair of rotation matrices [F, 3, 3].

    ``atan2(sin, cos)`` keeps full precision at small angles, where ``arccos`` of the trace loses half the digits.
    """
    relative = np.swapaxes(rotations_a, -1, -2) @ rotations_b
    cosine = (np.trace(relative, axis1=-2, axis2=-1) - 1.0) / 2.0
    skew = np.stack(
        [
            relative[..., 2, 1] - relative[..., 1, 2],
            relative[..., 0, 2] - relative[..., 2, 0],
            relative[..., 1, 0] - relative[..., 0, 1],
        ],
        axis=-1,
    )
    sine = np.linalg.norm(skew, axis=-1) / 2.0
    return np.arctan2(sine, cosine)


def umeyama_similarity(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares similarity ``target ~ scale * rotation @ source + translation`` between point sets [N, 3].

    Umeyama (1991), eqs. 34-43, with the reflection fix. Point sets without spread (all points equal) get the
    identity rotation and unit scale, with the translation between the centroids.
    """
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centered, target_centered = source - source_mean, target - target_mean
    source_variance = np.mean(np.sum(source_centered**2, axis=1))
    if source_variance < _ZERO_MOTION**2:
        return np.eye(3), target_mean - source_mean, 1.0
    covariance = target_centered.T @ source_centered / len(source)
    u, singular_values, vt = np.linalg.svd(covariance)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1.0
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(singular_values) @ sign) / source_variance)
    translation = target_mean - scale * rotation @ source_mean
    return rotation, translation, scale


def _divide_by_max_norm(translations: np.ndarray) -> np.ndarray:
    largest = np.linalg.norm(translations, axis=1).max()
    return translations / largest if largest > _ZERO_MOTION else translations


def _check_poses(c2w: np.ndarray, name: str) -> np.ndarray:
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or len(c2w) == 0:
        raise ValueError(f"{name}: expected camera-to-world matrices of shape [F, 4, 4], got {tuple(c2w.shape)}")
    if not np.all(np.isfinite(c2w)):
        raise ValueError(f"{name}: camera-to-world matrices contain NaN or infinite values")
    return c2w


def pose_errors(
    reference_c2w: np.ndarray, estimated_c2w: np.ndarray, normalization: Normalization = "max"
) -> dict[str, np.ndarray]:
    """Per-frame errors between two camera-to-world sequences [F, 4, 4]: ``rot_err`` (radians), ``trans_err``,
    ``cammc``, each an array [F], plus the normalised translations ``reference_t`` and ``estimated_t`` [F, 3]."""
    reference_c2w = _check_poses(reference_c2w, "reference")
    estimated_c2w = _check_poses(estimated_c2w, "estimated")
    if len(reference_c2w) != len(estimated_c2w):
        raise ValueError(
            f"reference and estimated trajectories must have the same number of frames, "
            f"got {len(reference_c2w)} and {len(estimated_c2w)}"
        )
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    reference = relative_to_first(reference_c2w)
    estimated = relative_to_first(estimated_c2w)
    reference_t, estimated_t = reference[:, :3, 3], estimated[:, :3, 3]
    if normalization == "max":
        reference_t, estimated_t = _divide_by_max_norm(reference_t), _divide_by_max_norm(estimated_t)
    else:
        rotation, translation, scale = umeyama_similarity(estimated_t, reference_t)
        estimated_t = scale * estimated_t @ rotation.T + translation
    reference_rotations, estimated_rotations = reference[:, :3, :3], estimated[:, :3, :3]
    reference_rt = np.concatenate([reference_rotations, reference_t[:, :, None]], axis=2)
    estimated_rt = np.concatenate([estimated_rotations, estimated_t[:, :, None]], axis=2)
    return {
        "rot_err": rotation_angles(reference_rotations, estimated_rotations),
        "trans_err": np.linalg.norm(reference_t - estimated_t, axis=1),
        "cammc": np.linalg.norm((reference_rt - estimated_rt).reshape(len(reference_rt), -1), axis=1),
        "reference_t": reference_t,
        "estimated_t": estimated_t,
    }


def camera_errors(reference: HasPoses, estimated: HasPoses, normalization: Normalization = "max") -> dict:
    """RotErr, TransErr and CamMC between two trajectories of equal length (see the module docstring).

    Returns a JSON-ready dict: ``rot_err`` (radians, summed), ``rot_err_deg`` (summed), ``trans_err``, ``cammc``
    (summed), the per-frame means ``rot_err_mean``, ``rot_err_deg_mean``, ``trans_err_mean``, ``cammc_mean``,
    ``num_frames``, ``normalization``, ``convention`` (a sentence stating all of the above) and ``per_frame``
    (lists of the per-frame ``rot_err_deg``, ``trans_err`` and ``cammc``).
    """
    for name, trajectory in (("reference", reference), ("estimated", estimated)):
        if not hasattr(trajectory, "c2w"):
            raise TypeError(f"{name} must be a CameraTrajectory, got {type(trajectory).__name__}")
    errors = pose_errors(reference.c2w, estimated.c2w, normalization)
    num_frames = len(errors["rot_err"])
    rot_err_deg = np.degrees(errors["rot_err"])
    totals = {
        "rot_err": errors["rot_err"].sum(),
        "rot_err_deg": rot_err_deg.sum(),
        "trans_err": errors["trans_err"].sum(),
        "cammc": errors["cammc"].sum(),
    }
    result: dict = {name: float(value) for name, value in totals.items()}
    result.update({f"{name}_mean": float(value / num_frames) for name, value in totals.items()})
    result.update(
        num_frames=num_frames,
        normalization=normalization,
        convention=CONVENTIONS[normalization],
        per_frame={
            "rot_err_deg": rot_err_deg.tolist(),
            "trans_err": errors["trans_err"].tolist(),
            "cammc": errors["cammc"].tolist(),
        },
    )
    return result
