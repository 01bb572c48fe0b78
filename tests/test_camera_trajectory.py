"""CameraTrajectory: validation, relative poses, cover-crop, resampling, composition, RealEstate10K rows."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from diffsynth_dualcam.camera import CameraTrajectory


def rigid(rotvec, centre) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    pose[:3, 3] = centre
    return pose


def random_trajectory(seed: int, num_frames: int = 6) -> CameraTrajectory:
    rng = np.random.default_rng(seed)
    c2w = np.stack([rigid(rng.normal(size=3), rng.normal(size=3)) for _ in range(num_frames)])
    return CameraTrajectory(c2w, rng.uniform(0.3, 1.2, size=(num_frames, 4)), (64, 48))


vectors = st.tuples(*[st.floats(-3, 3)] * 3)


@settings(max_examples=50, deadline=None)
@given(poses=st.lists(st.tuples(vectors, vectors), min_size=1, max_size=5), world=st.tuples(vectors, vectors))
def test_relative_is_invariant_to_a_rigid_change_of_world(poses, world):
    c2w = np.stack([rigid(rotvec, centre) for rotvec, centre in poses])
    intrinsics = np.tile([0.5, 0.9, 0.5, 0.5], (len(poses), 1))
    moved = CameraTrajectory(rigid(*world) @ c2w, intrinsics).relative()
    original = CameraTrajectory(c2w, intrinsics).relative()
    np.testing.assert_allclose(moved.c2w, original.c2w, atol=1e-9)
    np.testing.assert_allclose(original.c2w[0], np.eye(4), atol=1e-12)


def test_relative_follows_the_spec_formula():
    trajectory = random_trajectory(1)
    w2c = np.linalg.inv(trajectory.c2w)
    np.testing.assert_allclose(trajectory.relative().c2w, w2c[0] @ trajectory.c2w, atol=1e-12)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c2w, k: c2w.__setitem__((3, 0, 3), np.nan), "frame 3: c2w contains NaN or inf"),
        (lambda c2w, k: k.__setitem__((2, 1), np.inf), "frame 2: intrinsics contains NaN or inf"),
        (lambda c2w, k: c2w.__setitem__((2, slice(0, 3), 0), [1.1, 0, 0]), "frame 2: rotation is not orthonormal"),
        (lambda c2w, k: c2w.__setitem__((1, slice(0, 3), 2), [0, 0, -1]), "frame 1: .*reflection"),
        (lambda c2w, k: c2w.__setitem__((4, 3), [0, 0, 1, 1]), "frame 4: bottom row"),
        (lambda c2w, k: k.__setitem__((0, 0), 0.0), "frame 0: focal lengths must be positive"),
    ],
)
def test_validation_names_the_frame_and_the_problem(change, message):
    c2w, intrinsics = np.tile(np.eye(4), (5, 1, 1)), np.tile([0.5, 0.9, 0.5, 0.5], (5, 1))
    change(c2w, intrinsics)
    with pytest.raises(ValueError, match=message):
        CameraTrajectory(c2w, intrinsics)


def test_validation_of_shapes_and_sizes():
    with pytest.raises(ValueError, match="empty trajectory"):
        CameraTrajectory(np.zeros((0, 4, 4)), np.zeros((0, 4)))
    with pytest.raises(ValueError, match="\\[F, 4, 4\\]"):
        CameraTrajectory(np.zeros((2, 3, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="intrinsics must have shape \\[2, 4\\]"):
        CameraTrajectory(np.tile(np.eye(4), (2, 1, 1)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="source_size must be \\(width, height\\)"):
        CameraTrajectory(np.eye(4)[None], np.ones((1, 4)), source_size=(640, -1))
    with pytest.raises(ValueError, match="source_size must be \\(width, height\\)"):
        CameraTrajectory(np.eye(4)[None], np.ones((1, 4)), source_size=(True, True))  # booleans are not sizes
    with pytest.raises(ValueError, match="empty trajectory"):
        CameraTrajectory.preset("static", num_frames=3)[5:]
    with pytest.raises(ValueError, match="has 3 frames but 5 were requested"):
        CameraTrajectory.preset("static", num_frames=3).take(5)


def test_realestate10k_rows_round_trip_and_validation():
    trajectory = random_trajectory(2)
    rows = trajectory.to_realestate10k()
    assert rows.shape == (6, 19)
    for restored in (CameraTrajectory.from_realestate10k(rows), CameraTrajectory.from_realestate10k(rows[:, 1:])):
        np.testing.assert_allclose(restored.c2w, trajectory.c2w, atol=1e-12)
        np.testing.assert_allclose(restored.intrinsics, trajectory.intrinsics, atol=1e-15)
    # a row read by hand: identity rotation, w2c translation t -> camera centre -t
    row = [0.5, 0.9, 0.5, 0.5, 0, 0, 1, 0, 0, 1, 0, 1, 0, 2, 0, 0, 1, 3]
    np.testing.assert_allclose(CameraTrajectory.from_realestate10k([row]).centres, [[-1, -2, -3]])
    with pytest.raises(ValueError, match="\\[N, 18\\] or \\[N, 19\\], got \\[1, 17\\]"):
        CameraTrajectory.from_realestate10k([row[:17]])
    singular = list(row)
    singular[6:18] = [0] * 12
    with pytest.raises(ValueError, match="frame 0: world-to-camera matrix is singular"):
        CameraTrajectory.from_realestate10k([row, singular][::-1])
    with pytest.raises(ValueError, match="empty trajectory"):
        CameraTrajectory.from_realestate10k(np.zeros((0, 18)))
    with pytest.raises(ValueError, match="frame 1: RealEstate10K row contains NaN"):
        CameraTrajectory.from_realestate10k([row, row[:5] + [float("nan")] + row[6:]])


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        # 640x360 -> 480x320: the source is wider, the width is cropped: fx *= (320 * 640/360) / 480 = 32/27
        ((640, 360), (480, 320), [0.5 * 32 / 27, 0.9, 0.5, 0.5]),
        # 640x360 -> 320x480: fx *= (480 * 640/360) / 320 = 8/3
        ((640, 360), (320, 480), [0.5 * 8 / 3, 0.9, 0.5, 0.5]),
        # 360x640 -> 480x320: the source is taller, the height is cropped: fy *= (480 * 640/360) / 320 = 8/3
        ((360, 640), (480, 320), [0.5, 0.9 * 8 / 3, 0.5, 0.5]),
        ((640, 360), (1280, 720), [0.5, 0.9, 0.5, 0.5]),
    ],
)
def test_cover_crop_hand_values(source, target, expected):
    trajectory = CameraTrajectory(np.eye(4)[None], [[0.5, 0.9, 0.5, 0.5]])
    cropped = trajectory.cover_crop(source_size=source, target_size=target)
    np.testing.assert_allclose(cropped.intrinsics[0], expected, rtol=1e-12)
    assert cropped.source_size == target


@pytest.mark.parametrize(
    ("source", "target"), [((640, 360), (480, 320)), ((300, 500), (64, 64)), ((100, 80), (90, 90))]
)
def test_cover_crop_matches_resizing_the_image(source, target):
    # A point seen in the source image, moved by the actual resize + centre crop, lands where the cropped
    # intrinsics project it: an independent check that also covers off-centre principal points.
    intrinsics = np.array([0.7, 1.1, 0.43, 0.58])
    point = np.array([0.3, -0.2, 2.0])
    (ws, hs), (wt, ht) = source, target
    fx, fy, cx, cy = intrinsics * [ws, hs, ws, hs]
    source_pixel = np.array([fx * point[0] / point[2] + cx, fy * point[1] / point[2] + cy])
    scale = max(wt / ws, ht / hs)
    target_pixel = source_pixel * scale - [(ws * scale - wt) / 2, (hs * scale - ht) / 2]
    cropped = CameraTrajectory(np.eye(4)[None], intrinsics[None], source).cover_crop(target_size=target)
    fx, fy, cx, cy = cropped.pixel_intrinsics(width=wt, height=ht)[0]
    np.testing.assert_allclose([fx * point[0] / point[2] + cx, fy * point[1] / point[2] + cy], target_pixel, rtol=1e-12)


def test_cover_crop_needs_a_source_size():
    with pytest.raises(ValueError, match="source_size"):
        CameraTrajectory(np.eye(4)[None], [[0.5, 0.9, 0.5, 0.5]]).cover_crop(target_size=(64, 64))


def test_resampled_matches_a_finer_preset():
    # Constant-rate moves: 61 frames resampled to 121 equal the same move sampled at half the speed.
    for name in ("pan_left", "orbit_right", "zoom_in", "spiral"):
        coarse = CameraTrajectory.preset(name, num_frames=61).resampled(121)
        fine = CameraTrajectory.preset(name, num_frames=121, speed=0.5)
        np.testing.assert_allclose(coarse.c2w[:, :3, :3], fine.c2w[:, :3, :3], atol=1e-12)
        if name in ("pan_left", "zoom_in"):  # linear in position and (to first order) focal
            np.testing.assert_allclose(coarse.c2w, fine.c2w, atol=1e-12)
            np.testing.assert_allclose(coarse.intrinsics, fine.intrinsics, rtol=2e-5)


def test_resampled_keeps_ends_and_handles_short_inputs():
    trajectory = random_trajectory(3)
    stretched = trajectory.resampled(17)
    assert len(stretched) == 17 and stretched.source_size == (64, 48)
    np.testing.assert_allclose(stretched.c2w[[0, -1]], trajectory.c2w[[0, -1]], atol=1e-12)
    np.testing.assert_allclose(trajectory.resampled(6).c2w, trajectory.c2w, atol=1e-12)
    assert len(trajectory[2].resampled(4)) == 4
    with pytest.raises(ValueError, match="at least 1"):
        trajectory.resampled(0)


def test_slicing_length_and_scaling():
    trajectory = random_trajectory(4)
    assert len(trajectory) == 6 and len(trajectory[1:4]) == 3 and len(trajectory[-1]) == 1
    np.testing.assert_array_equal(trajectory[-1].c2w[0], trajectory.c2w[-1])
    np.testing.assert_array_equal(trajectory[2:4].intrinsics, trajectory.intrinsics[2:4])
    with pytest.raises(IndexError):
        trajectory[6]
    scaled = trajectory.scaled(2.5)
    np.testing.assert_allclose(scaled.centres, 2.5 * trajectory.centres)
    np.testing.assert_array_equal(scaled.c2w[:, :3, :3], trajectory.c2w[:, :3, :3])
    with pytest.raises(ValueError, match="positive finite"):
        trajectory.scaled(0)


def test_then_continues_from_the_last_pose():
    pan = CameraTrajectory.preset("pan_right", num_frames=31, degrees_per_frame=1.0)
    dolly = CameraTrajectory.preset("dolly_in", num_frames=11, step=0.1)
    joined = pan.then(dolly)
    assert len(joined) == 41
    np.testing.assert_array_equal(joined.c2w[:31], pan.c2w)
    # after a 30 degree pan right, dolly_in moves along the turned view axis (sin 30, 0, cos 30)
    np.testing.assert_allclose(joined.centres[-1], [np.sin(np.pi / 6), 0, np.cos(np.pi / 6)], atol=1e-12)
    np.testing.assert_allclose(joined.c2w[-1, :3, :3], pan.c2w[-1, :3, :3], atol=1e-12)
    zoomed = CameraTrajectory.preset("zoom_in", num_frames=11).then(CameraTrajectory.preset("static", num_frames=5))
    np.testing.assert_allclose(zoomed.intrinsics[-5:], np.tile(zoomed.intrinsics[10], (5, 1)))


def test_compose_moves_at_once():
    pan = CameraTrajectory.preset("pan_left", num_frames=21)
    dolly = CameraTrajectory.preset("dolly_in", num_frames=21)
    both = pan.compose(dolly)
    np.testing.assert_allclose(both.c2w[:, :3, :3], pan.c2w[:, :3, :3], atol=1e-12)
    # each frame moves along its own turned view axis by the dolly's distance so far
    expected = pan.c2w[:, :3, 2] * dolly.centres[:, 2:3]
    np.testing.assert_allclose(both.centres, expected, atol=1e-12)
    zoom = CameraTrajectory.preset("zoom_in", num_frames=21)
    np.testing.assert_allclose(pan.compose(zoom).intrinsics, zoom.intrinsics)
    with pytest.raises(ValueError, match="equal length, got 21 and 5"):
        pan.compose(dolly[:5])


def test_relative_is_exact_and_idempotent():
    rng = np.random.default_rng(3)
    rotations = Rotation.random(5, random_state=rng).as_matrix()
    c2w = np.tile(np.eye(4), (5, 1, 1))
    c2w[:, :3, :3], c2w[:, :3, 3] = rotations, rng.normal(size=(5, 3))
    relative = CameraTrajectory(c2w, np.tile([0.8, 1.4, 0.5, 0.5], (5, 1))).relative()
    np.testing.assert_array_equal(relative.c2w[0], np.eye(4))
    np.testing.assert_array_equal(relative.relative().c2w, relative.c2w)
    np.testing.assert_allclose(relative.c2w[1:], np.linalg.inv(c2w[0]) @ c2w[1:], atol=1e-12)


def test_values_that_cannot_be_a_camera_are_refused_and_limits_survive_relative():
    from diffsynth_dualcam.limits import MAX_POSITION

    c2w = np.tile(np.eye(4), (3, 1, 1))
    intrinsics = np.tile([0.5, 0.9, 0.5, 0.5], (3, 1))
    for frame, column, value, message in ((1, 0, 1e308, "frame 1: focal lengths must be positive, between 0.001"),
                                          (2, 1, 1e-4, "frame 2: focal lengths"),
                                          (0, 2, 1e300, "frame 0: principal point"),
                                          (1, 3, -9.6, "frame 1: principal point")):
        bad = intrinsics.copy()
        bad[frame, column] = value
        with pytest.raises(ValueError, match=message):
            CameraTrajectory(c2w, bad)
    far = c2w.copy()
    far[2, 1, 3] = 1e300
    with pytest.raises(ValueError, match="frame 2: camera position .* is farther than 1e\\+06"):
        CameraTrajectory(far, intrinsics)
    # At the limit on both sides of the origin: the relative path (first camera at the origin) is just as valid.
    edge = c2w.copy()
    edge[:, 0, 3] = [-MAX_POSITION / 2, 0.0, MAX_POSITION / 2]
    relative = CameraTrajectory(edge, intrinsics).relative()
    np.testing.assert_allclose(relative.centres[:, 0], [0.0, MAX_POSITION / 2, MAX_POSITION])
    edge[2, 0, 3] = MAX_POSITION / 2 + 1
    with pytest.raises(ValueError, match="frame 2: camera position"):
        CameraTrajectory(edge, intrinsics)
