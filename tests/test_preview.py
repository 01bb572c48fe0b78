"""The camera-path preview: the .glb scene read back with trimesh, the scale message, and the commands writing it."""
from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image, ImageOps
from scipy.spatial.transform import Rotation

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.camera.plot import frustum_points
from diffsynth_dualcam.cli import generate as generate_cli
from diffsynth_dualcam.cli import main
from diffsynth_dualcam.export.export3d import VIEWER_AXES, lift_frames
from diffsynth_dualcam.export.preview import (
    MAX_SCENE_FRUSTA,
    MAX_SCENE_POINTS,
    PUBLISHED_STEP_RANGE,
    STEP_WARNING_RANGE,
    PathScale,
    build_scene,
    frame_colors,
    lift_first_frame,
    render_scene,
    scene_pixel_stride,
    shown_cameras,
    write_preview,
)
from diffsynth_dualcam.pipeline.inputs import prepare_depth, prepare_image, prepare_trajectory

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import path_scale  # noqa: E402

DEMO_SCENES = {"astronaut": "astronaut_depth.png", "seaside": "seaside_depth.png", "route66": "route66_depth.jpg"}


def load_scene(path: Path) -> trimesh.Scene:
    scene = trimesh.load(path, file_type="glb")
    assert isinstance(scene, trimesh.Scene)
    return scene


def frustum_nodes(scene: trimesh.Scene) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Frame index -> (node transform, frustum vertices in the node's axes)."""
    frustums = {}
    for node in scene.graph.nodes_geometry:
        if node.startswith("frustum_"):
            transform, geometry = scene.graph[node]
            frustums[int(node.removeprefix("frustum_"))] = (transform, np.asarray(scene.geometry[geometry].vertices))
    return frustums


def glb_json(path: Path) -> dict:
    """The JSON chunk of a binary glTF file."""
    data = path.read_bytes()
    magic, version, _ = struct.unpack_from("<4sII", data, 0)
    assert (magic, version) == (b"glTF", 2)
    length, kind = struct.unpack_from("<I4s", data, 12)
    assert kind == b"JSON"
    return json.loads(data[20:20 + length])


def check_cameras(scene: trimesh.Scene, trajectory: CameraTrajectory) -> None:
    """Frustum apexes at the camera centres, image corners along the cameras' rays, the path through every centre,
    all in viewer axes; ``trajectory`` relative to its first frame."""
    frustums = frustum_nodes(scene)
    assert sorted(frustums) == shown_cameras(len(trajectory)).tolist()
    for index, (transform, vertices) in frustums.items():
        apex = transform @ np.append(vertices[0], 1.0)
        np.testing.assert_allclose(apex[:3], trajectory.centres[index] * VIEWER_AXES, rtol=0, atol=1e-6)
        # The top-left image corner lies on the ray through pixel corner (0, 0), at the frustum's depth.
        corner = (transform @ np.append(vertices[1], 1.0))[:3] * VIEWER_AXES
        depth = (np.linalg.inv(trajectory.c2w[index]) @ np.append(corner, 1.0))[2]
        expected = frustum_points(trajectory[index], depth)[0, 1]
        np.testing.assert_allclose(corner, expected, rtol=0, atol=1e-5)
    path = np.asarray(scene.geometry["path"].vertices)  # the segments' end points, in order
    centres = (trajectory.centres * VIEWER_AXES).astype(np.float32)
    np.testing.assert_array_equal(path[0::2], centres[:-1])
    np.testing.assert_array_equal(path[1::2], centres[1:])


def check_points(scene: trimesh.Scene, expected_points: np.ndarray, expected_colors: np.ndarray) -> None:
    """The scene's point cloud is ``expected_points`` (OpenCV axes of the first camera) turned to viewer axes."""
    cloud = scene.geometry["points"]
    np.testing.assert_allclose(cloud.vertices, expected_points * VIEWER_AXES, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(cloud.colors)[:, :3], expected_colors)


def synthetic_scene(width: int = 48, height: int = 32) -> tuple[Image.Image, Image.Image, CameraTrajectory]:
    """A random picture, a disparity ramp and a curved path whose first camera is not at the origin."""
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    depth = Image.fromarray(np.tile(np.linspace(30, 250, width), (height, 1)).astype(np.uint8))
    frames = 9
    c2w = np.tile(np.eye(4), (frames, 1, 1))
    c2w[:, :3, :3] = Rotation.from_euler("yx", np.stack([np.linspace(5, 40, frames), np.linspace(-3, 8, frames)], 1),
                                         degrees=True).as_matrix()
    c2w[:, :3, 3] = np.stack([np.linspace(2, 2.6, frames), np.sin(np.linspace(0, 2, frames)),
                              np.linspace(-1, 0, frames)], axis=1)
    intrinsics = np.tile([0.7, 0.9, 0.52, 0.47], (frames, 1))
    return image, depth, CameraTrajectory(c2w, intrinsics, (width, height))


# ---- the scene ----------------------------------------------------------------------------------------------------


def test_synthetic_scene_reads_back_with_the_lifted_first_frame_and_the_cameras(tmp_path):
    image, depth, trajectory = synthetic_scene()
    scale = write_preview(tmp_path / "scene.glb", trajectory, image, depth, near=0.5, far=8.0)
    scene = load_scene(tmp_path / "scene.glb")
    relative = trajectory.relative()
    check_cameras(scene, relative)

    # The point cloud by hand: pixel centres, the inverse-depth blend of near and far, the first camera at the origin.
    stride = scene_pixel_stride(width=48, height=32)
    assert stride == 1
    v, u = np.mgrid[0:32, 0:48] + 0.5
    disparity = np.asarray(depth, dtype=np.float64) / 255
    z = 1 / (disparity / 0.5 + (1 - disparity) / 8.0)
    fx, fy, cx, cy = trajectory.intrinsics[0] * [48, 32, 48, 32]
    by_hand = np.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], axis=-1).reshape(-1, 3)
    check_points(scene, by_hand, np.asarray(image).reshape(-1, 3))
    # ... and export-3d's lifting called on its own gives the same cloud.
    lifted = lift_frames(np.asarray(image)[None], disparity[None], relative.c2w[:1], relative.intrinsics[:1],
                         frame_stride=1, pixel_stride=1, near=0.5, far=8.0, voxel_size=0)
    check_points(scene, lifted.points, lifted.colors)

    # The first camera looks down -z of the viewer, its y axis (down in the picture) is -y (y up).
    first_transform = frustum_nodes(scene)[0][0]
    np.testing.assert_allclose(first_transform[:3, :3], np.diag([1, -1, -1]), atol=1e-12)
    # Points and lines keep their own colours: the materials are unlit.
    document = glb_json(tmp_path / "scene.glb")
    assert "KHR_materials_unlit" in document["extensionsUsed"]
    assert all("KHR_materials_unlit" in material["extensions"] for material in document["materials"])

    length = np.linalg.norm(np.diff(trajectory.centres, axis=0), axis=1).sum()
    assert scale.length == pytest.approx(length) and scale.frames == 9
    assert scale.median_depth == pytest.approx(float(np.median(z)))


def test_cameras_only_without_a_depth_map(tmp_path):
    image, _, trajectory = synthetic_scene()
    scale = write_preview(tmp_path / "cameras.glb", trajectory, image, None)
    scene = load_scene(tmp_path / "cameras.glb")
    assert "points" not in scene.geometry
    check_cameras(scene, trajectory.relative())
    assert scale.median_depth is None and "no depth map" in scale.message()


def test_render_draws_the_scene_and_its_cameras(tmp_path):
    image, depth, trajectory = synthetic_scene()
    relative = trajectory.relative()
    scene = build_scene(relative, lift_first_frame(image, depth, relative.intrinsics[0]))
    with Image.open(render_scene(scene, tmp_path / "scene.png", title="synthetic")) as picture:
        pixels = np.asarray(picture.convert("RGB")).astype(int)
    # The frustums' colours (first frame purple, last yellow) appear in the picture.
    for color in frame_colors(len(relative))[[0, -1], :3]:
        assert (np.abs(pixels - color).max(axis=-1) < 30).sum() > 20
    bare = render_scene(build_scene(relative), tmp_path / "bare.png")  # no point cloud
    assert bare.stat().st_size > 10_000


def test_long_paths_show_every_kth_camera_and_the_last():
    assert shown_cameras(61).tolist() == list(range(61))
    shown = shown_cameras(301)
    assert len(shown) <= MAX_SCENE_FRUSTA and shown[0] == 0 and shown[-1] == 300
    assert set(np.diff(shown[:-1])) == {4}
    for num_frames in range(1, 1000):  # at most the limit for every length, the last camera included
        every = shown_cameras(num_frames)
        assert len(every) <= MAX_SCENE_FRUSTA and every[-1] == num_frames - 1
    assert scene_pixel_stride(width=1275, height=888) == 4  # 319 x 222 = 70,818 points
    sizes = [(1275, 888), (720, 480), (4096, 4096), (317, 316)]
    strides = {(w, h): scene_pixel_stride(width=w, height=h) for w, h in sizes}
    assert all(np.ceil(w / stride) * np.ceil(h / stride) <= MAX_SCENE_POINTS for (w, h), stride in strides.items())


# ---- scale --------------------------------------------------------------------------------------------------------


def test_scale_message_and_warnings_by_hand():
    depth = Image.new("L", (8, 8), 255)  # disparity 1 everywhere: every pixel at `near`
    trajectory = CameraTrajectory.preset("dolly_in", num_frames=61, step=0.01)
    scale = write_preview_scale(trajectory, depth, near=2.0)
    assert scale.median_depth == pytest.approx(2.0)
    assert scale.ratio == pytest.approx(0.6 / 2.0) and scale.ratio_per_frame == pytest.approx(0.005)
    assert scale.message().startswith("moves 0.3x the median scene depth over 61 frames")
    assert scale.warning() is None
    fast = PathScale(length=0.6 * 4, frames=61, median_depth=2.0)  # 0.02 per frame
    assert "may fly through the scene" in fast.warning() and "0.02x the median scene depth per frame" in fast.warning()
    slow = PathScale(length=0.01, frames=61, median_depth=2.0)
    assert "little parallax" in slow.warning()
    turning = PathScale(length=0.0, frames=61, median_depth=2.0)
    assert turning.warning() is None and "does not move" in turning.message()


def write_preview_scale(trajectory: CameraTrajectory, depth: Image.Image, near: float) -> PathScale:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return write_preview(Path(folder) / "s.glb", trajectory, Image.new("RGB", depth.size), depth, near=near)


def test_published_range_is_what_the_demo_paths_measure(demo_dir):
    rows = path_scale.measure(demo_dir)
    low, high = path_scale.published_range(rows)
    assert (float(f"{low:.2g}"), float(f"{high:.2g}")) == PUBLISHED_STEP_RANGE
    assert STEP_WARNING_RANGE == pytest.approx((PUBLISHED_STEP_RANGE[0] / 4, PUBLISHED_STEP_RANGE[1] * 4))
    # None of the demo paths and presets is warned about.
    assert all(row.scale.warning() is None for row in rows)


# ---- commands -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scene_name", sorted(DEMO_SCENES))
def test_trajectory_show_writes_the_scene_of_a_demo(demo_dir, tmp_path, capsys, scene_name):
    image_path, depth_path = demo_dir / f"{scene_name}.png", demo_dir / DEMO_SCENES[scene_name]
    if not image_path.exists():
        image_path = demo_dir / f"{scene_name}.jpg"
    plot = tmp_path / "plot.png"
    assert main(["trajectory", "show", str(demo_dir / f"{scene_name}.torch"), "--image", str(image_path), "--depth",
                 str(depth_path), "--plot", str(plot)]) == 0
    printed = capsys.readouterr().out
    glb = tmp_path / "plot.glb"
    assert f"scene: {glb.resolve()}" in printed and plot.is_file()
    scene = load_scene(glb)

    # Independently: the upright image, the depth map at its size, the intrinsics cover-cropped to it.
    with Image.open(image_path) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    with Image.open(depth_path) as opened:
        depth = opened.convert("L").resize(image.size, Image.Resampling.BICUBIC)
    trajectory = CameraTrajectory.load(demo_dir / f"{scene_name}.torch").cover_crop(target_size=image.size).relative()
    stride = scene_pixel_stride(width=image.width, height=image.height)
    disparity = np.asarray(depth, dtype=np.float64) / 255
    lifted = lift_frames(np.asarray(image)[None], disparity[None], trajectory.c2w[:1], trajectory.intrinsics[:1],
                         frame_stride=1, pixel_stride=stride, voxel_size=0)
    check_points(scene, lifted.points, lifted.colors)
    check_cameras(scene, trajectory)
    median = np.median(1 / (disparity / 1.0 + (1 - disparity) / 10.0))
    ratio = np.linalg.norm(np.diff(trajectory.centres, axis=0), axis=1).sum() / median
    assert f"scale: the camera moves {ratio:.2g}x the median scene depth over {len(trajectory)} frames" in printed


def test_trajectory_preset_writes_its_scene_beside_the_file(tmp_path, capsys):
    image, depth, _ = synthetic_scene(64, 36)
    image.save(tmp_path / "frame.png")
    depth.resize((128, 72)).save(tmp_path / "depth.png")  # another size of the same aspect
    output = tmp_path / "orbit.json"
    assert main(["trajectory", "preset", "orbit_left", "-o", str(output), "--num-frames", "25", "--image",
                 str(tmp_path / "frame.png"), "--depth", str(tmp_path / "depth.png")]) == 0
    captured = capsys.readouterr()
    assert f"scene: {(tmp_path / 'orbit.glb').resolve()}" in captured.out
    scene = load_scene(tmp_path / "orbit.glb")
    # The preset's 640x360 intrinsics are cover-cropped to the 64x36 frame (same aspect: unchanged).
    check_cameras(scene, CameraTrajectory.preset("orbit_left", 25))
    assert len(scene.geometry["points"].vertices) == 64 * 36
    # Without a depth map: cameras only, with a notice.
    assert main(["trajectory", "preset", "orbit_left", "-o", str(tmp_path / "bare.json"), "--image",
                 str(tmp_path / "frame.png")]) == 0
    assert "the scene holds the cameras and their path only" in capsys.readouterr().err
    assert "points" not in load_scene(tmp_path / "bare.glb").geometry
    # --depth-model estimates the missing depth map (here the tiny random Depth Anything, saved as a local model).
    from diffsynth_dualcam.pipeline.tiny import save_tiny_depth_anything, tiny_depth_estimator

    save_tiny_depth_anything(tmp_path / "depth_model")
    assert main(["trajectory", "preset", "orbit_left", "-o", str(tmp_path / "estimated.json"), "--image",
                 str(tmp_path / "frame.png"), "--depth-model", str(tmp_path / "depth_model")]) == 0
    estimated = tiny_depth_estimator()(image)
    expected = lift_first_frame(image, estimated, CameraTrajectory.preset("orbit_left", 61).intrinsics[0])
    check_points(load_scene(tmp_path / "estimated.glb"), expected.points, expected.colors)


@pytest.mark.parametrize(("extra", "message"), [
    (["--depth", "{folder}/depth.png"], "--depth belongs to the 3D preview: give --image too"),
    (["--image", "{folder}/frame.png", "--depth", "{folder}/tall.png"], "a depth map must show the image's frame"),
    (["--image", "{folder}/frame.png", "--near", "5", "--far", "2"], "need 0 < near < far"),
    (["--image", "{folder}/missing.png"], "--image: no such file"),
    (["--image", "{folder}/text.png"], "--image: cannot read"),
    (["--image", "{folder}/frame.png", "--depth-model", "{folder}/no_model"], "could not be loaded"),
])
def test_bad_preview_inputs_fail_before_anything_is_written(tmp_path, capsys, extra, message):
    image, depth, _ = synthetic_scene()
    image.save(tmp_path / "frame.png")
    depth.save(tmp_path / "depth.png")
    depth.resize((32, 48)).save(tmp_path / "tall.png")
    (tmp_path / "text.png").write_text("not an image")
    CameraTrajectory.preset("dolly_in", 9).save(tmp_path / "path.json")
    plot = tmp_path / "out" / "plot.png"
    code = main(["trajectory", "show", str(tmp_path / "path.json"), "--plot", str(plot),
                 *[item.format(folder=tmp_path) for item in extra]])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.fixture
def no_models(monkeypatch):
    """--preview-only must not build the pipeline."""
    def forbidden(*args, **kwargs):
        raise AssertionError("a generation model was loaded by --preview-only")

    monkeypatch.setattr(generate_cli, "build_pipeline", forbidden)


def test_generate_preview_only_writes_the_scene_as_the_generation_would_see_it(tmp_path, capsys, demo_dir, no_models):
    out = tmp_path / "preview"
    argv = ["generate", "--tiny", "--preview-only", "--image", str(demo_dir / "seaside.png"), "--depth",
            str(demo_dir / "seaside_depth.png"), "--trajectory", str(demo_dir / "seaside.torch"), "--size", "96x64",
            "--frames", "21", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"scene: {(out / 'preview.glb').resolve()}" in printed
    assert f"plot: {(out / 'preview.png').resolve()}" in printed
    assert sorted(path.name for path in out.iterdir()) == ["preview.glb", "preview.png"]
    scene = load_scene(out / "preview.glb")
    # The generation's own preparation: output size, the recorded path's first 21 cameras, cover-cropped.
    with Image.open(demo_dir / "seaside.png") as image, Image.open(demo_dir / "seaside_depth.png") as depth:
        rgb = np.asarray(prepare_image(image, width=96, height=64))
        disparity = np.asarray(prepare_depth(depth, width=96, height=64).convert("L"), dtype=np.float64) / 255
        source_size = image.size
    trajectory = prepare_trajectory(CameraTrajectory.load(demo_dir / "seaside.torch"), 21, width=96, height=64,
                                    image_size=source_size, resample=False)
    lifted = lift_frames(rgb[None], disparity[None], trajectory.c2w[:1], trajectory.intrinsics[:1], frame_stride=1,
                         pixel_stride=1, voxel_size=0)
    check_points(scene, lifted.points, lifted.colors)
    check_cameras(scene, trajectory)
    assert "over 21 frames" in printed


def test_generate_preview_only_estimates_a_missing_depth_and_refuses_batches(tmp_path, capsys, demo_dir, no_models):
    base = ["generate", "--tiny", "--preview-only", "--preset", "dolly_in", "--out", str(tmp_path / "p")]
    assert main([*base, "--image", str(demo_dir / "astronaut.png")]) == 0
    captured = capsys.readouterr()
    assert "estimated by the tiny random depth model" in captured.err
    assert "points" in load_scene(tmp_path / "p" / "preview.glb").geometry
    assert main([*base, "--t2v"]) == 0
    assert "--t2v has no first frame" in capsys.readouterr().err
    assert "points" not in load_scene(tmp_path / "p" / "preview.glb").geometry
    batch = tmp_path / "clips.jsonl"
    batch.write_text("{}\n")
    assert main([*base, "--batch-file", str(batch)]) == 2
    assert "--preview-only previews one clip" in capsys.readouterr().err
