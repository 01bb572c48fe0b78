"""Point-cloud lifting and scene export, checked against hand-built geometry."""
import numpy as np
import pytest
from plyfile import PlyData
from scipy.spatial.transform import Rotation

from diffsynth_dualcam.export.export3d import (
    PointCloud,
    disparity_to_depth,
    fit_scale_shift,
    lift_frames,
    read_ply,
    unproject,
    voxel_downsample,
    write_colmap_points,
    write_ply,
)

NEAR, FAR = 1.0, 20.0
HEIGHT, WIDTH = 24, 32
INTRINSICS = np.array([0.9, 1.2, 0.5, 0.5])  # normalised fx, fy, cx, cy


def _pose(yaw_degrees: float, pitch_degrees: float, position) -> np.ndarray:
    c2w = np.eye(4)
    c2w[:3, :3] = Rotation.from_euler("yx", [yaw_degrees, pitch_degrees], degrees=True).as_matrix()
    c2w[:3, 3] = position
    return c2w


def _trajectory() -> np.ndarray:
    """Five cameras in front of the plane, turning and moving sideways."""
    return np.stack([_pose(4.0 * i, -2.0 * i, [0.3 * i, -0.1 * i, 0.2 * i]) for i in range(5)])


def _plane_disparity(c2w: np.ndarray, normal: np.ndarray, offset: float) -> np.ndarray:
    """Normalised disparity that the plane ``normal . X = offset`` produces in a camera (ray-plane intersection)."""
    fx, fy, cx, cy = INTRINSICS * np.array([WIDTH, HEIGHT, WIDTH, HEIGHT])
    u, v = np.meshgrid(np.arange(WIDTH) + 0.5, np.arange(HEIGHT) + 0.5)
    rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=-1) @ c2w[:3, :3].T
    depth = (offset - normal @ c2w[:3, 3]) / (rays @ normal)  # the rays have unit z in the camera
    assert (depth > NEAR).all() and (depth < FAR).all()
    return (1.0 / depth - 1.0 / FAR) / (1.0 / NEAR - 1.0 / FAR)


@pytest.fixture
def plane_scene():
    normal = np.array([0.1, -0.2, 1.0])
    normal /= np.linalg.norm(normal)
    offset = 6.0
    c2w = _trajectory()
    disparity = np.stack([_plane_disparity(pose, normal, offset) for pose in c2w])
    rgb = np.random.default_rng(0).integers(0, 256, size=(*disparity.shape, 3), dtype=np.uint8)
    return rgb, disparity, c2w, normal, offset


def test_disparity_to_depth_end_points_and_middle():
    depth = disparity_to_depth(np.array([1.0, 0.0, 0.5, 1.5]), near=2.0, far=8.0)
    # 1/z = 0.5/2 + 0.5/8 = 0.3125 in the middle; values beyond 1 are clipped to the near plane.
    np.testing.assert_allclose(depth, [2.0, 8.0, 3.2, 2.0])
    with pytest.raises(ValueError, match="near < far"):
        disparity_to_depth(np.zeros(2), near=3.0, far=1.0)


def test_fit_scale_shift_recovers_affine_map_and_rejects_flat_source():
    source = np.linspace(0.0, 1.0, 50).reshape(5, 10)
    scale, shift = fit_scale_shift(source, 0.7 * source + 0.2)
    assert scale == pytest.approx(0.7) and shift == pytest.approx(0.2)
    with pytest.raises(ValueError, match="distinct"):
        fit_scale_shift(np.ones((3, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="same shape"):
        fit_scale_shift(np.ones((3, 3)), np.zeros((3, 4)))


def test_unprojected_points_project_back_to_their_pixel_centres():
    rng = np.random.default_rng(1)
    depth = rng.uniform(1.0, 5.0, size=(HEIGHT, WIDTH))
    c2w = _pose(20.0, 10.0, [1.0, 2.0, -0.5])
    points = unproject(depth, INTRINSICS, c2w, pixel_stride=3)
    assert points.shape == (8, 11, 3)
    w2c = np.linalg.inv(c2w)
    camera = points @ w2c[:3, :3].T + w2c[:3, 3]
    fx, fy, cx, cy = INTRINSICS * np.array([WIDTH, HEIGHT, WIDTH, HEIGHT])
    u, v = np.meshgrid(np.arange(0, WIDTH, 3) + 0.5, np.arange(0, HEIGHT, 3) + 0.5)
    np.testing.assert_allclose(fx * camera[..., 0] / camera[..., 2] + cx, u, atol=1e-9)
    np.testing.assert_allclose(fy * camera[..., 1] / camera[..., 2] + cy, v, atol=1e-9)
    np.testing.assert_allclose(camera[..., 2], depth[::3, ::3], atol=1e-9)


def test_voxel_downsample_averages_points_and_colours_per_voxel():
    cloud = PointCloud(
        points=np.array([[0.1, 0.1, 0.1], [0.3, 0.3, 0.3], [1.5, 0.2, 0.2], [-0.5, 0.5, 0.5]]),
        colors=np.array([[10, 20, 30], [20, 40, 61], [255, 0, 0], [0, 0, 255]], dtype=np.uint8),
    )
    merged = voxel_downsample(cloud, voxel_size=1.0)
    order = np.argsort(merged.points[:, 0])
    np.testing.assert_allclose(merged.points[order], [[-0.5, 0.5, 0.5], [0.2, 0.2, 0.2], [1.5, 0.2, 0.2]])
    np.testing.assert_array_equal(merged.colors[order], [[0, 0, 255], [15, 30, 46], [255, 0, 0]])
    with pytest.raises(ValueError, match="too small"):
        voxel_downsample(PointCloud(np.array([[0.0, 0, 0], [1e6, 1e6, 1e6]]), np.zeros((2, 3), np.uint8)), 1e-9)


def test_plane_seen_from_known_trajectory_lifts_onto_the_plane(plane_scene):
    rgb, disparity, c2w, normal, offset = plane_scene
    intrinsics = np.tile(INTRINSICS, (len(c2w), 1))
    cloud = lift_frames(rgb, disparity, c2w, intrinsics, frame_stride=2, pixel_stride=1, near=NEAR, far=FAR,
                        voxel_size=0)
    assert len(cloud) == 3 * HEIGHT * WIDTH  # frames 0, 2, 4
    np.testing.assert_allclose(cloud.points @ normal, offset, atol=1e-9)
    np.testing.assert_array_equal(cloud.colors[: HEIGHT * WIDTH], rgb[0].reshape(-1, 3))

    # A generated disparity off by an affine map is pulled back onto the plane by the frame-0 input depth.
    distorted = 0.6 * disparity + 0.15
    refitted = lift_frames(rgb, distorted, c2w, intrinsics, reference_disparity=disparity[0], frame_stride=1,
                           pixel_stride=2, near=NEAR, far=FAR, voxel_size=0.05)
    assert 0 < len(refitted) < 5 * (HEIGHT // 2) * (WIDTH // 2)
    np.testing.assert_allclose(refitted.points @ normal, offset, atol=1e-6)


def test_ply_round_trip(tmp_path, plane_scene):
    rgb, disparity, c2w, _, _ = plane_scene
    cloud = lift_frames(rgb, disparity, c2w, np.tile(INTRINSICS, (5, 1)), near=NEAR, far=FAR)
    path = write_ply(tmp_path / "points.ply", cloud)
    vertex = PlyData.read(str(path))["vertex"]
    np.testing.assert_allclose(np.stack([vertex["x"], vertex["y"], vertex["z"]], 1), cloud.points, rtol=1e-6)
    np.testing.assert_array_equal(np.stack([vertex["red"], vertex["green"], vertex["blue"]], 1), cloud.colors)
    assert [p.name for p in tmp_path.iterdir()] == ["points.ply"]
    back = read_ply(path)
    np.testing.assert_allclose(back.points, cloud.points, rtol=1e-6)
    np.testing.assert_array_equal(back.colors, cloud.colors)


def test_colmap_points_read_back_with_pycolmap_beside_the_trajectory(tmp_path):
    pycolmap = pytest.importorskip("pycolmap")
    from diffsynth_dualcam.camera import CameraTrajectory

    CameraTrajectory(_trajectory(), np.tile(INTRINSICS, (5, 1)), (WIDTH, HEIGHT)).save(tmp_path, format="colmap")
    cloud = PointCloud(np.array([[0.0, 1.0, 5.0], [1.0, -1.0, 7.5]]), np.array([[1, 2, 3], [250, 128, 0]], np.uint8))
    write_colmap_points(tmp_path / "points3D.txt", cloud)
    model = pycolmap.Reconstruction(str(tmp_path))
    assert len(model.images) == 5 and len(model.points3D) == 2
    by_colour = {tuple(point.color): point.xyz for point in model.points3D.values()}
    np.testing.assert_allclose(by_colour[(250, 128, 0)], [1.0, -1.0, 7.5])
    np.testing.assert_allclose(by_colour[(1, 2, 3)], [0.0, 1.0, 5.0])


def _write_plane_run(run_dir, plane_scene, with_input_depth: bool = True) -> np.ndarray:
    """A run folder as a generation writes it, showing the plane scene; returns the camera poses."""
    from PIL import Image

    from diffsynth_dualcam.camera import CameraTrajectory
    from diffsynth_dualcam.pipeline.output import DualCamCtrlOutput

    rgb, disparity, c2w, _, _ = plane_scene
    trajectory = CameraTrajectory(c2w, np.tile(INTRINSICS, (len(c2w), 1)))
    depth_frames = [Image.fromarray(np.round(frame * 255).astype(np.uint8)) for frame in disparity]
    params = {"camera": {"type": "trajectory", "realestate10k": trajectory.to_realestate10k().tolist()}}
    DualCamCtrlOutput(
        video=[Image.fromarray(frame) for frame in rgb], depth_video=depth_frames, latents=np.zeros(1),
        depth_latents=np.zeros(1), params=params, input_depth=depth_frames[0] if with_input_depth else None,
    ).save(run_dir, fps=8)
    return c2w


def test_export_command_writes_cloud_on_the_plane_and_colmap_model(tmp_path, plane_scene, capsys):
    pycolmap = pytest.importorskip("pycolmap")
    from diffsynth_dualcam.cli import main

    _, _, _, normal, offset = plane_scene
    c2w = _write_plane_run(tmp_path, plane_scene)
    assert main(["export-3d", str(tmp_path), "--frame-stride", "2", "--pixel-stride", "1", "--voxel-size", "0",
                 "--near", str(NEAR), "--far", str(FAR)]) == 0
    assert "points.ply" in capsys.readouterr().out
    vertex = PlyData.read(str(tmp_path / "points.ply"))["vertex"]
    points = np.stack([vertex["x"], vertex["y"], vertex["z"]], 1).astype(np.float64)
    assert len(points) == 3 * HEIGHT * WIDTH
    # 8-bit depth and lossy video: the distance to the plane stays within a few percent of its distance.
    distance = np.abs(points @ normal - offset)
    assert np.median(distance) < 0.02 * offset and np.percentile(distance, 95) < 0.1 * offset
    model = pycolmap.Reconstruction(str(tmp_path / "sparse" / "0"))
    assert len(model.images) == 5 and len(model.points3D) == len(points)
    centres = {image.name: image.projection_center() for image in model.images.values()}
    np.testing.assert_allclose(centres["frame_00003.png"], c2w[3, :3, 3], atol=1e-6)
    camera = model.cameras[1]
    np.testing.assert_allclose(camera.params, INTRINSICS * [WIDTH, HEIGHT, WIDTH, HEIGHT], rtol=1e-6)
    assert sorted(path.name for path in (tmp_path / "images").iterdir()) == sorted(centres)


def test_export_refuses_runs_without_cameras(tmp_path, plane_scene):
    import json

    from diffsynth_dualcam.cli import main
    from diffsynth_dualcam.export.export3d import export_run

    assert main(["export-3d", str(tmp_path / "missing")]) == 2
    _write_plane_run(tmp_path, plane_scene, with_input_depth=False)
    with pytest.warns(UserWarning, match="input_depth.png not found"):
        export_run(tmp_path, tmp_path / "out", near=NEAR, far=FAR)
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"camera": {"type": "plucker_tensor"}}))
    with pytest.raises(ValueError, match="cameras are unknown"):
        export_run(tmp_path)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"voxel_size": -0.01}, r"voxel_size \(--voxel-size\) must be a finite number >= 0 \(0 keeps every point\)"),
        ({"voxel_size": float("nan")}, "voxel_size"),
        ({"voxel_size": float("inf")}, "voxel_size"),
        ({"frame_stride": 0}, r"frame_stride \(--frame-stride\) must be a whole number >= 1, got 0"),
        ({"pixel_stride": -2}, r"pixel_stride \(--pixel-stride\) must be a whole number >= 1, got -2"),
        ({"pixel_stride": 1.5}, "pixel_stride .* whole number"),
        ({"near": float("nan")}, r"near \(--near\) must be a finite number"),
        ({"far": float("inf")}, r"far \(--far\) must be a finite number"),
        ({"near": 5.0, "far": 2.0}, "need 0 < near < far"),
        ({"near": 0.0}, "need 0 < near < far"),
    ],
)
def test_bad_lift_options_are_refused_before_anything_is_written(tmp_path, plane_scene, options, message):
    from diffsynth_dualcam.export.export3d import export_run

    rgb, disparity, c2w, _, _ = plane_scene
    with pytest.raises(ValueError, match=message):
        lift_frames(rgb, disparity, c2w, np.tile(INTRINSICS, (5, 1)), **{"near": NEAR, "far": FAR, **options})
    _write_plane_run(tmp_path / "run", plane_scene)
    with pytest.raises(ValueError, match=message):
        export_run(tmp_path / "run", tmp_path / "out", **{"near": NEAR, "far": FAR, **options})
    assert not (tmp_path / "out").exists()


def test_export_command_reports_a_negative_voxel_size(tmp_path, plane_scene, capsys):
    from diffsynth_dualcam.cli import main

    _write_plane_run(tmp_path, plane_scene)
    assert main(["export-3d", str(tmp_path), "--voxel-size", "-0.5"]) == 2
    assert "voxel_size (--voxel-size) must be a finite number >= 0" in capsys.readouterr().err
    assert not (tmp_path / "points.ply").exists() and not (tmp_path / "images").exists()
    assert main(["export-3d", str(tmp_path), "--input-depth", str(tmp_path / "absent.png")]) == 2
    assert "input depth map" in capsys.readouterr().err and not (tmp_path / "points.ply").exists()


def test_voxel_size_zero_keeps_every_point_and_none_merges(plane_scene):
    rgb, disparity, c2w, _, _ = plane_scene
    intrinsics = np.tile(INTRINSICS, (5, 1))
    every = lift_frames(rgb, disparity, c2w, intrinsics, frame_stride=1, pixel_stride=1, near=NEAR, far=FAR,
                        voxel_size=0)
    merged = lift_frames(rgb, disparity, c2w, intrinsics, frame_stride=1, pixel_stride=1, near=NEAR, far=FAR)
    assert len(every) == 5 * HEIGHT * WIDTH
    assert 0 < len(merged) < len(every)  # five overlapping views of one plane share voxels


def test_damaged_run_files_are_named_in_a_value_error(tmp_path, plane_scene):
    from diffsynth_dualcam.export.export3d import load_run

    _write_plane_run(tmp_path, plane_scene)
    not_an_image = tmp_path / "depth.txt"
    not_an_image.write_text("not an image")
    with pytest.raises(ValueError, match=r"depth\.txt: not a readable image"):
        load_run(tmp_path, input_depth=not_an_image)
    (tmp_path / "video.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 but cut short")
    with pytest.raises(ValueError, match=r"video\.mp4: not a readable video"):
        load_run(tmp_path)


def test_exporting_a_run_again_replaces_its_points(tmp_path, plane_scene):
    from diffsynth_dualcam.export.export3d import export_run

    _write_plane_run(tmp_path, plane_scene)
    for voxel_size in (0.0, 0.5):  # the second export has fewer points
        export_run(tmp_path, near=NEAR, far=FAR, voxel_size=voxel_size)
        vertices = len(PlyData.read(str(tmp_path / "points.ply"))["vertex"])
        lines = (tmp_path / "sparse" / "0" / "points3D.txt").read_text().splitlines()
        assert len([line for line in lines if line and not line.startswith("#")]) == vertices
    (tmp_path / "sparse" / "0" / "cameras.bin").write_bytes(b"")  # a binary model would shadow the text one
    with pytest.raises(ValueError, match="holds a binary COLMAP model"):
        export_run(tmp_path, near=NEAR, far=FAR)
    assert (tmp_path / "sparse" / "0" / "points3D.txt").read_text().splitlines() == lines  # refused untouched
