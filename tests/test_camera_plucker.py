"""Plücker maps and their packing: hand-computed values, an independent per-pixel loop, DiffSynth, the demo."""
import math

import numpy as np
import pytest
import torch
from diffsynth.models.wan_video_camera_controller import process_pose_file
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from diffsynth_dualcam.camera import CameraTrajectory, pack_plucker


def rigid(rotation: np.ndarray, centre) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = centre
    return pose


def plucker_by_loop(trajectory: CameraTrajectory, height: int, width: int) -> np.ndarray:
    """Straight from the definition: one pixel at a time, float64."""
    relative = trajectory.relative()
    result = np.zeros((6, len(relative), height, width))
    pixel = relative.pixel_intrinsics(width=width, height=height)
    for f, (pose, (fx, fy, cx, cy)) in enumerate(zip(relative.c2w, pixel)):
        for v in range(height):
            for u in range(width):
                direction = np.array([(u + 0.5 - cx) / fx, (v + 0.5 - cy) / fy, 1.0])
                direction = pose[:3, :3] @ (direction / np.linalg.norm(direction))
                result[:, f, v, u] = np.concatenate([np.cross(pose[:3, 3], direction), direction])
    return result


def test_hand_computed_2x2():
    # 2x2 image with fx = fy = 1 px and the principal point at the centre (1, 1): pixel centres sit at +-0.5, so
    # camera rays are (+-0.5, +-0.5, 1) / sqrt(1.5). Frame 1 is turned 90 degrees about y (x -> -z, z -> x) and
    # sits at (1, 2, 3) relative to frame 0, which itself is an arbitrary pose.
    turn = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    start = rigid(Rotation.from_rotvec([0.3, -0.2, 0.5]).as_matrix(), [4.0, -1.0, 2.0])
    poses = np.stack([start, start @ rigid(turn, [1, 2, 3])])
    trajectory = CameraTrajectory(poses, np.tile([0.5, 0.5, 0.5, 0.5], (2, 1)))
    plucker = trajectory.plucker(width=2, height=2, dtype=torch.float64)
    s = 1 / math.sqrt(1.5)
    # frame 0 is the identity: no moment, camera rays as they are. Pixel (v=0, u=0) is the top-left one.
    expected_directions_0 = s * np.array([[[-0.5, 0.5], [-0.5, 0.5]], [[-0.5, -0.5], [0.5, 0.5]], [[1, 1], [1, 1]]])
    torch.testing.assert_close(plucker[:3, 0], torch.zeros(3, 2, 2, dtype=torch.float64))
    torch.testing.assert_close(plucker[3:, 0], torch.from_numpy(expected_directions_0))
    # frame 1, top-left pixel: d = R (-0.5, -0.5, 1) s = (1, -0.5, 0.5) s; o x d = (1, 2, 3) x (1, -0.5, 0.5) s
    #   = (2*0.5 - 3*(-0.5), 3*1 - 1*0.5, 1*(-0.5) - 2*1) s = (2.5, 2.5, -2.5) s
    top_left = torch.tensor([2.5, 2.5, -2.5, 1.0, -0.5, 0.5], dtype=torch.float64) * s
    torch.testing.assert_close(plucker[:, 1, 0, 0], top_left)
    # frame 1, bottom-right pixel: d = R (0.5, 0.5, 1) s = (1, 0.5, -0.5) s;
    #   o x d = (2*(-0.5) - 3*0.5, 3*1 - 1*(-0.5), 1*0.5 - 2*1) s = (-2.5, 3.5, -1.5) s
    bottom_right = torch.tensor([-2.5, 3.5, -1.5, 1.0, 0.5, -0.5], dtype=torch.float64) * s
    torch.testing.assert_close(plucker[:, 1, 1, 1], bottom_right)


def test_matches_per_pixel_loop_with_changing_intrinsics():
    rng = np.random.default_rng(0)
    poses = [rigid(Rotation.from_rotvec(rng.normal(size=3) * 0.3).as_matrix(), rng.normal(size=3)) for _ in range(5)]
    intrinsics = np.column_stack([np.linspace(0.6, 0.9, 5), np.linspace(0.8, 1.1, 5), [0.5, 0.45, 0.5, 0.55, 0.6],
                                  [0.5, 0.5, 0.4, 0.5, 0.52]])
    trajectory = CameraTrajectory(np.stack(poses), intrinsics)
    expected = plucker_by_loop(trajectory, 5, 7)
    np.testing.assert_allclose(trajectory.plucker(width=7, height=5, dtype=torch.float64).numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(trajectory.plucker(width=7, height=5).numpy(), expected, atol=1e-5)
    shared = CameraTrajectory(np.stack(poses), np.tile(intrinsics[2], (5, 1)))
    np.testing.assert_allclose(shared.plucker(width=7, height=5, dtype=torch.float64).numpy(),
                               plucker_by_loop(shared, 5, 7), atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(
    rotvecs=st.lists(st.tuples(*[st.floats(-3, 3)] * 3), min_size=1, max_size=4),
    offset=st.tuples(*[st.floats(-50, 50)] * 3),
    focal=st.floats(0.2, 3.0),
    centre=st.floats(0.2, 0.8),
)
def test_moment_is_orthogonal_to_unit_direction(rotvecs, offset, focal, centre):
    poses = np.stack([rigid(Rotation.from_rotvec(vector).as_matrix(), np.array(offset) * i)
                      for i, vector in enumerate(rotvecs)])
    trajectory = CameraTrajectory(poses, np.tile([focal, focal * 1.3, centre, 1 - centre], (len(poses), 1)))
    plucker = trajectory.plucker(width=4, height=3, dtype=torch.float64)
    moment, direction = plucker[:3], plucker[3:]
    torch.testing.assert_close(direction.norm(dim=0), torch.ones(len(poses), 3, 4, dtype=torch.float64))
    scale = 1 + trajectory.relative().centres.__abs__().max()
    assert (moment * direction).sum(dim=0).abs().max().item() <= 1e-12 * scale


@pytest.mark.parametrize("size", [(480, 320), (64, 48), (48, 64), (50, 50)])
def test_matches_diffsynth_on_demo(demo_dir, size):
    # DiffSynth's Fun-camera code (CameraCtrl's ray_condition) is an independent implementation of the same maths.
    width, height = size
    rows = torch.load(demo_dir / "seaside.torch", weights_only=True)["cameras"][:21]
    ours = CameraTrajectory.load(demo_dir / "seaside.torch")[:21].cover_crop((640, 360), (width, height))
    with_timestamps = np.concatenate([np.zeros((21, 1)), rows.double().numpy()], axis=1).tolist()
    reference = process_pose_file(with_timestamps, width, height, original_pose_width=640, original_pose_height=360)
    torch.testing.assert_close(ours.plucker(width=width, height=height), reference.permute(3, 0, 1, 2), atol=1e-5,
                               rtol=0)


def test_demo_plucker_matches_reference_pipeline(demo_dir):
    # The acceptance chain, against the reference written out in float64 from docs/model.md, Camera conditioning.
    width, height = 48, 32
    for name in ("astronaut", "route66", "seaside"):
        rows = torch.load(demo_dir / f"{name}.torch", weights_only=True)["cameras"].double().numpy()[:5]
        w2c = np.tile(np.eye(4), (5, 1, 1))
        w2c[:, :3] = rows[:, 6:].reshape(5, 3, 4)
        c2w_rel = (w2c[0] @ np.linalg.inv(w2c)).astype(np.float32).astype(np.float64)
        fx = rows[:, 0] * (height * 640 / 360) / width  # 640x360 is wider than 48x32: the width is cropped
        pixel = np.column_stack([fx * width, rows[:, 1] * height, rows[:, 2] * width, rows[:, 3] * height])
        expected = plucker_by_loop(CameraTrajectory(c2w_rel, pixel / [width, height, width, height]), height, width)
        trajectory = CameraTrajectory.load(demo_dir / f"{name}.torch")[:5]
        cropped = trajectory.cover_crop(source_size=(640, 360), target_size=(width, height))
        plucker = cropped.plucker(width=width, height=height)
        np.testing.assert_allclose(plucker.numpy(), expected, atol=1e-5)
        packed = pack_plucker(plucker)
        assert packed.shape == (24, 2, height, width)
        # channel 4c + t of latent frame 1 is Plücker channel c of video frame 4 * 1 + t - 3
        np.testing.assert_allclose(packed[4 * 5 + 2, 1].numpy(), expected[5, 3], atol=1e-5)


def test_pack_plucker_layout():
    plucker = torch.randn(6, 9, 2, 3)
    packed = pack_plucker(plucker)
    assert packed.shape == (24, 3, 2, 3) and packed.is_contiguous()
    for channel in range(6):
        for position in range(4):
            for latent_frame in range(3):
                frame = max(0, 4 * latent_frame + position - 3)
                assert torch.equal(packed[4 * channel + position, latent_frame], plucker[channel, frame])


def test_pack_plucker_rejects_bad_shapes():
    with pytest.raises(ValueError, match="4k\\+1 frames.*got 8.*5 and 9"):
        pack_plucker(torch.zeros(6, 8, 2, 2))
    with pytest.raises(ValueError, match="\\[6, F, H, W\\]"):
        pack_plucker(torch.zeros(5, 9, 2, 2))


def test_plucker_device_dtype_and_size_errors():
    trajectory = CameraTrajectory.preset("dolly_in", num_frames=5)
    half = trajectory.plucker(width=6, height=4, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16  # computed in float32, rounded once
    torch.testing.assert_close(half, trajectory.plucker(width=6, height=4).to(torch.bfloat16), atol=0, rtol=0)
    with pytest.raises(ValueError, match="width, height"):
        trajectory.plucker(width=6, height=0)
    with pytest.raises(ValueError, match="floating-point"):
        trajectory.plucker(width=6, height=4, dtype=torch.int64)
