"""3D Gaussian Splatting export: the attributes invert to the lifted points, and a CPU splatting render of the
exported Gaussians reproduces the frame they came from."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData
from scipy.spatial.transform import Rotation

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.eval.render import SyntheticScene
from diffsynth_dualcam.export.export3d import (
    GAUSSIAN_OPACITY,
    GAUSSIAN_SIGMA_PER_FOOTPRINT,
    SEEN_DEPTH_TOLERANCE,
    PointCloud,
    lift_frames,
    voxel_downsample,
    write_gaussians_ply,
)

# Degree-0 spherical harmonic Y_0^0 = 1 / (2 sqrt(pi)), written out independently of the package's constant.
Y00 = 0.5 / np.sqrt(np.pi)
NEAR, FAR = 1.0, 20.0
WIDTH, HEIGHT = 128, 96
INTRINSICS = np.array([0.9, 1.2, 0.5, 0.5])  # normalised fx, fy, cx, cy: square pixels at 128x96
INRIA_LAYOUT = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                + [f"f_rest_{index}" for index in range(45)]
                + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def _pose(yaw_degrees: float, pitch_degrees: float, position) -> np.ndarray:
    c2w = np.eye(4)
    c2w[:3, :3] = Rotation.from_euler("yx", [yaw_degrees, pitch_degrees], degrees=True).as_matrix()
    c2w[:3, 3] = position
    return c2w


def _depth_to_disparity(depth: np.ndarray) -> np.ndarray:
    """Inverse of the lifting's ``1/z = d/near + (1-d)/far``."""
    return (1.0 / depth - 1.0 / FAR) / (1.0 / NEAR - 1.0 / FAR)


@pytest.fixture(scope="module")
def room():
    """Five frames of a textured room with one box (occlusion edges), the camera walking in and turning."""
    scene = SyntheticScene(seed=0, texture_size=64, texels_per_unit=4.0, boxes=(((-1.8, 0.1, 2.9), (-0.6, 1.5, 4.1)),))
    c2w = np.stack([_pose(3.0 * i, -1.5 * i, [0.15 * i, -0.05 * i, 0.2 * i]) for i in range(5)])
    trajectory = CameraTrajectory(c2w, np.tile(INTRINSICS, (5, 1)))
    render = scene.render(trajectory, height=HEIGHT, width=WIDTH)
    return render.frames, _depth_to_disparity(render.depth.astype(np.float64)), trajectory


def _vertex_table(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    vertex = PlyData.read(str(path))["vertex"]
    names = [prop.name for prop in vertex.properties]
    assert {prop.val_dtype for prop in vertex.properties} == {"f4"}
    return names, {name: np.asarray(vertex[name], dtype=np.float64) for name in names}


def render_gaussians(path: Path, c2w: np.ndarray, intrinsics: np.ndarray, width: int, height: int) -> np.ndarray:
    """CPU EWA splatting of a 3DGS `.ply` into one pinhole camera: [height, width, 3] in [0, 1], black background.

    As 3DGS rasterisers do: each Gaussian's 3-D covariance is projected with the Jacobian of the perspective map
    and widened by 0.3 pixel^2, Gaussians are sorted by camera depth and alpha-composited front to back with
    ``alpha = min(0.99, opacity * exp(-d^T Sigma^-1 d / 2))`` (below 1/255 skipped), cut at 3 sigma.
    """
    _, table = _vertex_table(path)
    means = np.stack([table["x"], table["y"], table["z"]], axis=1)
    colours = np.clip(np.stack([table[f"f_dc_{c}"] for c in range(3)], axis=1) * Y00 + 0.5, 0.0, None)
    opacity = 1.0 / (1.0 + np.exp(-table["opacity"]))
    sigma = np.exp(np.stack([table[f"scale_{axis}"] for axis in range(3)], axis=1))
    quaternion = np.stack([table[f"rot_{axis}"] for axis in range(4)], axis=1)  # w, x, y, z
    rotation = Rotation.from_quat(quaternion[:, [1, 2, 3, 0]]).as_matrix()
    covariance = rotation @ (sigma[:, :, None] ** 2 * np.eye(3)) @ rotation.transpose(0, 2, 1)

    w2c = np.linalg.inv(c2w)
    camera = means @ w2c[:3, :3].T + w2c[:3, 3]
    visible = camera[:, 2] > 0.2
    camera, covariance, colours, opacity = camera[visible], covariance[visible], colours[visible], opacity[visible]
    fx, fy, cx, cy = intrinsics * np.array([width, height, width, height])
    x, y, z = camera.T
    jacobian = np.zeros((len(z), 2, 3))
    jacobian[:, 0, 0], jacobian[:, 0, 2] = fx / z, -fx * x / z**2
    jacobian[:, 1, 1], jacobian[:, 1, 2] = fy / z, -fy * y / z**2
    projected = jacobian @ (w2c[:3, :3] @ covariance @ w2c[:3, :3].T) @ jacobian.transpose(0, 2, 1)
    projected += 0.3 * np.eye(2)
    centres = np.stack([fx * x / z + cx, fy * y / z + cy], axis=1)  # pixel (row, col) spans [col, col + 1)
    a, b, c = projected[:, 0, 0], projected[:, 0, 1], projected[:, 1, 1]
    determinant = a * c - b * b
    largest = 0.5 * (a + c) + np.sqrt(0.25 * (a - c) ** 2 + b * b)
    radius = np.ceil(3.0 * np.sqrt(largest))

    image = np.zeros((height, width, 3))
    transmittance = np.ones((height, width))
    for index in np.argsort(z, kind="stable"):
        (u, v), r = centres[index], radius[index]
        col0, col1 = max(0, int(np.floor(u - r))), min(width, int(np.ceil(u + r)))
        row0, row1 = max(0, int(np.floor(v - r))), min(height, int(np.ceil(v + r)))
        if col0 >= col1 or row0 >= row1:
            continue
        dx = np.arange(col0, col1) + 0.5 - u
        dy = (np.arange(row0, row1) + 0.5 - v)[:, None]
        power = -0.5 * (c[index] * dx**2 - 2.0 * b[index] * dx * dy + a[index] * dy**2) / determinant[index]
        alpha = np.minimum(0.99, opacity[index] * np.exp(power))
        alpha[alpha < 1.0 / 255.0] = 0.0
        window = transmittance[row0:row1, col0:col1]
        image[row0:row1, col0:col1] += (window * alpha)[..., None] * colours[index]
        window *= 1.0 - alpha
    return image


def _psnr(image: np.ndarray, reference: np.ndarray) -> float:
    return float(10.0 * np.log10(1.0 / np.mean((image - reference) ** 2)))


def test_renderer_draws_one_gaussian_as_its_projected_ellipse(tmp_path):
    """The test renderer itself against a hand computation: one Gaussian 4 units ahead, 0.1 units wide."""
    cloud = PointCloud(np.array([[0.0, 0.0, 4.0]]), np.array([[255, 128, 0]], np.uint8), np.array([0.2]))
    path = write_gaussians_ply(tmp_path / "one.ply", cloud)
    image = render_gaussians(path, np.eye(4), INTRINSICS, WIDTH, HEIGHT)
    # sigma 0.1 at depth 4 with fx = 115.2 px: 2.88 px, plus the 0.3 px^2 widening.
    variance = (0.5 * 0.2 * 0.9 * WIDTH / 4.0) ** 2 + 0.3
    assert GAUSSIAN_SIGMA_PER_FOOTPRINT == 0.5
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH] + 0.5
    expected = GAUSSIAN_OPACITY * np.exp(-((u - 64.0) ** 2 + (v - 48.0) ** 2) / (2.0 * variance))
    expected[expected < 1 / 255] = 0.0
    cut = np.ceil(3 * np.sqrt(variance))
    expected[(np.abs(u - 64.0) > cut) | (np.abs(v - 48.0) > cut)] = 0.0
    np.testing.assert_allclose(image[..., 0], expected, atol=1e-6)
    np.testing.assert_allclose(image[..., 1], expected * 128 / 255, atol=1e-6)


def test_gaussian_attributes_invert_to_lifted_colours_footprints_and_opacity(tmp_path, room):
    frames, disparity, trajectory = room
    cloud = lift_frames(frames, disparity, trajectory.c2w, trajectory.intrinsics, frame_stride=2, pixel_stride=2,
                        near=NEAR, far=FAR, voxel_size=0)
    names, table = _vertex_table(write_gaussians_ply(tmp_path / "gaussians.ply", cloud))
    assert names == INRIA_LAYOUT
    assert len(table["x"]) == 3 * (HEIGHT // 2) * (WIDTH // 2)
    np.testing.assert_allclose(np.stack([table["x"], table["y"], table["z"]], 1), cloud.points, rtol=1e-6)
    # Colours: rgb / 255 = 0.5 + Y00 f_dc.
    rgb = np.concatenate([frames[index, ::2, ::2].reshape(-1, 3) for index in (0, 2, 4)]) / 255.0
    np.testing.assert_allclose(np.stack([table[f"f_dc_{c}"] for c in range(3)], 1) * Y00 + 0.5, rgb, atol=1e-6)
    # Scales: sigma = GAUSSIAN_SIGMA_PER_FOOTPRINT * depth * stride / fx_pixels on every axis.
    depth = 1.0 / (disparity / NEAR + (1.0 - disparity) / FAR)
    footprint = np.concatenate([depth[index, ::2, ::2].ravel() for index in (0, 2, 4)]) * 2 / (0.9 * WIDTH)
    for axis in range(3):
        np.testing.assert_allclose(np.exp(table[f"scale_{axis}"]) / GAUSSIAN_SIGMA_PER_FOOTPRINT, footprint,
                                   rtol=1e-6)
    np.testing.assert_allclose(1.0 / (1.0 + np.exp(-table["opacity"])), GAUSSIAN_OPACITY, rtol=1e-6)
    quaternion = np.stack([table[f"rot_{axis}"] for axis in range(4)], 1)
    np.testing.assert_allclose(np.linalg.norm(quaternion, axis=1), 1.0, rtol=1e-6)
    assert not any(table[name].any() for name in names if name.startswith(("f_rest", "n")))


@pytest.mark.parametrize(("sh_degree", "num_rest"), [(0, 0), (1, 9), (2, 24)])
def test_lower_sh_degrees_write_fewer_rest_coefficients(tmp_path, sh_degree, num_rest):
    cloud = PointCloud(np.zeros((2, 3)), np.zeros((2, 3), np.uint8), np.ones(2))
    names, _ = _vertex_table(write_gaussians_ply(tmp_path / "g.ply", cloud, sh_degree=sh_degree))
    assert names == INRIA_LAYOUT[:9] + [f"f_rest_{index}" for index in range(num_rest)] + INRIA_LAYOUT[-8:]


def test_write_gaussians_refuses_bad_degree_and_missing_footprints(tmp_path):
    cloud = PointCloud(np.zeros((2, 3)), np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="no footprints"):
        write_gaussians_ply(tmp_path / "g.ply", cloud)
    with pytest.raises(ValueError, match=r"one finite positive footprint per point \(2\)"):
        write_gaussians_ply(tmp_path / "g.ply", PointCloud(cloud.points, cloud.colors, np.array([1.0, 0.0])))
    with pytest.raises(ValueError, match=r"sh_degree \(--sh-degree\) must be a whole number from 0 to 3, got 4"):
        write_gaussians_ply(tmp_path / "g.ply", PointCloud(cloud.points, cloud.colors, np.ones(2)), sh_degree=4)
    assert not list(tmp_path.iterdir())


def test_merged_points_stand_for_their_mean_footprint_or_at_least_a_voxel():
    cloud = PointCloud(np.array([[0.1, 0.1, 0.1], [0.3, 0.3, 0.3], [1.5, 0.2, 0.2]]), np.zeros((3, 3), np.uint8),
                       np.array([2.0, 3.0, 0.25]))
    merged = voxel_downsample(cloud, voxel_size=1.0)
    order = np.argsort(merged.points[:, 0])
    np.testing.assert_allclose(merged.footprints[order], [2.5, 1.0])


def test_drop_seen_keeps_each_surface_once(room):
    frames, disparity, trajectory = room
    every = lift_frames(frames, disparity, trajectory.c2w, trajectory.intrinsics, frame_stride=1, pixel_stride=1,
                        near=NEAR, far=FAR, voxel_size=0)
    once = lift_frames(frames, disparity, trajectory.c2w, trajectory.intrinsics, frame_stride=1, pixel_stride=1,
                       near=NEAR, far=FAR, voxel_size=0, drop_seen=True)
    per_frame = HEIGHT * WIDTH
    np.testing.assert_array_equal(once.points[:per_frame], every.points[:per_frame])  # frame 0 whole
    assert 0 < len(once) - per_frame < 0.5 * 4 * per_frame

    def shown_by_frame_0(points):
        """Which points frame 0 shows: inside its image, within the tolerance of the depth of their pixel."""
        camera = points @ trajectory.w2c[0][:3, :3].T + trajectory.w2c[0][:3, 3]
        pixels = (camera[:, :2] / camera[:, 2:]) * INTRINSICS[:2] * [WIDTH, HEIGHT] + INTRINSICS[2:] * [WIDTH, HEIGHT]
        cols, rows = np.floor(pixels).astype(int).T
        inside = (cols >= 0) & (cols < WIDTH) & (rows >= 0) & (rows < HEIGHT) & (camera[:, 2] > 0)
        depth0 = 1.0 / (disparity[0] / NEAR + (1.0 - disparity[0]) / FAR)
        surface = np.where(inside, depth0[np.clip(rows, 0, HEIGHT - 1), np.clip(cols, 0, WIDTH - 1)], np.inf)
        return inside & (np.abs(camera[:, 2] - surface) <= SEEN_DEPTH_TOLERANCE * surface)

    # Frame 1 is compared with frame 0 only: it keeps exactly the points frame 0 does not show.
    frame_1 = every.points[per_frame:2 * per_frame]
    new = frame_1[~shown_by_frame_0(frame_1)]
    assert 0 < len(new) < 0.2 * per_frame
    np.testing.assert_array_equal(once.points[per_frame:per_frame + len(new)], new)
    # No later point lies on a surface frame 0 shows.
    assert not shown_by_frame_0(once.points[per_frame:]).any()


def test_rendering_the_exported_gaussians_from_frame_0_reproduces_frame_0(tmp_path, room):
    frames, disparity, trajectory = room
    cloud = lift_frames(frames, disparity, trajectory.c2w, trajectory.intrinsics, frame_stride=2, pixel_stride=1,
                        near=NEAR, far=FAR, voxel_size=0, drop_seen=True)
    path = write_gaussians_ply(tmp_path / "gaussians.ply", cloud)
    image = render_gaussians(path, trajectory.c2w[0], INTRINSICS, WIDTH, HEIGHT)
    psnr = _psnr(image, frames[0] / 255.0)
    print(f"PSNR of the Gaussians of frames 0, 2, 4 rendered into frame 0: {psnr:.2f} dB")
    assert psnr >= 25.0
    # The last frame too: its own Gaussians fill what frames 0 and 2 did not show.
    last = render_gaussians(path, trajectory.c2w[4], INTRINSICS, WIDTH, HEIGHT)
    assert _psnr(last, frames[4] / 255.0) >= 25.0


def _write_run(run_dir: Path, frames: np.ndarray, disparity: np.ndarray, trajectory: CameraTrajectory) -> None:
    """A run folder as a generation writes it (8-bit depth video, lossy videos, input depth of frame 0)."""
    from PIL import Image

    from diffsynth_dualcam.pipeline.output import DualCamCtrlOutput

    depth_frames = [Image.fromarray(np.round(frame * 255).astype(np.uint8)) for frame in disparity]
    params = {"camera": {"type": "trajectory", "realestate10k": trajectory.to_realestate10k().tolist()}}
    DualCamCtrlOutput(
        video=[Image.fromarray(frame) for frame in frames], depth_video=depth_frames, latents=np.zeros(1),
        depth_latents=np.zeros(1), params=params, input_depth=depth_frames[0], trajectory=trajectory,
    ).save(run_dir, fps=8)


def test_export_command_writes_gaussians_of_a_run(tmp_path, room):
    frames, disparity, trajectory = room
    _write_run(tmp_path / "run", frames, disparity, trajectory)
    out = tmp_path / "scene"
    command = [sys.executable, "-m", "diffsynth_dualcam", "export-3d", str(tmp_path / "run"), "--out", str(out),
               "--format", "gaussians", "--near", str(NEAR), "--far", str(FAR)]  # every 4th frame, 2nd pixel
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"gaussians.ply: {(out / 'gaussians.ply').resolve()}"
    assert sorted(path.name for path in out.iterdir()) == ["gaussians.ply"]  # no point cloud, frames or COLMAP
    names, table = _vertex_table(out / "gaussians.ply")
    assert names == INRIA_LAYOUT
    # Frame 0 whole, at every second pixel, and what frame 4 adds; no voxel merging (their footprints stay).
    assert HEIGHT * WIDTH // 4 < len(table["x"]) < HEIGHT * WIDTH // 2
    first = np.exp(table["scale_0"][: HEIGHT * WIDTH // 4]) / GAUSSIAN_SIGMA_PER_FOOTPRINT
    depth = 1.0 / (disparity[0, ::2, ::2] / NEAR + (1.0 - disparity[0, ::2, ::2]) / FAR)
    np.testing.assert_allclose(np.median(first), np.median(depth) * 2 / (0.9 * WIDTH), rtol=0.05)  # 8-bit depth
    # Half the pixels, 8-bit depth and a lossy video: the render still shows frame 0.
    image = render_gaussians(out / "gaussians.ply", trajectory.c2w[0], INTRINSICS, WIDTH, HEIGHT)
    psnr = _psnr(image, frames[0] / 255.0)
    print(f"PSNR of the exported run's Gaussians rendered into frame 0: {psnr:.2f} dB")
    assert psnr >= 22.0


def test_export_formats_combine_and_bad_ones_are_refused_before_writing(tmp_path, room, capsys):
    from diffsynth_dualcam.cli import main
    from diffsynth_dualcam.export.export3d import export_run

    frames, disparity, trajectory = room
    _write_run(tmp_path / "run", frames[:2], disparity[:2], trajectory[:2])
    written = export_run(tmp_path / "run", tmp_path / "all", near=NEAR, far=FAR,
                         formats=("points", "colmap", "gaussians"), sh_degree=0)
    assert list(written) == ["points.ply", "images", "sparse", "gaussians.ply"]
    assert all(path.exists() for path in written.values())
    for options, message in ((["--format", "mesh"], "invalid choice: 'mesh'"),
                             (["--format", "gaussians", "--sh-degree", "4"], "argument --sh-degree: invalid choice")):
        with pytest.raises(SystemExit) as exit_info:
            main(["export-3d", str(tmp_path / "run"), "--out", str(tmp_path / "bad"), *options])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"formats \(--format\) must be one or more of points, colmap, gaussians, "
                                         r"got 'splats'"):
        export_run(tmp_path / "run", tmp_path / "bad", formats=("gaussians", "splats"))
    with pytest.raises(ValueError, match=r"sh_degree \(--sh-degree\)"):
        export_run(tmp_path / "run", tmp_path / "bad", formats="gaussians", sh_degree=1.5)
    assert not (tmp_path / "bad").exists()
