"""Camera metrics against independent implementations: evo's APE, scipy rotations and hand-computed values."""
import math

import numpy as np
import pytest
from evo.core import metrics as evo_metrics
from evo.core.geometry import umeyama_alignment
from evo.core.trajectory import PosePath3D
from scipy.spatial.transform import Rotation

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.eval import camera_errors
from diffsynth_dualcam.eval.metrics import rotation_angles, umeyama_similarity


def random_trajectory(rng: np.random.Generator, num_frames: int = 20) -> CameraTrajectory:
    c2w = np.tile(np.eye(4), (num_frames, 1, 1))
    c2w[:, :3, :3] = Rotation.random(num_frames, random_state=rng.integers(1 << 31)).as_matrix()
    c2w[:, :3, 3] = rng.normal(scale=3.0, size=(num_frames, 3))
    return CameraTrajectory(c2w, np.tile([0.8, 1.2, 0.5, 0.5], (num_frames, 1)))


def noisy_copy(rng: np.random.Generator, trajectory: CameraTrajectory, angle: float, offset: float) -> CameraTrajectory:
    """The trajectory with small random rotations and centre offsets, moved to another world frame and scale."""
    c2w = trajectory.c2w.copy()
    c2w[:, :3, :3] = Rotation.from_rotvec(rng.normal(scale=angle, size=(len(c2w), 3))).as_matrix() @ c2w[:, :3, :3]
    c2w[:, :3, 3] += rng.normal(scale=offset, size=(len(c2w), 3))
    world = np.eye(4)
    world[:3, :3] = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix()
    world[:3, 3] = rng.normal(size=3)
    c2w = world @ c2w
    c2w[:, :3, 3] *= 0.37
    return CameraTrajectory(c2w, trajectory.intrinsics)


def evo_path(c2w: np.ndarray) -> PosePath3D:
    return PosePath3D(poses_se3=list(c2w))


def evo_ape_sum(reference: PosePath3D, estimated: PosePath3D, relation: evo_metrics.PoseRelation) -> float:
    ape = evo_metrics.APE(relation)
    ape.process_data((reference, estimated))
    return float(np.sum(ape.error))


def divided_by_max(c2w: np.ndarray) -> np.ndarray:
    c2w = c2w.copy()
    c2w[:, :3, 3] /= np.linalg.norm(c2w[:, :3, 3], axis=1).max()
    return c2w


def cammc_by_hand(reference_c2w: np.ndarray, estimated_c2w: np.ndarray) -> float:
    return sum(float(np.sqrt(np.sum((a[:3, :4] - b[:3, :4]) ** 2))) for a, b in zip(reference_c2w, estimated_c2w))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_max_normalization_matches_evo_ape(seed):
    rng = np.random.default_rng(seed)
    reference = random_trajectory(rng)
    estimated = noisy_copy(rng, reference, angle=0.2, offset=0.5)
    result = camera_errors(reference, estimated, normalization="max")

    reference_rel = divided_by_max(reference.relative().c2w)
    estimated_rel = divided_by_max(estimated.relative().c2w)
    rot = evo_ape_sum(evo_path(reference_rel), evo_path(estimated_rel), evo_metrics.PoseRelation.rotation_angle_rad)
    rot_deg = evo_ape_sum(evo_path(reference_rel), evo_path(estimated_rel), evo_metrics.PoseRelation.rotation_angle_deg)
    trans = evo_ape_sum(evo_path(reference_rel), evo_path(estimated_rel), evo_metrics.PoseRelation.translation_part)
    assert result["rot_err"] == pytest.approx(rot, abs=1e-6)
    assert result["rot_err_deg"] == pytest.approx(rot_deg, abs=1e-6)
    assert result["trans_err"] == pytest.approx(trans, abs=1e-6)
    assert result["cammc"] == pytest.approx(cammc_by_hand(reference_rel, estimated_rel), abs=1e-6)
    assert result["rot_err_deg_mean"] == pytest.approx(rot_deg / len(reference), abs=1e-6)
    assert result["trans_err_mean"] == pytest.approx(trans / len(reference), abs=1e-6)
    assert result["num_frames"] == len(reference)
    assert result["normalization"] == "max" and "max ||t||" in result["convention"]
    assert rot > 0.5 and trans > 0.5  # the noise is large enough for the comparison to mean something


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sim3_normalization_matches_evo_aligned_ape(seed):
    rng = np.random.default_rng(seed)
    reference = random_trajectory(rng)
    estimated = noisy_copy(rng, reference, angle=0.2, offset=0.5)
    result = camera_errors(reference, estimated, normalization="sim3")

    reference_path = evo_path(reference.relative().c2w)
    estimated_path = evo_path(estimated.relative().c2w)
    rot = evo_ape_sum(reference_path, estimated_path, evo_metrics.PoseRelation.rotation_angle_rad)
    estimated_path.align(reference_path, correct_scale=True)
    trans = evo_ape_sum(reference_path, estimated_path, evo_metrics.PoseRelation.translation_part)
    aligned = reference.relative().c2w.copy()
    aligned[:, :3, :3] = estimated.relative().c2w[:, :3, :3]
    aligned[:, :3, 3] = estimated_path.positions_xyz
    assert result["rot_err"] == pytest.approx(rot, abs=1e-6)
    assert result["trans_err"] == pytest.approx(trans, abs=1e-6)
    assert result["cammc"] == pytest.approx(cammc_by_hand(reference.relative().c2w, aligned), abs=1e-6)
    assert result["normalization"] == "sim3" and "Umeyama" in result["convention"]


@pytest.mark.parametrize("normalization", ["max", "sim3"])
def test_same_motion_in_another_world_frame_and_scale_scores_zero(normalization):
    rng = np.random.default_rng(5)
    reference = random_trajectory(rng)
    estimated = noisy_copy(rng, reference, angle=0.0, offset=0.0)
    result = camera_errors(reference, estimated, normalization=normalization)
    for key in ("rot_err", "rot_err_deg_mean", "trans_err", "cammc"):
        assert result[key] == pytest.approx(0.0, abs=1e-9), key


def test_two_frame_golden_values():
    """Frame 1: reference turns 10 deg about y and moves 1 along x; the estimate turns 13 deg and moves 2 along z."""

    def pose(angle_deg, centre):
        c2w = np.eye(4)
        c2w[:3, :3] = Rotation.from_euler("y", angle_deg, degrees=True).as_matrix()
        c2w[:3, 3] = centre
        return c2w

    intrinsics = np.tile([1.0, 1.0, 0.5, 0.5], (2, 1))
    reference = CameraTrajectory(np.stack([np.eye(4), pose(10, [1, 0, 0])]), intrinsics)
    estimated = CameraTrajectory(np.stack([np.eye(4), pose(13, [0, 0, 2])]), intrinsics)
    result = camera_errors(reference, estimated, normalization="max")
    three_degrees = math.radians(3.0)
    assert result["rot_err"] == pytest.approx(three_degrees, abs=1e-12)
    assert result["rot_err_deg"] == pytest.approx(3.0, abs=1e-10)
    assert result["rot_err_deg_mean"] == pytest.approx(1.5, abs=1e-10)
    # Normalised centres (1, 0, 0) and (0, 0, 1); rotations about one axis differ by 4 (1 - cos 3 deg) squared.
    assert result["trans_err"] == pytest.approx(math.sqrt(2.0), abs=1e-12)
    assert result["cammc"] == pytest.approx(math.sqrt(4 * (1 - math.cos(three_degrees)) + 2.0), abs=1e-12)
    assert result["per_frame"]["rot_err_deg"] == pytest.approx([0.0, 3.0], abs=1e-10)

    # Sim(3) on two points maps the estimated segment exactly onto the reference one.
    aligned = camera_errors(reference, estimated, normalization="sim3")
    assert aligned["trans_err"] == pytest.approx(0.0, abs=1e-12)
    assert aligned["rot_err"] == pytest.approx(three_degrees, abs=1e-12)
    assert aligned["cammc"] == pytest.approx(math.sqrt(4 * (1 - math.cos(three_degrees))), abs=1e-12)


@pytest.mark.parametrize("normalization", ["max", "sim3"])
def test_pure_rotation_without_translation_stays_finite(normalization):
    def pan(total_deg):
        c2w = np.tile(np.eye(4), (5, 1, 1))
        c2w[:, :3, :3] = Rotation.from_euler("y", np.linspace(0, total_deg, 5)[:, None], degrees=True).as_matrix()
        return CameraTrajectory(c2w, np.tile([1.0, 1.0, 0.5, 0.5], (5, 1)))

    result = camera_errors(pan(20.0), pan(16.0), normalization=normalization)
    assert result["trans_err"] == 0.0
    assert result["rot_err_deg"] == pytest.approx(0 + 1 + 2 + 3 + 4, abs=1e-9)


def test_rotation_angles_agree_with_known_angles_small_and_large():
    rng = np.random.default_rng(3)
    first = Rotation.random(200, random_state=4)
    angles = np.concatenate([np.geomspace(1e-9, 1e-3, 100), rng.uniform(0, np.pi, 100)])
    axes = rng.normal(size=(200, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    second = first * Rotation.from_rotvec(angles[:, None] * axes)
    measured = rotation_angles(first.as_matrix(), second.as_matrix())
    np.testing.assert_allclose(measured, angles, rtol=1e-6, atol=1e-12)


def test_umeyama_matches_evo():
    rng = np.random.default_rng(7)
    source = rng.normal(size=(30, 3))
    target = 2.5 * source @ Rotation.random(random_state=8).as_matrix().T + rng.normal(size=3)
    target += rng.normal(scale=0.05, size=target.shape)
    rotation, translation, scale = umeyama_similarity(source, target)
    evo_rotation, evo_translation, evo_scale = umeyama_alignment(source.T, target.T, with_scale=True)
    np.testing.assert_allclose(rotation, evo_rotation, atol=1e-10)
    np.testing.assert_allclose(translation, evo_translation, atol=1e-10)
    assert scale == pytest.approx(evo_scale, abs=1e-10)


def test_bad_input_gives_clear_errors():
    rng = np.random.default_rng(0)
    reference = random_trajectory(rng, 6)
    with pytest.raises(ValueError, match="same number of frames, got 6 and 5"):
        camera_errors(reference, reference[:5])
    with pytest.raises(ValueError, match="normalization must be one of"):
        camera_errors(reference, reference, normalization="first")
    with pytest.raises(TypeError, match="estimated"):
        camera_errors(reference, np.eye(4))
