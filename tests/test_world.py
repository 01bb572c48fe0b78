"""Chained generation over the world cache, checked with generators whose right answer is known."""
from __future__ import annotations

import json
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.eval.render import SyntheticScene
from diffsynth_dualcam.export.export3d import disparity_to_depth, load_run, read_ply, unproject
from diffsynth_dualcam.pipeline.inputs import prepare_trajectory
from diffsynth_dualcam.world import WorldCache, clip_ranges, generate_chained, generate_long, robust_scale_shift

NEAR, FAR = 1.0, 10.0
WIDTH, HEIGHT = 128, 96
INTRINSICS = (0.62, 0.62 * WIDTH / HEIGHT, 0.5, 0.5)  # square pixels
CHUNK = 9
CLIPS = 6
FRAMES = CLIPS * (CHUNK - 1) + 1


def to_disparity8(depth: np.ndarray) -> np.ndarray:
    """8-bit world disparity of distances (the inverse of ``export3d.disparity_to_depth``), 0 where no depth."""
    disparity = (1.0 / depth - 1.0 / FAR) / (1.0 / NEAR - 1.0 / FAR)
    return np.where(np.isfinite(depth), np.clip(np.round(disparity * 255.0), 0, 255), 0).astype(np.uint8)


def loop_path(num_frames: int = FRAMES, radius: float = 0.45) -> CameraTrajectory:
    """A loop in the horizontal plane (forward, sideways, back) with some yaw, ending on its first camera."""
    angle = np.linspace(0.0, 2.0 * np.pi, num_frames)
    c2w = np.tile(np.eye(4), (num_frames, 1, 1))
    c2w[:, :3, :3] = Rotation.from_euler("y", 0.12 * np.sin(angle)[:, None]).as_matrix()
    c2w[:, 0, 3] = radius * np.sin(angle)
    c2w[:, 1, 3] = -0.1 * np.sin(angle)
    c2w[:, 2, 3] = radius * (1.0 - np.cos(angle))
    c2w[-1] = np.eye(4)
    return CameraTrajectory(c2w, np.tile(INTRINSICS, (num_frames, 1)), (WIDTH, HEIGHT))


@pytest.fixture(scope="module")
def scene() -> SyntheticScene:
    return SyntheticScene(seed=3, texture_size=64, texels_per_unit=24.0)


@pytest.fixture(scope="module")
def first_view(scene):
    """The first frame and its 8-bit disparity map, rendered."""
    render = scene.render(loop_path()[:1], width=WIDTH, height=HEIGHT, supersample=2)
    return Image.fromarray(render.frames[0]), Image.fromarray(to_disparity8(render.depth[0]))


def oracle_clip(image: Image.Image, depth: Image.Image, trajectory: CameraTrajectory):
    """Lift the input frame with its depth map (2x2 points per pixel) and forward-warp it into every camera, nearest
    point per pixel; pixels nothing lands on are black with disparity 0 (no geometry)."""
    rgb = np.asarray(image.convert("RGB"))
    disparity = np.asarray(depth.convert("L"))
    fine_rgb = rgb.repeat(2, axis=0).repeat(2, axis=1).reshape(-1, 3)
    fine_disparity = disparity.repeat(2, axis=0).repeat(2, axis=1)
    valid = fine_disparity.reshape(-1) > 0
    depth_map = disparity_to_depth(fine_disparity / 255.0, NEAR, FAR)
    points = unproject(depth_map, trajectory.intrinsics[0], trajectory.c2w[0]).reshape(-1, 3)[valid]
    colors = fine_rgb[valid]
    frames = np.zeros((len(trajectory), HEIGHT, WIDTH, 3), dtype=np.uint8)
    depths = np.zeros((len(trajectory), HEIGHT, WIDTH), dtype=np.uint8)
    for index, (c2w, intrinsics) in enumerate(zip(trajectory.c2w, trajectory.intrinsics)):
        w2c = np.linalg.inv(c2w)
        camera = points @ w2c[:3, :3].T + w2c[:3, 3]
        fx, fy, cx, cy = intrinsics * np.array([WIDTH, HEIGHT, WIDTH, HEIGHT])
        z = camera[:, 2]
        u = np.floor(fx * camera[:, 0] / z + cx).astype(np.int64)
        v = np.floor(fy * camera[:, 1] / z + cy).astype(np.int64)
        inside = (z > 0) & (u >= 0) & (u < WIDTH) & (v >= 0) & (v < HEIGHT)
        cell, z, color = v[inside] * WIDTH + u[inside], z[inside], colors[inside]
        nearest = np.full(HEIGHT * WIDTH, np.inf)
        np.minimum.at(nearest, cell, z)
        winner = z <= nearest[cell]
        frame = np.zeros((HEIGHT * WIDTH, 3), dtype=np.uint8)
        frame[cell[winner]] = color[winner]
        frames[index] = frame.reshape(HEIGHT, WIDTH, 3)
        depths[index] = to_disparity8(nearest.reshape(HEIGHT, WIDTH))
    return frames, depths


class ScaledOracle:
    """The oracle whose depth output of clip k is scaled by ``factors[k]`` (its geometry stays right: it reads its
    conditioning depth, the previous clip's scaled output, back with the previous factor)."""

    def __init__(self, factors: list[float]) -> None:
        self.factors, self.calls = factors, 0

    def __call__(self, image, depth, trajectory):
        previous = self.factors[self.calls - 1] if self.calls else 1.0
        unscaled = np.clip(np.round(np.asarray(depth, dtype=np.float64) / previous), 0, 255).astype(np.uint8)
        rgb, disparity = oracle_clip(image, Image.fromarray(unscaled), trajectory)
        scale = self.factors[self.calls]
        self.calls += 1
        return rgb, np.clip(np.round(disparity * scale), 0, 255).astype(np.uint8)


def front_points(cache: WorldCache, c2w: np.ndarray) -> np.ndarray:
    """The cache point nearest to the camera in each cell of the cache's render grid: the surfaces it sees."""
    grid = cache.render_depth(c2w, np.asarray(INTRINSICS), width=WIDTH, height=HEIGHT)
    points = cache.cloud.points
    w2c = np.linalg.inv(c2w)
    camera = points @ w2c[:3, :3].T + w2c[:3, 3]
    fx, fy, cx, cy = np.asarray(INTRINSICS) * np.array([WIDTH, HEIGHT, WIDTH, HEIGHT])
    z = camera[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = fx * camera[:, 0] / z + cx, fy * camera[:, 1] / z + cy
    stride = cache.pixel_stride
    inside = (z > 0) & (u >= 0) & (u < grid.shape[1] * stride) & (v >= 0) & (v < grid.shape[0] * stride)
    rows, cols = (v[inside] // stride).astype(int), (u[inside] // stride).astype(int)
    return points[inside][z[inside] <= grid[rows, cols]]


def chamfer(first: np.ndarray, second: np.ndarray) -> float:
    """Symmetric Chamfer distance: the mean of both mean nearest-neighbour distances."""
    return 0.5 * (cKDTree(second).query(first)[0].mean() + cKDTree(first).query(second)[0].mean())


def chain(clip_fn, first_view, num_frames: int = FRAMES, **options):
    image, depth = first_view
    return generate_chained(clip_fn, image=image, depth=depth, trajectory=loop_path()[:num_frames],
                            num_frames=num_frames, chunk_frames=CHUNK, near=NEAR, far=FAR, **options)


def check_cache_stays_on_first_clip(result, first_view, check_last_frame: bool = True) -> None:
    first = chain(oracle_clip, first_view, num_frames=CHUNK)
    first_points = front_points(first.cache, np.eye(4))
    size = np.linalg.norm(np.ptp(first_points, axis=0))
    assert chamfer(front_points(result.cache, np.eye(4)), first_points) <= 0.01 * size
    if not check_last_frame:
        return
    # The last frame is the first camera again: where it still shows the scene, it lies on the first frame's
    # surfaces (each 8-bit level of disparity is up to 2% of the scene size at the far wall, so this needs
    # unscaled depth).
    last = result.depth_video[-1]
    seen = last > 0
    input_disparity = np.asarray(first_view[1], dtype=np.float64) / 255.0
    last_points = unproject(disparity_to_depth(last / 255.0, NEAR, FAR), np.asarray(INTRINSICS), np.eye(4))[seen]
    input_points = unproject(disparity_to_depth(input_disparity, NEAR, FAR), np.asarray(INTRINSICS), np.eye(4))[seen]
    assert seen.mean() > 0.25
    assert chamfer(last_points, input_points) <= 0.01 * size


def test_cache_renders_its_surface_and_measures_disagreement_in_relative_depth():
    """A fronto-parallel plane at distance 4 lifted from one camera: seen from it, the cache lies at 4 everywhere;
    frames of a plane at 4.4 disagree with it by 10%, and a frame's disparity maps back onto the plane's."""
    cache = WorldCache(near=NEAR, far=FAR, pixel_stride=2)
    disparity = np.full((1, HEIGHT, WIDTH), (1 / 4 - 1 / FAR) / (1 / NEAR - 1 / FAR))
    rgb = np.zeros((1, HEIGHT, WIDTH, 3), dtype=np.uint8)
    cameras, intrinsics = np.eye(4)[None], np.asarray(INTRINSICS)[None]
    cache.add_frames(rgb, disparity, cameras, intrinsics)
    rendered = cache.render_depth(cameras[0], intrinsics[0], width=WIDTH, height=HEIGHT)
    np.testing.assert_allclose(rendered[np.isfinite(rendered)], 4.0, rtol=1e-9)
    assert np.isfinite(rendered).mean() > 0.95
    farther = np.full((1, HEIGHT, WIDTH), (1 / 4.4 - 1 / FAR) / (1 / NEAR - 1 / FAR))
    figure, pixels = cache.disagreement(farther, cameras, intrinsics)
    assert figure == pytest.approx(0.1, rel=1e-6) and pixels > 0.95 * (HEIGHT // 2) * (WIDTH // 2)
    # A slanted surface, every point kept (voxel averaging moves a slanted surface's disparity by about 0.4%).
    ramp = np.tile(np.linspace(0.2, 0.9, WIDTH), (HEIGHT, 1))
    slanted = WorldCache(near=NEAR, far=FAR, pixel_stride=2, voxel_size=0)
    slanted.add_frames(rgb, 0.5 * ramp[None] + 0.1, cameras, intrinsics)
    alignment = slanted.align(ramp, cameras[0], intrinsics[0])
    assert alignment.scale == pytest.approx(0.5, rel=1e-6) and alignment.shift == pytest.approx(0.1, abs=1e-6)


def test_clip_ranges_share_one_frame_and_stay_4k_plus_1():
    assert clip_ranges(121, 61) == [(0, 60), (60, 120)]
    assert clip_ranges(181, 61) == [(0, 60), (60, 120), (120, 180)]
    assert clip_ranges(125, 61) == [(0, 60), (60, 120), (120, 124)]
    assert clip_ranges(61, 61) == [(0, 60)]
    for bad in ((120, 61), (121, 60), (121, 1), (0, 61)):
        with pytest.raises(ValueError, match="4k\\+1"):
            clip_ranges(*bad)


def test_robust_fit_recovers_scale_and_shift_despite_outliers():
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 1, 2000)
    target = 0.7 * source + 0.05
    target[:200] = rng.uniform(0, 1, 200)  # 10% outliers
    scale, shift, inliers = robust_scale_shift(source, target)
    # Outliers within the one-level inlier band (1/255) of the line stay in: a bias far below 8-bit precision.
    assert scale == pytest.approx(0.7, rel=1e-3) and shift == pytest.approx(0.05, abs=1e-3)
    assert 0.9 <= inliers <= 0.91


def test_oracle_chain_along_a_loop_keeps_the_cache_on_the_first_clips_geometry(first_view):
    result = chain(oracle_clip, first_view)
    assert len(result.clips) == CLIPS and len(result.video) == FRAMES
    for record in result.clips:
        assert record.alignment.scale == pytest.approx(1.0, abs=0.01)
        assert record.alignment.shift == pytest.approx(0.0, abs=0.01)
    assert result.clips[0].alignment.reference == "input depth map"
    assert all(record.alignment.reference == "world cache" for record in result.clips[1:])
    assert all(record.consistency <= 0.02 for record in result.clips[1:])
    check_cache_stays_on_first_clip(result, first_view)


def test_alignment_recovers_each_clips_depth_scale(first_view):
    factors = [0.9, 0.75, 1.0, 0.85, 0.95, 0.8]
    result = chain(ScaledOracle(factors), first_view)
    for record, factor in zip(result.clips, factors, strict=True):
        assert record.alignment.scale * factor == pytest.approx(1.0, abs=0.01)
        assert record.alignment.shift == pytest.approx(0.0, abs=0.01)
    check_cache_stays_on_first_clip(result, first_view, check_last_frame=False)


@pytest.mark.parametrize("num_frames", [FRAMES, FRAMES - 4])  # the second ends on a shorter clip of 5 frames
def test_chain_of_direct_renders_is_the_render_of_the_whole_path(scene, first_view, num_frames):
    """A clip_fn that renders the scene: it tracks where its clip starts by composing the relative cameras it gets,
    so the chain's frames equal a render of the whole path only if every clip got the right part of it."""
    path = loop_path(num_frames)
    start = [np.eye(4)]
    shared_inputs = []

    def render_clip(image, depth, trajectory):
        shared_inputs.append(np.asarray(image))
        cameras = CameraTrajectory(start[0] @ trajectory.c2w, trajectory.intrinsics)
        start[0] = cameras.c2w[-1]
        render = scene.render(cameras, width=WIDTH, height=HEIGHT, supersample=2)
        return render.frames, to_disparity8(render.depth)

    image, depth = first_view
    result = generate_chained(render_clip, image=image, depth=depth, trajectory=path, num_frames=num_frames,
                              chunk_frames=CHUNK, near=NEAR, far=FAR)
    whole = scene.render(path, width=WIDTH, height=HEIGHT, supersample=2)
    assert result.video.shape == (num_frames, HEIGHT, WIDTH, 3)
    # The same rays up to float rounding of the composed poses: a ray grazing a face edge may flip face.
    colour_difference = np.abs(result.video.astype(int) - whole.frames).max(axis=-1)
    depth_difference = np.abs(result.depth_video.astype(int) - to_disparity8(whole.depth))
    assert (colour_difference > 1).mean() < 1e-3 and (depth_difference > 2).mean() < 1e-3
    np.testing.assert_allclose(result.trajectory.c2w, path.c2w, atol=1e-9)
    np.testing.assert_allclose(result.trajectory.intrinsics, path.intrinsics, atol=1e-12)
    # Each clip after the first starts from the previous clip's last frame.
    for record, condition in zip(result.clips[1:], shared_inputs[1:], strict=True):
        np.testing.assert_array_equal(condition, result.video[record.first_frame])
    assert [(record.first_frame, record.last_frame) for record in result.clips] == clip_ranges(num_frames, CHUNK)


def test_resume_loads_finished_clips(first_view, tmp_path):
    calls, interrupt = [], [True]

    def interrupted_on_third(image, depth, trajectory):
        calls.append(len(trajectory))
        if interrupt[0] and len(calls) == 3:
            raise RuntimeError("interrupted")
        return oracle_clip(image, depth, trajectory)

    with pytest.raises(RuntimeError, match="interrupted"):
        chain(interrupted_on_third, first_view, resume_dir=tmp_path, resume_key={"prompt": "a"})
    calls.clear()
    interrupt[0] = False
    resumed = chain(interrupted_on_third, first_view, resume_dir=tmp_path, resume_key={"prompt": "a"})
    assert len(calls) == CLIPS - 2
    assert [record.resumed for record in resumed.clips] == [True, True] + [False] * (CLIPS - 2)
    np.testing.assert_array_equal(resumed.video, chain(oracle_clip, first_view).video)
    calls.clear()
    chain(lambda *inputs: calls.append(1) or oracle_clip(*inputs), first_view, resume_dir=tmp_path,
          resume_key={"prompt": "another"})
    assert len(calls) == CLIPS  # another run's clips are not loaded


def test_chain_checks_its_arguments(first_view):
    image, depth = first_view
    with pytest.raises(ValueError, match="17 cameras, num_frames=25"):
        generate_chained(oracle_clip, image=image, depth=depth, trajectory=loop_path()[:17], num_frames=25)
    with pytest.raises(ValueError, match="5 RGB frames"):
        generate_chained(lambda *_: (np.zeros((5, 8, 8, 3)), np.zeros((5, 8, 8))), image=image, depth=depth,
                         trajectory=loop_path()[:17], num_frames=17, chunk_frames=9)


ASSETS = Path(__file__).resolve().parents[1] / "demo_assets"


def test_cli_chains_a_long_preset_resumes_after_an_interruption_and_writes_a_readable_run(tmp_path, monkeypatch):
    from diffsynth_dualcam.cli import main
    from diffsynth_dualcam.pipeline import DualCamCtrlPipeline
    from diffsynth_dualcam.world.long import resume_folder

    out = tmp_path / "R"
    original_call = DualCamCtrlPipeline.__call__
    calls, interrupt = [], [True]

    def interrupted_on_second_clip(self, *args, **kwargs):
        calls.append(kwargs["num_frames"])
        if interrupt[0] and len(calls) == 2:
            raise RuntimeError("interrupted")
        return original_call(self, *args, **kwargs)

    monkeypatch.setattr(DualCamCtrlPipeline, "__call__", interrupted_on_second_clip)
    argv = ["generate", "--tiny", "--image", str(ASSETS / "astronaut.png"), "--depth",
            str(ASSETS / "astronaut_depth.png"), "--preset", "orbit_left", "--frames", "121", "--size", "96x64",
            "--steps", "1", "--out", str(out)]
    with pytest.raises(RuntimeError, match="interrupted"):
        main(argv)
    assert not out.exists() and (resume_folder(out) / "clip_000.npz").is_file()
    calls.clear()
    interrupt[0] = False
    assert main(argv) == 0
    assert calls == [61]  # only the second clip was generated
    assert not resume_folder(out).exists()

    for name in ("video.mp4", "depth.mp4", "side_by_side.mp4"):
        assert len(imageio.mimread(out / name, memtest=False)) == 121
    expected = prepare_trajectory(CameraTrajectory.preset("orbit_left", num_frames=121), 121, width=96, height=64,
                                  image_size=Image.open(ASSETS / "astronaut.png").size, resample=True)
    written = CameraTrajectory.load(out / "trajectory.json")
    np.testing.assert_allclose(written.c2w, expected.c2w, atol=1e-6)
    np.testing.assert_allclose(written.intrinsics, expected.intrinsics, atol=1e-6)
    params = json.loads((out / "params.json").read_text())
    assert [clip["frames"] for clip in params["clips"]] == [[0, 60], [60, 120]]
    assert [clip["resumed"] for clip in params["clips"]] == [True, False]
    assert [clip["seed"] for clip in params["clips"]] == [42, 43]
    assert params["num_frames"] == 121 and params["chain"]["chunk_frames"] == 61
    world = read_ply(out / "world.ply")
    assert len(world) == params["chain"]["world_cache"]["points"] > 0
    run = load_run(out)  # what `dualcam export-3d` reads
    assert len(run.rgb) == len(run.trajectory) == 121


def test_text_to_video_chains_from_the_first_clips_last_frame(tmp_path):
    from diffsynth_dualcam.pipeline.tiny import tiny_pipeline

    pipe = tiny_pipeline()
    bars = []

    def progress(steps):
        bars.append(len(steps))
        return steps

    output = generate_long(
        pipe, prompt="a street", t2v=True, camera=CameraTrajectory.preset("pan_left", num_frames=9), height=48,
        width=64, num_frames=9, chunk_frames=5, num_inference_steps=2, seed=7, progress_bar_cmd=progress)
    assert bars == [4]  # one bar over both clips' steps
    assert [clip["generation"]["t2v"] for clip in output.params["clips"]] == [True, False]
    assert output.params["clips"][0]["depth_alignment"]["reference"] == "generated (no input depth map)"
    assert len(output.video) == len(output.depth_video) == 9
    written = output.save(tmp_path / "run")
    assert "world.ply" in written and "input_depth.png" not in written


def test_a_bad_chunk_length_is_an_argument_error_before_models_load(tmp_path, capsys):
    from diffsynth_dualcam.cli import main

    code = main(["generate", "--tiny", "--t2v", "--preset", "orbit_left", "--frames", "17", "--chunk-frames", "8",
                 "--out", str(tmp_path / "R")])
    assert code == 2
    assert "--chunk-frames must be a whole number 4k+1 of at least 5, got 8" in capsys.readouterr().err
    assert not (tmp_path / "R").exists()


def test_a_damaged_kept_clip_is_generated_again(first_view, tmp_path):
    chain(oracle_clip, first_view, resume_dir=tmp_path, resume_key={"prompt": "a"})
    kept = sorted(tmp_path.glob("clip_*.npz"))
    kept[0].write_bytes(kept[0].read_bytes()[:100])  # cut short, as by a full disk
    kept[1].write_bytes(b"")
    calls = []
    resumed = chain(lambda *inputs: calls.append(1) or oracle_clip(*inputs), first_view, resume_dir=tmp_path,
                    resume_key={"prompt": "a"})
    assert len(calls) == 2
    assert [record.resumed for record in resumed.clips] == [False, False] + [True] * (CLIPS - 2)


class StopAtFirstClip(Exception):
    """Raised by a pipeline whose first clip would start: the arguments were all accepted."""


def test_long_paths_are_held_to_the_clip_limits_one_clip_at_a_time(tmp_path, monkeypatch):
    from diffsynth_dualcam.limits import MAX_CLIP_PIXELS
    from diffsynth_dualcam.pipeline.tiny import tiny_pipeline

    pipe = tiny_pipeline()

    def stop(arguments):
        assert arguments.num_frames == 61 and (arguments.width, arguments.height) == (720, 480)
        raise StopAtFirstClip

    monkeypatch.setattr(pipe, "generate", stop)
    camera = CameraTrajectory.preset("pan_left", num_frames=401)
    assert 720 * 480 * 401 > MAX_CLIP_PIXELS  # the whole path at once would be refused
    with pytest.raises(StopAtFirstClip):
        generate_long(pipe, prompt="a", t2v=True, camera=camera, width=720, height=480, num_frames=401,
                      chunk_frames=61, seed=1)
    with pytest.raises(ValueError, match="a clip of 401 frames at 720x480"):
        generate_long(pipe, prompt="a", t2v=True, camera=camera, width=720, height=480, num_frames=401,
                      chunk_frames=401, seed=1)
    with pytest.raises(ValueError, match="resume_dir needs a seed"):
        generate_long(pipe, prompt="a", t2v=True, camera=camera, width=720, height=480, num_frames=401,
                      chunk_frames=61, resume_dir=tmp_path)


def test_a_run_at_another_size_does_not_take_the_kept_clips(tmp_path):
    from diffsynth_dualcam.pipeline.tiny import tiny_pipeline

    pipe, camera = tiny_pipeline(), CameraTrajectory.preset("pan_left", num_frames=9)
    options = {"prompt": "a", "t2v": True, "camera": camera, "num_frames": 9, "chunk_frames": 5,
               "num_inference_steps": 1, "seed": 3, "resume_dir": tmp_path, "progress_bar_cmd": lambda steps: steps}
    generate_long(pipe, width=64, height=32, **options)
    output = generate_long(pipe, width=128, height=64, **options)  # same aspect ratio, same normalised cameras
    assert [clip["resumed"] for clip in output.params["clips"]] == [False, False]
    assert {frame.size for frame in output.video} == {(128, 64)}
