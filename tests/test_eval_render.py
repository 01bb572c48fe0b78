"""The synthetic scene renderer: geometry of the depth maps, consistency across views, input checks."""
import numpy as np
import pytest

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.eval.render import SyntheticScene


def trajectory(centres, yaw_deg=None, intrinsics=(0.9, 0.9, 0.5, 0.5)):
    centres = np.asarray(centres, dtype=np.float64)
    c2w = np.tile(np.eye(4), (len(centres), 1, 1))
    c2w[:, :3, 3] = centres
    if yaw_deg is not None:
        yaw = np.radians(yaw_deg)
        c2w[:, 0, 0], c2w[:, 0, 2], c2w[:, 2, 0], c2w[:, 2, 2] = np.cos(yaw), np.sin(yaw), -np.sin(yaw), np.cos(yaw)
    return CameraTrajectory(c2w, np.tile(intrinsics, (len(centres), 1)))


@pytest.fixture(scope="module")
def scene():
    return SyntheticScene(seed=0, texture_size=64)


def unproject(depth, c2w, intrinsics):
    height, width = depth.shape
    fx, fy, cx, cy = np.asarray(intrinsics) * [width, height, width, height]
    v, u = np.mgrid[0:height, 0:width] + 0.5
    camera_points = np.stack([(u - cx) / fx * depth, (v - cy) / fy * depth, depth], axis=-1).reshape(-1, 3)
    return camera_points @ c2w[:3, :3].T + c2w[:3, 3]


def distance_to_surfaces(points, scene):
    """Distance from each point to the nearest face of the room or of a box (faces as bounded rectangles)."""
    distances = []
    for lower, upper in [scene.room, *scene.boxes]:
        # Distance to the box surface: outside, the usual box distance; inside, the distance to the nearest face.
        outside = np.linalg.norm(np.maximum(np.maximum(lower - points, points - upper), 0.0), axis=1)
        inside = np.min(np.minimum(points - lower, upper - points), axis=1)
        distances.append(np.where(inside > 0, inside, outside))
    return np.min(distances, axis=0)


def test_depth_points_lie_on_scene_surfaces(scene):
    camera = trajectory([[0.3, -0.2, 0.5]], yaw_deg=[25.0])
    render = scene.render(camera, width=64, height=48, supersample=1)
    assert render.frames.shape == (1, 48, 64, 3) and render.frames.dtype == np.uint8
    points = unproject(render.depth[0], camera.c2w[0], camera.intrinsics[0])
    assert distance_to_surfaces(points, scene).max() < 1e-4


def test_looking_straight_at_the_far_wall_gives_its_depth():
    # Without boxes, the centre pixel of a camera at z = 1 looking along +z sees the far wall at z = 8.
    empty = SyntheticScene(seed=1, boxes=(), texture_size=32)
    render = empty.render(trajectory([[0.0, 0.0, 1.0]]), width=31, height=31, supersample=1)
    assert render.depth[0, 15, 15] == pytest.approx(7.0, abs=1e-9)


def test_views_agree_where_they_see_the_same_point():
    """Reproject the first view's surface points into a second view: where the second view sees the same point
    (depth matches), the colours match up to texture interpolation (a coarse texture keeps that small)."""
    scene = SyntheticScene(seed=0, texture_size=64, texels_per_unit=8.0)
    cameras = trajectory([[0.0, 0.0, 0.0], [0.4, 0.1, 0.3]])
    render = scene.render(cameras, width=96, height=96, supersample=1)
    points = unproject(render.depth[0], cameras.c2w[0], cameras.intrinsics[0])
    in_second = (points - cameras.c2w[1, :3, 3]) @ cameras.c2w[1, :3, :3]
    fx, fy, cx, cy = cameras.intrinsics[1] * 96
    u = np.floor(in_second[:, 0] / in_second[:, 2] * fx + cx).astype(int)
    v = np.floor(in_second[:, 1] / in_second[:, 2] * fy + cy).astype(int)
    inside = (u >= 0) & (u < 96) & (v >= 0) & (v < 96)
    visible = inside.copy()
    visible[inside] = np.abs(render.depth[1][v[inside], u[inside]] - in_second[inside, 2]) < 0.02
    assert visible.mean() > 0.5
    first_colours = render.frames[0].reshape(-1, 3)[visible].astype(float)
    second_colours = render.frames[1][v[visible], u[visible]].astype(float)
    unrelated = render.frames[1].reshape(-1, 3)[np.random.default_rng(0).permutation(96 * 96)[: visible.sum()]]
    matching_error = np.abs(first_colours - second_colours).mean()
    assert matching_error < 0.15 * np.abs(first_colours - unrelated).mean()


def test_same_seed_same_images_other_seed_other_textures():
    camera = trajectory([[0.0, 0.0, 0.0]])
    first = SyntheticScene(seed=3, texture_size=32).render(camera, width=32, height=32).frames
    again = SyntheticScene(seed=3, texture_size=32).render(camera, width=32, height=32).frames
    other = SyntheticScene(seed=4, texture_size=32).render(camera, width=32, height=32).frames
    np.testing.assert_array_equal(first, again)
    assert np.abs(first.astype(int) - other).mean() > 10


def test_cameras_outside_the_room_or_inside_a_box_are_rejected(scene):
    with pytest.raises(ValueError, match="outside the room"):
        scene.render(trajectory([[0.0, 0.0, 20.0]]), width=16, height=16)
    inside_box = scene.boxes[0].mean(axis=0)
    with pytest.raises(ValueError, match="inside box 0"):
        scene.render(trajectory([inside_box]), width=16, height=16)
    with pytest.raises(ValueError, match="positive"):
        scene.render(trajectory([[0.0, 0.0, 0.0]]), width=16, height=0)
