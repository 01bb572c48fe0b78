"""Pose estimation by pycolmap on rendered scenes with known cameras."""
import warnings

import numpy as np
import pytest
from PIL import Image

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.eval import (
    EstimatedTrajectory,
    PoseEstimationError,
    UnregisteredFramesWarning,
    camera_errors,
    estimate_trajectory,
    sfm,
)
from diffsynth_dualcam.eval.render import SyntheticScene
from diffsynth_dualcam.eval.sfm import retry_schedule

SIZE = 256
NUM_FRAMES = 12
THREADS = 2


@pytest.fixture(scope="module")
def scene():
    return SyntheticScene(seed=0, texture_size=128)


@pytest.fixture(scope="module")
def truck(scene):
    trajectory = CameraTrajectory.preset("truck_right", NUM_FRAMES, speed=12, fx=0.9, source_size=(SIZE, SIZE))
    return trajectory, scene.render(trajectory, width=SIZE, height=SIZE).frames


@pytest.fixture(scope="module")
def truck_estimate(truck):
    trajectory, frames = truck
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnregisteredFramesWarning)
        return estimate_trajectory(frames, trajectory.intrinsics[0], num_threads=THREADS)


def test_truck_poses_recovered(truck, truck_estimate):
    trajectory, _ = truck
    assert isinstance(truck_estimate, CameraTrajectory)
    assert len(truck_estimate) == NUM_FRAMES and truck_estimate.unregistered_frames == []
    # Read back from the reconstruction's camera: bundle adjustment must have left the given intrinsics fixed.
    np.testing.assert_allclose(truck_estimate.intrinsics, trajectory.intrinsics, rtol=1e-9, atol=0)
    for normalization in ("max", "sim3"):
        errors = camera_errors(trajectory, truck_estimate, normalization=normalization)
        assert max(errors["per_frame"]["rot_err_deg"]) < 0.5, errors["per_frame"]["rot_err_deg"]
        assert errors["trans_err_mean"] < 0.02
    # SfM's poses are in its own world frame and scale, so the raw centres differ from the requested ones.
    assert not np.allclose(truck_estimate.c2w, trajectory.c2w, atol=1e-2)


def test_wrong_trajectories_score_worse(truck, truck_estimate):
    trajectory, _ = truck
    right = camera_errors(trajectory, truck_estimate)
    for name, params in (("truck_left", {"speed": 12}), ("pan_right", {"degrees_per_frame": 1.0}),
                         ("dolly_in", {"speed": 12})):
        wrong = CameraTrajectory.preset(name, NUM_FRAMES, fx=0.9, source_size=(SIZE, SIZE), **params)
        errors = camera_errors(wrong, truck_estimate)
        assert errors["cammc"] > 10 * right["cammc"], name
        if name == "pan_right":
            assert errors["rot_err_deg_mean"] > 10 * right["rot_err_deg_mean"]
        else:
            assert errors["trans_err"] > 10 * right["trans_err"], name


def test_orbit_recovered_with_incremental_mapper(scene):
    trajectory = CameraTrajectory.preset("orbit_left", NUM_FRAMES, distance=4.0, degrees_per_frame=3.0, fx=0.9,
                                         source_size=(SIZE, SIZE))
    frames = [Image.fromarray(frame) for frame in scene.render(trajectory, width=SIZE, height=SIZE).frames]
    estimate = estimate_trajectory(frames, trajectory.intrinsics[0], mapper="incremental", num_threads=THREADS)
    errors = camera_errors(trajectory, estimate)
    assert len(estimate) == NUM_FRAMES
    assert estimate.attempts[0][0].startswith("incremental")
    assert max(errors["per_frame"]["rot_err_deg"]) < 0.5
    assert errors["trans_err_mean"] < 0.02


def test_unregistered_frames_are_reported(truck):
    trajectory, frames = truck
    frames = frames.copy()
    frames[5] = 128  # a flat grey frame has no features
    with pytest.warns(UnregisteredFramesWarning, match=r"1 of 12 frames .*\[5\]"):
        estimate = estimate_trajectory(frames, trajectory.intrinsics, num_threads=THREADS, retries=False)
    assert isinstance(estimate, EstimatedTrajectory)
    assert estimate.unregistered_frames == [5]
    assert estimate.registered_frames == [i for i in range(NUM_FRAMES) if i != 5]
    assert len(estimate) == NUM_FRAMES - 1 and estimate.registered_fraction == pytest.approx(11 / 12)
    kept = estimate.registered_frames
    errors = camera_errors(CameraTrajectory(trajectory.c2w[kept], trajectory.intrinsics[kept]), estimate)
    assert errors["rot_err_deg_mean"] < 0.5


def failing_first_pass(monkeypatch):
    """Make the first pass reconstruct nothing, as a mapper that finds no initial pair does; the others run."""
    run_pass = sfm._run_pass

    def run(work_dir, attempt, *args):
        if attempt == 0:
            return sfm._Reconstruction({}, {}, 0)
        return run_pass(work_dir, attempt, *args)

    monkeypatch.setattr(sfm, "_run_pass", run)


def test_a_retry_rescues_a_failed_first_pass(truck, monkeypatch):
    trajectory, frames = truck
    failing_first_pass(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnregisteredFramesWarning)
        estimate = estimate_trajectory(frames, trajectory.intrinsics[0], num_threads=THREADS)
    schedule = retry_schedule("global")
    # The second pass registers every frame, so it is kept and no further pass runs.
    assert estimate.settings == schedule[1]
    assert estimate.attempts == [(schedule[0].describe(), 0), (schedule[1].describe(), NUM_FRAMES)]
    errors = camera_errors(trajectory, estimate)
    assert max(errors["per_frame"]["rot_err_deg"]) < 0.5


def test_a_partial_rescue_warns_with_every_pass(truck, monkeypatch):
    trajectory, frames = truck
    frames = frames.copy()
    frames[5] = 128
    failing_first_pass(monkeypatch)
    schedule = retry_schedule("global")[:2]
    monkeypatch.setattr(sfm, "retry_schedule", lambda mapper: schedule)
    with pytest.warns(UnregisteredFramesWarning) as caught:
        estimate = estimate_trajectory(frames, trajectory.intrinsics[0], num_threads=THREADS)
    message = str(caught[0].message)
    assert f"1 of {NUM_FRAMES} frames" in message and "[5]" in message
    assert f"{schedule[0].describe()}: 0; {schedule[1].describe()}: {NUM_FRAMES - 1}" in message
    assert message.endswith(f"kept: {schedule[1].describe()})")
    assert estimate.settings == schedule[1] and estimate.unregistered_frames == [5]
    kept = estimate.registered_frames
    errors = camera_errors(CameraTrajectory(trajectory.c2w[kept], trajectory.intrinsics[kept]), estimate)
    assert errors["rot_err_deg_mean"] < 0.5


def test_gives_up_with_a_clear_error_after_every_retry():
    frames = np.full((4, 64, 64, 3), 90, dtype=np.uint8)
    with pytest.raises(PoseEstimationError, match="registered 0 of 4 frames after 4 passes"):
        estimate_trajectory(frames, [0.9, 0.9, 0.5, 0.5], num_threads=THREADS)


def test_retry_schedule_switches_mapper_matching_and_features():
    schedule = retry_schedule("global")
    assert [settings.mapper for settings in schedule] == ["global", "incremental", "global", "global"]
    assert [settings.matching for settings in schedule] == ["sequential", "sequential", "exhaustive", "exhaustive"]
    assert schedule[-1].max_num_features > schedule[0].max_num_features
    assert retry_schedule("incremental")[1].mapper == "global"
    with pytest.raises(ValueError, match="mapper must be one of"):
        retry_schedule("hierarchical")


def test_bad_inputs_are_rejected_before_any_work():
    frames = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="uint8 array"):
        estimate_trajectory(frames.astype(np.float32), [0.9, 0.9, 0.5, 0.5])
    with pytest.raises(ValueError, match="at least 2 frames"):
        estimate_trajectory(frames[:1], [0.9, 0.9, 0.5, 0.5])
    with pytest.raises(ValueError, match="positive focal lengths"):
        estimate_trajectory(frames, [0.0, 0.9, 0.5, 0.5])
    with pytest.raises(ValueError, match="different intrinsics"):
        estimate_trajectory(frames, [[0.9, 0.9, 0.5, 0.5], [1.0, 1.0, 0.5, 0.5], [0.9, 0.9, 0.5, 0.5]])
