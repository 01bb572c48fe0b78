"""Preset camera moves: each one's direction in first-frame OpenCV axes, speed scaling and parameter errors."""
import numpy as np
import pytest

from diffsynth_dualcam.camera import CameraTrajectory

# name -> (what moves, index, sign): "centre" = camera centre, "view" = viewing axis (third column of R)
DIRECTIONS = {
    "truck_right": ("centre", 0, 1), "truck_left": ("centre", 0, -1),
    "pedestal_up": ("centre", 1, -1), "pedestal_down": ("centre", 1, 1),
    "dolly_in": ("centre", 2, 1), "dolly_out": ("centre", 2, -1),
    "pan_left": ("view", 0, -1), "pan_right": ("view", 0, 1),
    "tilt_up": ("view", 1, -1), "tilt_down": ("view", 1, 1),
    "orbit_left": ("centre", 0, -1), "orbit_right": ("centre", 0, 1),
}


def test_preset_names_cover_the_documented_moves():
    assert set(DIRECTIONS) | {"zoom_in", "zoom_out", "roll_cw", "roll_ccw", "spiral", "static"} == set(
        CameraTrajectory.preset_names())


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_direction_of_each_move(name):
    kind, axis, sign = DIRECTIONS[name]
    trajectory = CameraTrajectory.preset(name, num_frames=25)
    np.testing.assert_allclose(trajectory.c2w[0], np.eye(4), atol=1e-15)
    values = trajectory.centres[:, axis] if kind == "centre" else trajectory.c2w[:, axis, 2]
    assert np.all(sign * np.diff(values) > 0), f"{name}: {kind}[{axis}] must move with sign {sign}"
    np.testing.assert_array_equal(trajectory.intrinsics, np.tile(trajectory.intrinsics[0], (25, 1)))
    if name.startswith(("pan", "tilt")):
        np.testing.assert_allclose(trajectory.centres, 0, atol=1e-15)  # turning in place
    if name.startswith(("truck", "pedestal", "dolly")):
        np.testing.assert_allclose(trajectory.c2w[:, :3, :3], np.tile(np.eye(3), (25, 1, 1)))


@pytest.mark.parametrize("name", ["zoom_in", "zoom_out"])
def test_zoom_changes_only_focal_lengths(name):
    trajectory = CameraTrajectory.preset(name, num_frames=13)
    np.testing.assert_array_equal(trajectory.c2w, np.tile(np.eye(4), (13, 1, 1)))
    sign = 1 if name == "zoom_in" else -1
    assert np.all(sign * np.diff(trajectory.intrinsics[:, 0]) > 0)
    assert np.all(sign * np.diff(trajectory.intrinsics[:, 1]) > 0)
    np.testing.assert_allclose(trajectory.intrinsics[:, 1] / trajectory.intrinsics[:, 0], 640 / 360)  # square pixels
    np.testing.assert_array_equal(trajectory.intrinsics[:, 2:], 0.5)


@pytest.mark.parametrize("name", ["orbit_left", "orbit_right"])
def test_orbit_keeps_its_target_at_the_principal_point(name):
    distance = 2.5
    trajectory = CameraTrajectory.preset(name, num_frames=31, distance=distance, degrees_per_frame=2.0)
    target = np.array([0.0, 0.0, distance, 1.0])
    in_camera = np.linalg.inv(trajectory.c2w) @ target
    np.testing.assert_allclose(in_camera[:, :2], 0, atol=1e-12)  # on the optical axis: projects to (cx, cy)
    np.testing.assert_allclose(in_camera[:, 2], distance, rtol=1e-12)  # in front, at constant distance
    np.testing.assert_allclose(trajectory.centres[:, 1], 0, atol=1e-15)  # the orbit is horizontal


@pytest.mark.parametrize(("name", "sign"), [("roll_cw", 1), ("roll_ccw", -1)])
def test_roll_turns_about_the_viewing_axis(name, sign):
    trajectory = CameraTrajectory.preset(name, num_frames=9)
    np.testing.assert_allclose(trajectory.c2w[:, :3, 2], np.tile([0, 0, 1], (9, 1)), atol=1e-15)
    assert np.all(sign * np.diff(trajectory.c2w[:, 1, 0]) > 0)  # clockwise: the camera's x axis dips toward +y


def test_spiral_circles_while_moving_forward():
    trajectory = CameraTrajectory.preset("spiral", num_frames=61, radius=0.2, degrees_per_frame=6.0, step=0.01)
    centres = trajectory.centres
    np.testing.assert_allclose(np.linalg.norm(centres[:, :2] - [-0.2, 0], axis=1), 0.2, rtol=1e-12)
    np.testing.assert_allclose(centres[:, 2], 0.01 * np.arange(61), atol=1e-15)
    np.testing.assert_allclose(centres[60, :2], 0, atol=1e-12)  # 60 frames x 6 degrees: one full turn
    np.testing.assert_allclose(trajectory.c2w[:, :3, :3], np.tile(np.eye(3), (61, 1, 1)))


@pytest.mark.parametrize("name", ["dolly_in", "pan_left", "orbit_right", "zoom_in", "roll_cw", "spiral"])
def test_speed_scales_the_motion_per_frame(name):
    slow = CameraTrajectory.preset(name, num_frames=21)
    fast = CameraTrajectory.preset(name, num_frames=11, speed=2.0)
    np.testing.assert_allclose(fast.c2w, slow.c2w[::2], atol=1e-12)
    np.testing.assert_allclose(fast.intrinsics, slow.intrinsics[::2], rtol=1e-12)


def test_default_magnitudes_are_realestate10k_like():
    step = np.linalg.norm(np.diff(CameraTrajectory.preset("dolly_in", num_frames=3).centres, axis=0), axis=1)
    np.testing.assert_allclose(step, 0.01)
    view = CameraTrajectory.preset("pan_right", num_frames=2).c2w[1, :3, 2]
    np.testing.assert_allclose(np.degrees(np.arctan2(view[0], view[2])), 0.4)


def test_static_and_intrinsics_parameters():
    trajectory = CameraTrajectory.preset("static", num_frames=4, fx=0.8, source_size=(400, 200))
    np.testing.assert_array_equal(trajectory.c2w, np.tile(np.eye(4), (4, 1, 1)))
    np.testing.assert_allclose(trajectory.intrinsics, np.tile([0.8, 1.6, 0.5, 0.5], (4, 1)))
    assert trajectory.source_size == (400, 200)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "fly_away"}, "unknown preset 'fly_away'; available: .*dolly_in"),
        ({"name": "pan_left", "distance": 2.0}, "no parameter distance; its parameters: fx, source_size, degrees"),
        ({"name": "pan_left", "num_frames": 0}, "num_frames must be a positive integer"),
        ({"name": "pan_left", "speed": float("nan")}, "speed must be a finite number"),
        ({"name": "orbit_left", "distance": -1.0}, "distance must be positive"),
        ({"name": "zoom_in", "fx": 0.0}, "fx must be positive"),
        ({"name": "zoom_in", "source_size": (0, 3)}, "source_size must be"),
    ],
)
def test_preset_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CameraTrajectory.preset(**kwargs)


def test_an_overflowing_speed_is_refused_without_numpy_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="NaN or inf"):
            CameraTrajectory.preset("pan_left", num_frames=9, speed=1e308)
