"""The estimated-vs-requested plot: drawn with the camera module's frusta, from the poses the metrics compare."""
import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.eval import plot as eval_plot
from diffsynth_dualcam.eval.metrics import pose_errors


@pytest.mark.parametrize("normalization", ["max", "sim3"])
def test_comparison_plot_draws_the_compared_poses_with_camera_frusta(tmp_path, monkeypatch, normalization):
    reference = CameraTrajectory.preset("orbit_left", 12, distance=4.0, degrees_per_frame=3.0, fx=0.9)
    rng = np.random.default_rng(0)
    c2w = reference.c2w.copy()
    c2w[:, :3, 3] += rng.normal(scale=0.01, size=(12, 3))
    world = np.eye(4)
    world[:3, :3] = Rotation.from_euler("y", 40, degrees=True).as_matrix()
    world[:3, 3] = [1.0, 2.0, 3.0]
    estimated = CameraTrajectory(world @ c2w, reference.intrinsics)

    drawn = []
    draw = eval_plot.draw_trajectory

    def record(axis, trajectory, *args, **kwargs):
        drawn.append((kwargs["label"], trajectory.c2w.copy()))
        return draw(axis, trajectory, *args, **kwargs)

    monkeypatch.setattr(eval_plot, "draw_trajectory", record)
    path = eval_plot.plot_comparison(reference, estimated, tmp_path / "plots" / "clip.png", normalization)

    errors = pose_errors(reference.c2w, estimated.c2w, normalization)
    assert [label for label, _ in drawn] == ["requested", "estimated"] * 2  # two views
    for label, c2w in drawn:
        np.testing.assert_allclose(c2w, errors["reference_c2w" if label == "requested" else "estimated_c2w"])
    # As compared, the estimate lies on the requested path, though SfM-like world frames differ.
    estimated_centres = drawn[1][1][:, :3, 3]
    assert np.abs(estimated_centres - drawn[0][1][:, :3, 3]).max() < 0.05
    assert np.abs(estimated.c2w[:, :3, 3] - reference.c2w[:, :3, 3]).max() > 1.0
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (1500, 520)
