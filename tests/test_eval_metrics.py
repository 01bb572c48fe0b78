"""Camera metrics against independent implementations: evo's APE, scipy rotations and optimisation, and
hand-computed values. Tests that need evo skip when it is not installed."""
import math

import numpy as np
import pytest
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.eval import camera_errors
from diffsynth_dualcam.eval.metrics import pose_errors, rotation_angles, smallest_rotation, umeyama_similarity


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


def evo_path(c2w: np.ndarray):
    trajectory = pytest.importorskip("evo.core.trajectory")
    return trajectory.PosePath3D(poses_se3=list(c2w))


def evo_ape(reference, estimated, relation: str) -> np.ndarray:
    """evo's per-frame APE for ``relation``, a name of ``evo.core.metrics.PoseRelation``."""
    metrics = pytest.importorskip("evo.core.metrics")
    ape = metrics.APE(metrics.PoseRelation[relation])
    ape.process_data((reference, estimated))
    return np.asarray(ape.error)


def divided_by_max(c2w: np.ndarray) -> np.ndarray:
    """CamI2V's normalisation: translations divided by their largest norm plus 1e-9."""
    c2w = c2w.copy()
    c2w[:, :3, 3] /= np.linalg.norm(c2w[:, :3, 3], axis=1).max() + 1e-9
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
    reference_path, estimated_path = evo_path(reference_rel), evo_path(estimated_rel)
    rot = evo_ape(reference_path, estimated_path, "rotation_angle_rad").sum()
    rot_deg = evo_ape(reference_path, estimated_path, "rotation_angle_deg").sum()
    trans = evo_ape(reference_path, estimated_path, "translation_part").sum()
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
    """evo's align(correct_scale=True) turns the estimated orientations too; so do we, frame by frame."""
    rng = np.random.default_rng(seed)
    reference = random_trajectory(rng)
    estimated = noisy_copy(rng, reference, angle=0.2, offset=0.5)
    result = camera_errors(reference, estimated, normalization="sim3")

    reference_path = evo_path(reference.relative().c2w)
    estimated_path = evo_path(estimated.relative().c2w)
    rotation, translation, scale = estimated_path.align(reference_path, correct_scale=True)
    rot = evo_ape(reference_path, estimated_path, "rotation_angle_rad")
    trans = evo_ape(reference_path, estimated_path, "translation_part")
    np.testing.assert_allclose(np.radians(result["per_frame"]["rot_err_deg"]), rot, rtol=0, atol=1e-6)
    np.testing.assert_allclose(result["per_frame"]["trans_err"], trans, rtol=0, atol=1e-6)
    assert result["rot_err"] == pytest.approx(rot.sum(), abs=1e-6)
    assert result["trans_err"] == pytest.approx(trans.sum(), abs=1e-6)
    aligned = np.stack(estimated_path.poses_se3)
    assert result["cammc"] == pytest.approx(cammc_by_hand(reference.relative().c2w, aligned), abs=1e-6)
    alignment = result["alignment"]
    assert not alignment["degenerate"] and alignment["scale"] == pytest.approx(scale, abs=1e-9)
    np.testing.assert_allclose(alignment["rotation"], rotation, atol=1e-9)
    np.testing.assert_allclose(alignment["translation"], translation, atol=1e-9)
    assert result["normalization"] == "sim3" and "Umeyama" in result["convention"]
    assert "orientations included" in result["convention"]
    # The alignment turns the orientations, so RotErr differs from the unaligned one.
    assert abs(result["rot_err"] - camera_errors(reference, estimated, normalization="max")["rot_err"]) > 1e-3


@pytest.mark.parametrize("normalization", ["max", "sim3"])
def test_same_motion_in_another_world_frame_and_scale_scores_zero(normalization):
    rng = np.random.default_rng(5)
    reference = random_trajectory(rng)
    estimated = noisy_copy(rng, reference, angle=0.0, offset=0.0)
    result = camera_errors(reference, estimated, normalization=normalization)
    # Under "max" the 1e-9 added to each trajectory's own scale leaves a difference of about 1e-9 per frame.
    for key in ("rot_err", "rot_err_deg_mean", "trans_err", "cammc"):
        assert result[key] == pytest.approx(0.0, abs=1e-7), key


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
    # Normalised centres (1, 0, 0) / (1 + eps) and (0, 0, 2) / (2 + eps); rotations about one axis differ by
    # 4 (1 - cos 3 deg) squared.
    eps = 1e-9
    trans_squared = (1 / (1 + eps)) ** 2 + (2 / (2 + eps)) ** 2
    assert result["trans_err"] == pytest.approx(math.sqrt(trans_squared), abs=1e-12)
    assert result["trans_err"] == pytest.approx(math.sqrt(2.0), abs=1e-8)
    assert result["cammc"] == pytest.approx(math.sqrt(4 * (1 - math.cos(three_degrees)) + trans_squared), abs=1e-12)
    assert result["per_frame"]["rot_err_deg"] == pytest.approx([0.0, 3.0], abs=1e-10)

    # Two centres are collinear: the smallest least-squares rotation turns the estimated segment (along z) onto the
    # reference one (along x), 90 deg about y, and halves it. Orientations turn with it: 90 and 93 deg of RotErr.
    aligned = camera_errors(reference, estimated, normalization="sim3")
    assert aligned["alignment"]["degenerate"] and aligned["alignment"]["scale"] == pytest.approx(0.5, abs=1e-12)
    assert aligned["alignment"]["rotation_deg"] == pytest.approx(90.0, abs=1e-10)
    assert aligned["trans_err"] == pytest.approx(0.0, abs=1e-12)
    assert aligned["per_frame"]["rot_err_deg"] == pytest.approx([90.0, 93.0], abs=1e-10)
    ninety_three = math.radians(93.0)
    assert aligned["cammc"] == pytest.approx(2.0 + math.sqrt(4 * (1 - math.cos(ninety_three))), abs=1e-12)


def pan(total_deg: float, num_frames: int = 5) -> CameraTrajectory:
    c2w = np.tile(np.eye(4), (num_frames, 1, 1))
    angles = np.linspace(0, total_deg, num_frames)[:, None]
    c2w[:, :3, :3] = Rotation.from_euler("y", angles, degrees=True).as_matrix()
    return CameraTrajectory(c2w, np.tile([1.0, 1.0, 0.5, 0.5], (num_frames, 1)))


def truck(step: np.ndarray, num_frames: int = 8) -> CameraTrajectory:
    """A straight move by ``step`` per frame, without turning."""
    c2w = np.tile(np.eye(4), (num_frames, 1, 1))
    c2w[:, :3, 3] = np.arange(num_frames)[:, None] * np.asarray(step, dtype=np.float64)
    return CameraTrajectory(c2w, np.tile([1.0, 1.0, 0.5, 0.5], (num_frames, 1)))


@pytest.mark.parametrize("normalization", ["max", "sim3"])
def test_pure_rotation_without_translation_stays_finite(normalization):
    result = camera_errors(pan(20.0), pan(16.0), normalization=normalization)
    assert result["trans_err"] == 0.0
    assert result["rot_err_deg"] == pytest.approx(0 + 1 + 2 + 3 + 4, abs=1e-9)


def test_sim3_on_coincident_centres_keeps_the_orientations_and_says_so():
    """All centres at one point: Umeyama is undefined (evo refuses); the alignment does not turn the estimate."""
    geometry = pytest.importorskip("evo.core.geometry")
    reference, estimated = pan(20.0), pan(16.0)
    with pytest.raises(geometry.GeometryException, match="Degenerate"):
        geometry.umeyama_alignment(estimated.c2w[:, :3, 3].T, reference.c2w[:, :3, 3].T, True)
    result = camera_errors(reference, estimated, normalization="sim3")
    assert result["alignment"]["degenerate"] and result["alignment"]["rotation_deg"] == 0.0
    assert result["alignment"]["scale"] == 1.0
    assert result["per_frame"]["rot_err_deg"] == pytest.approx(camera_errors(reference, estimated)["per_frame"]
                                                               ["rot_err_deg"], abs=1e-12)
    assert "coincident or collinear" in result["convention"]


def best_similarity_residual(source: np.ndarray, target: np.ndarray) -> float:
    """Smallest sum of squared distances over all similarities, by numerical optimisation from several starts."""

    def residuals(params):
        rotation = Rotation.from_rotvec(params[:3]).as_matrix()
        return (np.exp(params[6]) * source @ rotation.T + params[3:6] - target).ravel()

    starts = [np.concatenate([Rotation.random(random_state=seed).as_rotvec(), np.zeros(4)]) for seed in range(8)]
    return min(2 * least_squares(residuals, start, xtol=1e-14, ftol=1e-14, gtol=1e-14).cost for start in starts)


def test_sim3_on_a_straight_reference_is_a_least_squares_similarity_with_the_smallest_turn():
    """A straight truck leaves the rotation about the path free; any optimal rotation gives the same TransErr,
    which must equal the best over all similarities, and the one taken turns the estimate the least."""
    rng = np.random.default_rng(11)
    reference = truck([0.3, 0.0, 0.1])
    centres = truck([0.0, 0.2, 1.0]).c2w[:, :3, 3] + rng.normal(scale=0.05, size=(8, 3))
    estimated_c2w = reference.c2w.copy()
    estimated_c2w[1:, :3, :3] = Rotation.from_rotvec(rng.normal(scale=0.05, size=(7, 3))).as_matrix()
    estimated_c2w[:, :3, 3] = centres - centres[0]  # already relative to its first frame
    errors = pose_errors(reference.c2w, estimated_c2w, normalization="sim3")
    assert errors["alignment"]["degenerate"]
    expected = best_similarity_residual(estimated_c2w[:, :3, 3], reference.c2w[:, :3, 3])
    assert np.sum(errors["trans_err"] ** 2) == pytest.approx(expected, abs=1e-6)
    # The reference moves along d: the estimate's matching direction is its regression on the reference's progress
    # along d, and the rotation turns it onto d by the angle between the two.
    reference_direction = np.array([0.3, 0.0, 0.1]) / np.linalg.norm([0.3, 0.0, 0.1])
    progress = np.arange(8) - 3.5
    estimated_direction = progress @ (centres - centres.mean(axis=0))
    estimated_direction /= np.linalg.norm(estimated_direction)
    angle = math.degrees(math.acos(estimated_direction @ reference_direction))
    assert errors["alignment"]["rotation_deg"] == pytest.approx(angle, abs=1e-9)
    rotation = np.array(errors["alignment"]["rotation"])
    np.testing.assert_allclose(rotation @ estimated_direction, reference_direction, atol=1e-12)
    np.testing.assert_allclose(errors["estimated_c2w"][:, :3, :3], rotation @ estimated_c2w[:, :3, :3], atol=1e-12)


def test_sim3_turns_an_estimate_moving_the_wrong_way_and_charges_it_to_rot_err():
    reference, backwards = truck([1.0, 0.0, 0.0]), truck([-1.0, 0.0, 0.0])
    aligned = camera_errors(reference, backwards, normalization="sim3")
    assert aligned["alignment"]["degenerate"] and aligned["alignment"]["rotation_deg"] == pytest.approx(180.0)
    assert aligned["trans_err"] == pytest.approx(0.0, abs=1e-12)
    assert aligned["per_frame"]["rot_err_deg"] == pytest.approx([180.0] * 8, abs=1e-9)
    unaligned = camera_errors(reference, backwards, normalization="max")
    assert unaligned["rot_err"] == 0.0
    assert unaligned["per_frame"]["trans_err"] == pytest.approx(2 * np.arange(8) / 7, abs=1e-8)


def test_max_adds_cami2v_epsilon_to_the_largest_translation():
    """A move of 1e-9 units is divided by 2e-9 (CamI2V's max ||t|| + 1e-9), a move of 1 unit by 1 + 1e-9."""
    tiny, unit = truck([1e-9 / 7, 0.0, 0.0]), truck([1.0 / 7, 0.0, 0.0])
    result = camera_errors(tiny, unit, normalization="max")
    assert result["alignment"]["reference_scale"] == pytest.approx(2e-9, rel=1e-12)
    assert result["alignment"]["estimated_scale"] == 1.0 + 1e-9
    assert result["per_frame"]["trans_err"][-1] == pytest.approx(0.5, abs=1e-8)
    assert camera_errors(pan(10.0), pan(10.0))["alignment"]["reference_scale"] == 1e-9


def test_smallest_rotation_turns_one_direction_onto_another_by_their_angle():
    rng = np.random.default_rng(4)
    pairs = [rng.normal(size=(2, 3)) for _ in range(20)] + [np.array([[0.0, 0.3, 0.0], [0.0, -2.0, 0.0]])]
    for source, target in pairs:
        source, target = source / np.linalg.norm(source), target / np.linalg.norm(target)
        rotation = smallest_rotation(source, target)
        np.testing.assert_allclose(rotation @ source, target, atol=1e-12)
        np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-12)
        assert np.linalg.det(rotation) == pytest.approx(1.0, abs=1e-12)
        angle = Rotation.from_matrix(rotation).magnitude()
        assert angle == pytest.approx(math.acos(np.clip(source @ target, -1, 1)), abs=1e-7)


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
    geometry = pytest.importorskip("evo.core.geometry")
    rng = np.random.default_rng(7)
    source = rng.normal(size=(30, 3))
    target = 2.5 * source @ Rotation.random(random_state=8).as_matrix().T + rng.normal(size=3)
    target += rng.normal(scale=0.05, size=target.shape)
    rotation, translation, scale, degenerate = umeyama_similarity(source, target)
    evo_rotation, evo_translation, evo_scale = geometry.umeyama_alignment(source.T, target.T, with_scale=True)
    assert not degenerate
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
