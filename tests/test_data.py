"""Datasets: clip sampling, crop/flip geometry, layouts, error messages and the dataset checker."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from diffsynth_dualcam.camera import CameraTrajectory, pack_plucker
from diffsynth_dualcam.data import DL3DVDataset, RealEstate10KDataset
from diffsynth_dualcam.data.check import check_dataset
from diffsynth_dualcam.data.clip_dataset import ClipFiles
from diffsynth_dualcam.data.frames import FrameSource
from diffsynth_dualcam.data.prepare import STRETCH_PERCENTILES, align_disparities, disparity_video
from diffsynth_dualcam.data.synthetic import write_synthetic_dataset
from diffsynth_dualcam.data.transforms import MIRROR_X, sample_clip_indices

POINT = np.array([[0.25, 0.1, 3.0]])  # one glowing point, in the world of every synthetic clip


def blob_centre(frame: torch.Tensor) -> np.ndarray:
    """Intensity-weighted centroid (u, v) of a [3, H, W] frame in [-1, 1], pixel centres at +0.5."""
    weight = ((frame.mean(0) + 1.0) / 2.0).numpy().astype(np.float64)
    weight = np.where(weight > 0.05, weight, 0.0)
    rows, columns = np.mgrid[: weight.shape[0], : weight.shape[1]] + 0.5
    return np.array([(weight * columns).sum(), (weight * rows).sum()]) / weight.sum()


@pytest.fixture
def point_dataset(tmp_path):
    cameras = write_synthetic_dataset(tmp_path, num_clips=1, num_frames=9, width=96, height=64, points=POINT)
    return tmp_path, cameras["clip000"]


@pytest.mark.parametrize("height,width", [(48, 48), (48, 112)])  # crop left/right, crop top/bottom
@pytest.mark.parametrize("flip", [False, True])
def test_point_projects_onto_its_pixel_after_crop_and_flip(point_dataset, height, width, flip):
    root, source_camera = point_dataset
    dataset = RealEstate10KDataset(root, height=height, width=width, num_frames=5, stride=2)
    item = dataset.sample(0, np.random.default_rng(1), flip=flip)
    camera = item["camera"]
    # The item's world is the first sampled camera's frame, mirrored in x when the clip was flipped.
    first_w2c = source_camera.w2c[item["frame_ids"][0]]
    point = first_w2c @ np.append(POINT[0], 1.0)
    if flip:
        point = MIRROR_X @ point
    pixel = camera.pixel_intrinsics(width=width, height=height)
    for k in range(5):
        x, y, z = (camera.w2c[k] @ point)[:3]
        expected = np.array([pixel[k, 0] * x / z + pixel[k, 2], pixel[k, 1] * y / z + pixel[k, 3]])
        np.testing.assert_allclose(blob_centre(item["video"][:, k]), expected, atol=0.35)
    assert np.allclose(camera.c2w[0], np.eye(4))


def test_flip_mirrors_frames_and_keeps_camera_rigid(point_dataset):
    root, _ = point_dataset
    dataset = RealEstate10KDataset(root, height=64, width=96, num_frames=5)
    plain = dataset.sample(0, np.random.default_rng(3), flip=False)
    mirrored = dataset.sample(0, np.random.default_rng(3), flip=True)
    assert torch.equal(mirrored["video"], plain["video"].flip(-1))
    assert torch.equal(mirrored["depth"], plain["depth"].flip(-1))
    np.testing.assert_allclose(mirrored["camera"].intrinsics[:, 2], 1.0 - plain["camera"].intrinsics[:, 2])
    np.testing.assert_allclose(np.linalg.det(mirrored["camera"].c2w[:, :3, :3]), 1.0)
    # Mirroring the scene mirrors the rays: Plücker x of direction flips sign under the image flip.
    direction_x = pack_plucker(plain["camera"].plucker(width=96, height=64))[12:16]
    mirrored_x = mirrored["plucker"][12:16]
    torch.testing.assert_close(mirrored_x, -direction_x.flip(-1), atol=1e-5, rtol=0)


def test_item_contents_without_resize(tmp_path):
    cameras = write_synthetic_dataset(tmp_path, num_clips=2, num_frames=9, width=96, height=64)
    dataset = RealEstate10KDataset(tmp_path, height=64, width=96, num_frames=9, stride=1, flip_probability=0.0)
    item = dataset.sample(1, np.random.default_rng(0))
    assert item["clip"] == "clip001"
    assert item["prompt"].startswith("synthetic scene 1")
    assert item["video"].shape == (3, 9, 64, 96) and item["depth"].shape == (3, 9, 64, 96)
    assert item["plucker"].shape == (24, 3, 64, 96)
    disparity = np.asarray(Image.open(tmp_path / "clip001" / "depth" / "00004.png"), dtype=np.float32)
    expected = torch.from_numpy(disparity / 127.5 - 1.0)
    for channel in range(3):
        torch.testing.assert_close(item["depth"][channel, 4], expected, atol=1e-6, rtol=0)
    relative = cameras["clip001"].relative()
    np.testing.assert_allclose(item["camera"].c2w, relative.c2w, atol=1e-7)
    torch.testing.assert_close(item["plucker"], pack_plucker(relative.plucker(width=96, height=64)), atol=1e-5, rtol=0)


def test_captions_off_gives_empty_prompts(tmp_path):
    write_synthetic_dataset(tmp_path, num_clips=1)
    dataset = RealEstate10KDataset(tmp_path, height=64, width=96, num_frames=5, use_captions=False)
    assert dataset.sample(0, np.random.default_rng(0))["prompt"] == ""


def test_video_files_and_random_access(tmp_path):
    write_synthetic_dataset(tmp_path, num_clips=1, num_frames=9, video=True)
    dataset = RealEstate10KDataset(tmp_path, height=32, width=48, num_frames=5, stride=2, num_samples=7)
    assert len(dataset) == 7
    torch.manual_seed(0)
    item = dataset[3]
    assert item["video"].shape == (3, 5, 32, 48)
    assert np.all(np.diff(item["frame_ids"]) == 2)


def test_sample_clip_indices():
    rng = np.random.default_rng(0)
    for _ in range(20):
        indices = sample_clip_indices(30, 9, 3, rng)
        assert len(indices) == 9 and indices[0] >= 0 and indices[-1] < 30
        assert np.all(np.diff(indices) == 3)
    # Too short for stride 5: the largest stride that fits (2) is used, also when that is the minimum.
    assert np.all(np.diff(sample_clip_indices(20, 9, 5, rng)) == 2)
    assert np.all(np.diff(sample_clip_indices(20, 9, 5, rng, min_stride=2)) == 2)
    with pytest.raises(ValueError, match="4k\\+1"):
        sample_clip_indices(30, 8, 1, rng)
    with pytest.raises(ValueError, match="needs at least 9 frames, has 6"):
        sample_clip_indices(6, 9, 1, rng)
    # 9 frames at least 2 apart need 17: 16 is too short even though stride 1 would fit.
    with pytest.raises(ValueError, match="needs at least 17 frames, has 16 \\(9 frames at stride >= 2\\)"):
        sample_clip_indices(16, 9, 5, rng, min_stride=2)
    with pytest.raises(ValueError, match="min_stride must be between 1 and stride=2"):
        sample_clip_indices(30, 9, 2, rng, min_stride=3)


def test_min_stride_in_the_dataset_and_the_checker(tmp_path, capsys):
    from diffsynth_dualcam.cli import main

    write_synthetic_dataset(tmp_path, num_clips=1, num_frames=9)
    dataset = RealEstate10KDataset(tmp_path, height=64, width=96, num_frames=5, stride=8, min_stride=2)
    item = dataset.sample(0, np.random.default_rng(0))
    assert item["frame_ids"].tolist() == [0, 2, 4, 6, 8]  # stride 8 lowered to the 2 that fits
    strict = RealEstate10KDataset(tmp_path, height=64, width=96, num_frames=5, stride=8, min_stride=3)
    with pytest.raises(ValueError, match="clip 'clip000': needs at least 13 frames, has 9"):
        strict.sample(0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="min_stride must be between 1 and stride=2"):
        RealEstate10KDataset(tmp_path, height=64, width=96, num_frames=5, stride=2, min_stride=3)
    assert main(["check-dataset", str(tmp_path), "--num-frames", "5", "--min-stride", "2"]) == 0
    assert main(["check-dataset", str(tmp_path), "--num-frames", "5", "--min-stride", "3"]) == 1
    assert "PROBLEM clip000: 9 usable frames, fewer than the 13 that num_frames=5 at min_stride=3 needs" in (
        capsys.readouterr().out)


def test_errors_name_the_clip(tmp_path):
    write_synthetic_dataset(tmp_path, num_clips=3, num_frames=9)
    (tmp_path / "clip000" / "depth" / "00008.png").unlink()
    shutil.rmtree(tmp_path / "clip001" / "depth")
    pose = tmp_path / "clip002" / "clip002.txt"
    pose.write_text("\n".join(pose.read_text().splitlines()[:-2]) + "\n")
    dataset = RealEstate10KDataset(tmp_path, height=64, width=96, num_frames=5)
    with pytest.raises(ValueError, match="clip 'clip000': depth has 8 frames .* but RGB has 9"):
        dataset.sample(0, np.random.default_rng(0))
    with pytest.raises(FileNotFoundError, match="clip 'clip001': no depth video"):
        dataset.sample(1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="clip 'clip002': clip002.txt has 7 pose rows but frames has 9 frames"):
        dataset.sample(2, np.random.default_rng(0))
    long_clips = RealEstate10KDataset(tmp_path, height=64, width=96, num_frames=13)
    with pytest.raises(FileNotFoundError, match="clip 'clip001'"):
        long_clips.sample(1, np.random.default_rng(0))

    reports = check_dataset(dataset, num_frames=13, progress=False)
    assert [report.name for report in reports] == ["clip000", "clip001", "clip002"]
    assert all(not report.ok for report in reports)
    assert "depth has 8 frames" in reports[0].problems[0]


def test_checker_passes_a_good_dataset_and_flags_short_clips(tmp_path):
    write_synthetic_dataset(tmp_path, num_clips=2, num_frames=9)
    dataset = RealEstate10KDataset(tmp_path, height=64, width=96, num_frames=5)
    assert all(report.ok and not report.warnings for report in check_dataset(dataset, num_frames=9, progress=False))
    short = check_dataset(dataset, num_frames=13, progress=False)
    assert short[0].problems == ["9 usable frames, fewer than the 13 that num_frames=13 at min_stride=1 needs"]


def test_depth_of_another_aspect_ratio_stops_training(tmp_path):
    write_synthetic_dataset(tmp_path, num_clips=2, num_frames=5)  # 96x64 frames
    for clip, size in (("clip000", (64, 64)), ("clip001", (48, 32))):  # square: wrong; half size: the same aspect
        for path in (tmp_path / clip / "depth").iterdir():
            Image.open(path).resize(size).save(path)
    dataset = RealEstate10KDataset(tmp_path, height=32, width=48, num_frames=5)
    with pytest.raises(ValueError, match="clip 'clip000': depth frames are 64x64, RGB frames 96x64: the aspect "
                                         "ratios differ"):
        dataset.sample(0, np.random.default_rng(0))
    assert dataset.sample(1, np.random.default_rng(0))["depth"].shape == (3, 5, 32, 48)
    reports = check_dataset(dataset, progress=False)
    assert reports[0].problems == ["depth frames are 64x64, RGB frames 96x64: the aspect ratios differ"]
    assert reports[1].ok


def test_per_clip_captions_follow_the_sampled_frames(tmp_path):
    write_synthetic_dataset(tmp_path, num_clips=3, num_frames=9)
    (tmp_path / "captions.json").write_text(json.dumps({"clip001": "the dataset's caption"}))
    # The published per-clip form ({split}_captions/<key>/captions.json): a caption every N frames by frame index.
    (tmp_path / "clip000" / "captions.json").write_text(json.dumps({"0": "first room", "4": "hall", "8": "garden"}))
    (tmp_path / "clip001" / "captions.json").write_text(json.dumps({"0": "overridden by the dataset's"}))
    dataset = RealEstate10KDataset(tmp_path, height=64, width=96, num_frames=5, stride=1, flip_probability=0.0)
    seen = set()
    for seed in range(12):
        item = dataset.sample(0, np.random.default_rng(seed))
        last = int(item["frame_ids"][-1])  # 4..8: the caption of the last captioned frame at or before it
        assert item["prompt"] == ("garden" if last >= 8 else "hall"), last
        seen.add(item["prompt"])
    assert seen == {"hall", "garden"}
    assert dataset.sample(1, np.random.default_rng(0))["prompt"] == "the dataset's caption"
    assert dataset.sample(2, np.random.default_rng(0))["prompt"] == ""
    uncaptioned = RealEstate10KDataset(tmp_path, height=64, width=96, num_frames=5, use_captions=False)
    assert uncaptioned.sample(0, np.random.default_rng(0))["prompt"] == ""
    # Before the first captioned frame: its caption.
    clip = dataset.open_clip("clip000")
    late = ClipFiles(clip.name, clip.rgb, clip.depth, clip.camera, clip.frame_ids, frame_captions={6: "late"})
    assert late.prompt_for(np.array([0, 1, 2])) == "late"

    reports = check_dataset(dataset, progress=False)
    assert [report.warnings for report in reports[:2]] == [[], []]
    assert "no caption" in reports[2].warnings[0]
    (tmp_path / "clip002" / "captions.json").write_text(json.dumps({"start": "not a frame index"}))
    with pytest.raises(ValueError, match="clip 'clip002': .*captions.json: expected a JSON object mapping frame "
                                         "indices"):
        dataset.sample(2, np.random.default_rng(0))
    assert "expected a JSON object mapping frame indices" in check_dataset(dataset, progress=False)[2].problems[0]


def test_checker_rejects_colour_mapped_depth(tmp_path):
    write_synthetic_dataset(tmp_path, num_clips=1, num_frames=5)
    for path in (tmp_path / "clip000" / "depth").iterdir():
        gray = np.asarray(Image.open(path))
        Image.fromarray(np.stack([gray, 255 - gray, gray // 2], axis=-1)).save(path)
    dataset = RealEstate10KDataset(tmp_path, height=64, width=96, num_frames=5)
    (report,) = check_dataset(dataset, progress=False)
    assert "not grayscale" in report.problems[0]


def test_dl3dv_layout_with_colmap_model(tmp_path):
    import pycolmap

    scene = tmp_path / "raw"
    cameras = write_synthetic_dataset(scene, num_clips=1, num_frames=9, width=96, height=64)
    camera = cameras["clip000"]
    folder = tmp_path / "dl3dv" / "scene_a"
    shutil.copytree(scene / "clip000" / "frames", folder / "images")
    shutil.copytree(scene / "clip000" / "depth", folder / "depth")
    reconstruction = pycolmap.Reconstruction()
    pixel = camera.pixel_intrinsics(width=96, height=64)[0]
    reconstruction.add_camera_with_trivial_rig(
        pycolmap.Camera(model="PINHOLE", width=96, height=64, params=pixel.tolist(), camera_id=1))
    skipped = 3  # frame 3 is not registered: it must be left out, and the depth frames must stay aligned
    for index, w2c in enumerate(camera.w2c):
        if index == skipped:
            continue
        image = pycolmap.Image(name=f"{index:05d}.png", camera_id=1, image_id=index + 1)
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(w2c[:3, :3]), w2c[:3, 3])
        reconstruction.add_image_with_trivial_frame(image, pose)
    (folder / "sparse" / "0").mkdir(parents=True)
    reconstruction.write(str(folder / "sparse" / "0"))

    dataset = DL3DVDataset(tmp_path / "dl3dv", height=64, width=96, num_frames=5, stride=2, flip_probability=0.0)
    clip = dataset.open_clip("scene_a")
    assert clip.frame_ids.tolist() == [0, 1, 2, 4, 5, 6, 7, 8]
    np.testing.assert_allclose(clip.camera.c2w, camera.c2w[clip.frame_ids], atol=1e-6)
    np.testing.assert_allclose(clip.camera.intrinsics, camera.intrinsics[clip.frame_ids], atol=1e-9)
    item = dataset.sample(0, np.random.default_rng(0))
    assert skipped not in item["frame_ids"].tolist()
    expected_depth = np.asarray(Image.open(folder / "depth" / f"{item['frame_ids'][2]:05d}.png"), np.float32)
    torch.testing.assert_close(item["depth"][0, 2], torch.from_numpy(expected_depth / 127.5 - 1.0), atol=1e-6, rtol=0)


def test_prepare_data_writes_dl3dv_depth_and_reports_skipped_folders(tmp_path, capsys):
    from diffsynth_dualcam.cli import main
    from diffsynth_dualcam.pipeline.tiny import save_tiny_depth_anything

    model = save_tiny_depth_anything(tmp_path / "model")
    write_synthetic_dataset(tmp_path / "raw", num_clips=1, num_frames=5)
    root = tmp_path / "dl3dv"
    shutil.copytree(tmp_path / "raw" / "clip000" / "frames", root / "scene_a" / "images_4")
    (root / "notes").mkdir()
    # In the RealEstate10K layout no folder has frames: an error, the DL3DV scene named with the layout to use.
    assert main(["prepare-data", str(root), "--depth-model", str(model)]) == 2
    err = capsys.readouterr().err
    assert f"warning: skipped {root / 'scene_a'}: no RGB frames (video.mp4 or frames); it has dl3dv frames: " \
           "use --layout dl3dv" in err
    assert "no clip folder has RGB frames of the realestate10k layout" in err
    assert not (root / "scene_a" / "depth.mp4").exists()

    assert main(["prepare-data", str(root), "--depth-model", str(model), "--layout", "dl3dv"]) == 0
    captured = capsys.readouterr()
    assert f"warning: skipped {root / 'notes'}: no RGB frames (images or images_2 or images_4 or images_8)" in (
        captured.err)
    assert "1 depth videos to write, 0 clips already have depth, 1 folders skipped" in captured.out
    depth = FrameSource(root / "scene_a" / "depth.mp4")
    assert len(depth) == 5 and depth.size == (96, 64)


def test_published_depth_video_layout(demo_dir, tmp_path):
    published = demo_dir / "realestate10k_clip"
    meta = json.loads((published / "meta_data.json").read_text())[0]
    depth = FrameSource(published / "depth_vitl_fp16.mp4")
    assert len(depth) == meta["frame"] and depth.size == (meta["width"], meta["height"])

    clip = tmp_path / meta["key"]
    clip.mkdir()
    shutil.copy(published / "meta_data.json", clip)
    shutil.copy(published / "depth_vitl_fp16.mp4", clip)
    shutil.copy(published / "depth_vitl_fp16.mp4", clip / "video.mp4")  # stands in for the RGB video
    rows = torch.load(demo_dir / "seaside.torch", weights_only=True)["cameras"][: meta["frame"]]
    torch.save({"cameras": rows}, clip / meta["path"])
    dataset = RealEstate10KDataset(tmp_path, height=320, width=480, num_frames=17, flip_probability=0.0)
    item = dataset.sample(0, np.random.default_rng(0))
    expected = CameraTrajectory.from_realestate10k(rows).relative().cover_crop((640, 360), (480, 320))
    np.testing.assert_allclose(item["camera"].intrinsics, expected.intrinsics, atol=1e-7)
    np.testing.assert_allclose(item["camera"].c2w, expected.c2w, atol=1e-6)
    assert item["depth"].shape == (3, 17, 320, 480)
    assert all(report.ok for report in check_dataset(dataset, num_frames=17, progress=False))


def test_align_disparities_undoes_per_frame_scale_and_shift():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 1.0, (12, 16))
    frames = [base, 3.0 * base - 0.5, 0.25 * base + 2.0]
    for aligned in align_disparities(frames):
        np.testing.assert_allclose(aligned, base, atol=1e-9)
    video = disparity_video(frames)
    assert len(video) == 3 and video[0].mode == "L"
    low, high = np.percentile(base, STRETCH_PERCENTILES)
    expected = np.clip((base - low) / (high - low) * 255, 0, 255).round()
    # Rounding may flip where the aligned values differ from the base by ~1e-12 around a half.
    np.testing.assert_allclose(np.asarray(video[2]), expected, atol=1)


def test_prepare_data_writes_depth_videos_and_captions(tmp_path):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    from diffsynth_dualcam.cli import main

    write_synthetic_dataset(tmp_path / "data", num_clips=2, num_frames=5)
    shutil.rmtree(tmp_path / "data" / "clip001" / "depth")
    torch.manual_seed(0)
    backbone = Dinov2Config(image_size=28, patch_size=14, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=32, out_indices=[1, 2], reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=16, neck_hidden_sizes=[8, 16],
                                 reassemble_factors=[2, 1], fusion_hidden_size=8, head_hidden_size=4)
    DepthAnythingForDepthEstimation(config).save_pretrained(tmp_path / "model")
    DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=True, ensure_multiple_of=14
                      ).save_pretrained(tmp_path / "model")
    (tmp_path / "captions.json").write_text(json.dumps({"clip001": "a new caption"}))

    assert main(["prepare-data", str(tmp_path / "data"), "--depth-model", str(tmp_path / "model"),
                 "--captions", str(tmp_path / "captions.json")]) == 0
    assert not (tmp_path / "data" / "clip000" / "depth.mp4").exists()  # already had depth frames
    depth = FrameSource(tmp_path / "data" / "clip001" / "depth.mp4")
    assert len(depth) == 5 and depth.size == (96, 64)
    captions = json.loads((tmp_path / "data" / "captions.json").read_text())
    assert captions["clip001"] == "a new caption" and captions["clip000"].startswith("synthetic scene 0")
    dataset = RealEstate10KDataset(tmp_path / "data", height=64, width=96, num_frames=5)
    assert all(report.ok for report in check_dataset(dataset, progress=False))
    assert main(["prepare-data", str(tmp_path / "missing")]) == 2
