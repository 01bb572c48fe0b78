"""Camera-accuracy metrics between a requested and an estimated trajectory: RotErr, TransErr and CamMC.

Both trajectories are first made relative to their own first frame (``c2w_rel[i] = inv(c2w[0]) @ c2w[i]``, OpenCV
axes), so frame 0 is the identity in both. The translation compared is the camera centre of ``c2w_rel`` (the last
column: where camera i sits in the coordinates of camera 0).

* RotErr: sum over frames of the geodesic angle of ``R_ref^T R_est`` (radians; degrees reported too).
* TransErr: sum over frames of ``||t_ref - t_est||`` after normalisation.
* CamMC: sum over frames of the Frobenius norm of ``[R_ref | t_ref] - [R_est | t_est]`` (3x4), after normalisation.

Normalisation (structure from motion recovers poses only up to a similarity):

* ``"max"`` (CamI2V convention): each trajectory's translations are divided by its own ``max ||t|| + 1e-9``
  (CamI2V's epsilon, in the trajectory's units, so a trajectory that does not move stays at zero). Rotations are
  compared as they are, relative to frame 0.
* ``"sim3"`` (the alignment of evo's ``align(correct_scale=True)``): the similarity ``x -> s R x + T`` fitted by
  Umeyama's least squares (1991) from the estimated to the reference camera centres is applied to the whole
  estimated poses, orientations included: ``R_est -> R R_est``, ``t_est -> s R t_est + T``. The reference keeps its
  units. Umeyama's rotation is unique only when the centres' cross-covariance has rank >= 2. Below that (centres
  coincident, as on a pure pan, or collinear, as on a straight truck or dolly, where evo refuses to align) the
  least-squares rotation that turns by the smallest angle is used: none at rank 0, at rank 1 the smallest turn of
  the estimated path's direction onto the reference's. The scale is then least-squares for that rotation (1 when
  the estimate does not move), and the result reports ``alignment["degenerate"]``. Since the alignment may turn the
  estimate, an estimate moving the wrong way shows in RotErr under "sim3" but in TransErr under "max".
"""
from __future__ import annotations

from typing import Literal, NamedTuple, Protocol

import numpy as np

Normalization = Literal["max", "sim3"]
NORMALIZATIONS: tuple[str, ...] = ("max", "sim3")

#: Added to the largest ||t|| before dividing by it under "max", as CamI2V does.
MAX_NORM_EPS = 1e-9
# Camera centres whose RMS spread is below this (in their own units) count as one point: no motion to align.
_NO_SPREAD = 1e-9
# Umeyama's rotation is unique when the cross-covariance has rank >= 2. Its singular values are bounded by
# sqrt(var_source * var_target); a second one below this fraction of that bound counts as rank < 2, well above the
# rounding noise of an exactly collinear path (~1e-16) and well below the spread of any curved one.
_RANK_TOLERANCE = 1e-6

_COMMON = (
    "poses relative to frame 0 (c2w_rel = inv(c2w_0) @ c2w_i, OpenCV axes); t = camera centre of c2w_rel; "
)
_DEFINITIONS = (
    "RotErr = sum_i angle(R_ref^T R_est) [rad]; TransErr = sum_i ||t_ref - t_est||; "
    "CamMC = sum_i ||[R|t]_ref - [R|t]_est||_F; *_mean = sum / frames (frame 0 included)"
)

#: The sentence stating each convention, repeated in every output.
CONVENTIONS: dict[str, str] = {
    "max": _COMMON + (
        "each trajectory's t divided by its own max ||t|| + 1e-9 (CamI2V); rotations not aligned; "
    ) + _DEFINITIONS,
    "sim3": _COMMON + (
        "estimated poses mapped by the Sim(3) x -> s R x + T fitted by Umeyama least squares from the estimated to "
        "the reference centres, orientations included (R_est -> R R_est, t_est -> s R t_est + T; as evo "
        "align(correct_scale=True); reference units); where the centres do not fix R (coincident or collinear, "
        "cross-covariance rank < 2) the least-squares R of smallest angle (I at rank 0), with s least-squares "
        "for it (1 if the estimate does not move); "
    ) + _DEFINITIONS,
}


class HasPoses(Protocol):
    """Anything with camera-to-world matrices ``c2w`` [F, 4, 4], such as ``CameraTrajectory``."""

    c2w: np.ndarray


class Similarity(NamedTuple):
    """``target ~ scale * rotation @ source + translation``; ``degenerate`` when the points did not determine the
    rotation (see ``umeyama_similarity``)."""

    rotation: np.ndarray
    translation: np.ndarray
    scale: float
    degenerate: bool


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


def smallest_rotation(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The rotation by the smallest angle that turns unit vector ``source`` into unit vector ``target`` [3].

    For opposite vectors every half turn about a perpendicular axis qualifies; the axis taken is perpendicular to
    ``source`` and to the coordinate axis least aligned with it.
    """
    cosine = float(source @ target)
    if cosine < -1.0 + 1e-9:
        helper = np.eye(3)[np.argmin(np.abs(source))]
        axis = np.cross(source, helper)
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    x, y, z = np.cross(source, target)
    skew = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + skew + skew @ skew / (1.0 + cosine)


def umeyama_similarity(source: np.ndarray, target: np.ndarray) -> Similarity:
    """Least-squares similarity ``target ~ scale * rotation @ source + translation`` between point sets [N, 3].

    Umeyama (1991), eqs. 34-43, with the reflection fix. The rotation is unique when the cross-covariance has rank
    >= 2. Below that (either set without spread or collinear, or two uncorrelated sets) many rotations are optimal,
    all leaving the same residual, and the one with the smallest angle is taken: the identity at rank 0; at rank 1
    the smallest rotation that turns the covariance's leading source direction (the direction along which the
    source moves with the target) into its leading target direction. The scale is then the least-squares one for
    that rotation (1 when ``source`` has no spread, since any scale fits), and ``degenerate`` is True.
    """
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centered, target_centered = source - source_mean, target - target_mean
    source_variance = float(np.mean(np.sum(source_centered**2, axis=1)))
    target_variance = float(np.mean(np.sum(target_centered**2, axis=1)))
    covariance = target_centered.T @ source_centered / len(source)
    u, singular_values, vt = np.linalg.svd(covariance)
    if min(source_variance, target_variance) <= _NO_SPREAD**2:
        rank = 0
    else:
        bound = np.sqrt(source_variance * target_variance)
        rank = int(np.count_nonzero(singular_values > _RANK_TOLERANCE * bound))
    if rank >= 2:
        sign = np.eye(3)
        if np.linalg.det(u) * np.linalg.det(vt) < 0:
            sign[2, 2] = -1.0
        rotation = u @ sign @ vt
        scale = float(np.trace(np.diag(singular_values) @ sign) / source_variance)
    else:
        rotation = smallest_rotation(vt[0], u[:, 0]) if rank == 1 else np.eye(3)
        if source_variance <= _NO_SPREAD**2:
            scale = 1.0
        else:
            scale = max(0.0, float(np.trace(rotation.T @ covariance))) / source_variance
    return Similarity(rotation, target_mean - scale * rotation @ source_mean, scale, rank < 2)


def _check_poses(c2w: np.ndarray, name: str) -> np.ndarray:
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or len(c2w) == 0:
        raise ValueError(f"{name}: expected camera-to-world matrices of shape [F, 4, 4], got {tuple(c2w.shape)}")
    if not np.all(np.isfinite(c2w)):
        raise ValueError(f"{name}: camera-to-world matrices contain NaN or infinite values")
    return c2w


def _alignment_summary(similarity: Similarity) -> dict:
    angle = float(np.degrees(rotation_angles(np.eye(3), similarity.rotation)))
    return {
        "scale": similarity.scale,
        "rotation_deg": angle,
        "rotation": similarity.rotation.tolist(),
        "translation": similarity.translation.tolist(),
        "degenerate": similarity.degenerate,
    }


def pose_errors(
    reference_c2w: np.ndarray, estimated_c2w: np.ndarray, normalization: Normalization = "max"
) -> dict:
    """Per-frame errors between two camera-to-world sequences [F, 4, 4] (see the module docstring).

    Returns ``rot_err`` (radians), ``trans_err`` and ``cammc``, each an array [F]; ``reference_c2w`` and
    ``estimated_c2w`` [F, 4, 4], the poses as compared (relative to frame 0, normalised or aligned); and
    ``alignment``, a JSON-ready dict: the divisors ``reference_scale`` and ``estimated_scale`` under "max", the
    similarity (``scale``, ``rotation_deg``, ``rotation``, ``translation``, ``degenerate``) under "sim3".
    """
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
    if normalization == "max":
        reference_scale = float(np.linalg.norm(reference[:, :3, 3], axis=1).max()) + MAX_NORM_EPS
        estimated_scale = float(np.linalg.norm(estimated[:, :3, 3], axis=1).max()) + MAX_NORM_EPS
        reference[:, :3, 3] /= reference_scale
        estimated[:, :3, 3] /= estimated_scale
        alignment = {"reference_scale": reference_scale, "estimated_scale": estimated_scale}
    else:
        similarity = umeyama_similarity(estimated[:, :3, 3], reference[:, :3, 3])
        estimated[:, :3, :3] = similarity.rotation @ estimated[:, :3, :3]
        estimated[:, :3, 3] = similarity.scale * estimated[:, :3, 3] @ similarity.rotation.T + similarity.translation
        alignment = _alignment_summary(similarity)
    difference = (reference[:, :3, :4] - estimated[:, :3, :4]).reshape(len(reference), -1)
    return {
        "rot_err": rotation_angles(reference[:, :3, :3], estimated[:, :3, :3]),
        "trans_err": np.linalg.norm(reference[:, :3, 3] - estimated[:, :3, 3], axis=1),
        "cammc": np.linalg.norm(difference, axis=1),
        "reference_c2w": reference,
        "estimated_c2w": estimated,
        "alignment": alignment,
    }


def camera_errors(reference: HasPoses, estimated: HasPoses, normalization: Normalization = "max") -> dict:
    """RotErr, TransErr and CamMC between two trajectories of equal length (see the module docstring).

    Returns a JSON-ready dict: ``rot_err`` (radians, summed), ``rot_err_deg`` (summed), ``trans_err``, ``cammc``
    (summed), the per-frame means ``rot_err_mean``, ``rot_err_deg_mean``, ``trans_err_mean``, ``cammc_mean``,
    ``num_frames``, ``normalization``, ``convention`` (a sentence stating all of the above), ``alignment`` (what
    the normalisation did, see ``pose_errors``) and ``per_frame`` (lists of the per-frame ``rot_err_deg``,
    ``trans_err`` and ``cammc``).
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
        alignment=errors["alignment"],
        per_frame={
            "rot_err_deg": rot_err_deg.tolist(),
            "trans_err": errors["trans_err"].tolist(),
            "cammc": errors["cammc"].tolist(),
        },
    )
    return result
