"""Web app pieces without a browser: keyframes, upload checks, camera choice, handlers, the pipeline generator."""
import json
import math
import os
import struct
import zipfile

import gradio as gr
import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from diffsynth_dualcam.app.keyframes import keyframes_to_trajectory
from diffsynth_dualcam.app.ui import (
    AppSettings,
    PageHandlers,
    build_app,
    build_camera,
    keyframe_intrinsics,
    preview_camera,
)
from diffsynth_dualcam.app.uploads import (
    UploadError,
    checked_upload,
    load_image_upload,
    load_trajectory_upload,
    sanitise_name,
)
from diffsynth_dualcam.camera import CameraTrajectory

INTRINSICS = [0.5, 0.75, 0.5, 0.5]


@pytest.fixture
def upload_root(tmp_path, monkeypatch):
    """Gradio's upload folder, pointed at a temporary directory."""
    root = tmp_path / "uploads"
    root.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(root))
    return root


def _png(path, size=(96, 64), color=(200, 30, 30)):
    Image.new("RGB", size, color).save(path)
    return path


# ---- keyframes ------------------------------------------------------------------------------------------------


def test_keyframes_interpolate_linearly_and_hold_the_ends():
    rows = [[2, 0, 0, 0, 0, 0, 0], [6, 90, 0, 0, 1.0, -0.4, 2.0], ["", None, "", "", "", "", ""]]
    trajectory = keyframes_to_trajectory(rows, num_frames=9, intrinsics=INTRINSICS)
    assert len(trajectory) == 9
    np.testing.assert_allclose(trajectory.c2w[0], np.eye(4))  # held before the first keyframe
    np.testing.assert_allclose(trajectory.c2w[8], trajectory.c2w[6])  # held after the last one
    # Halfway (frame 4): half the yaw, half the way.
    np.testing.assert_allclose(trajectory.c2w[4, :3, 3], [0.5, -0.2, 1.0])
    half_yaw = Rotation.from_matrix(trajectory.c2w[4, :3, :3]).as_rotvec(degrees=True)
    np.testing.assert_allclose(half_yaw, [0, 45, 0], atol=1e-9)
    # Yaw 90 turns the viewing axis (third column) to +x: to the right.
    np.testing.assert_allclose(trajectory.c2w[6, :3, 2], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(trajectory.intrinsics, np.tile(INTRINSICS, (9, 1)))


def test_a_keyframe_turn_past_180_degrees_keeps_its_direction():
    trajectory = keyframes_to_trajectory([[0, 0, 0, 0, 0, 0, 0], [3, 270, 0, 0, 0, 0, 0]], num_frames=4,
                                         intrinsics=INTRINSICS)
    # Yaw 0, 90, 180, 270: the viewing axis turns right through +x, then back, then -x.
    np.testing.assert_allclose(trajectory.c2w[:, :3, 2], [[0, 0, 1], [1, 0, 0], [0, 0, -1], [-1, 0, 0]], atol=1e-12)


def test_keyframe_pitch_looks_up_and_roll_is_applied_last():
    trajectory = keyframes_to_trajectory([[0, 0, 30, 0, 0, 0, 0]], num_frames=1, intrinsics=INTRINSICS)
    forward = trajectory.c2w[0, :3, 2]
    np.testing.assert_allclose(forward, [0, -math.sin(math.radians(30)), math.cos(math.radians(30))], atol=1e-12)
    rolled = keyframes_to_trajectory([[0, 90, 0, 90, 0, 0, 0]], num_frames=1, intrinsics=INTRINSICS).c2w[0]
    # Yaw 90 then roll 90 about the new viewing axis (+x): the camera's right axis points down (+y).
    np.testing.assert_allclose(rolled[:3, 0], [0, 1, 0], atol=1e-12)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "at least one row"),
        ([[0, "left", 0, 0, 0, 0, 0]], "row 1: yaw must be a number"),
        ([[0, 0, 0, 0, 0, 0, 0], [9, 0, 0, 0, 0, 0, 0]], "row 2: frame must be a whole number in 0..8"),
        ([[1.5, 0, 0, 0, 0, 0, 0]], "frame must be a whole number"),
        ([[0, 0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0]], "each frame may appear once"),
        ([[0, 0, 0, 0, 0, 0]], "expected 7 values"),
        ([[0, "inf", 0, 0, 0, 0, 0]], "must be finite"),
    ],
)
def test_bad_keyframes_are_named(rows, message):
    with pytest.raises(ValueError, match=message):
        keyframes_to_trajectory(rows, num_frames=9, intrinsics=INTRINSICS)


def test_keyframe_intrinsics_from_field_of_view():
    fx, fy, cx, cy = keyframe_intrinsics(90.0, width=480, height=320)
    assert (fx, cx, cy) == (pytest.approx(0.5), 0.5, 0.5)
    assert fy == pytest.approx(0.75)  # the same pixel focal length, normalised by the height
    with pytest.raises(ValueError, match="field of view"):
        keyframe_intrinsics(180.0, width=480, height=320)


# ---- uploads --------------------------------------------------------------------------------------------------


def test_sanitise_name_keeps_only_a_safe_base_name():
    assert sanitise_name("../../etc/passwd") == "passwd"
    assert sanitise_name("my photo (1).PNG") == "my_photo_1_.PNG"
    assert sanitise_name("..") == "upload"


@pytest.mark.parametrize("error", [SyntaxError("broken PNG file"), struct.error("bad EXIF value")])
def test_image_data_that_pillow_cannot_decode_is_an_upload_error(upload_root, monkeypatch, error):
    """Pillow reports damaged chunks and EXIF data with SyntaxError and struct.error besides OSError."""
    from PIL import ImageOps

    def damaged(image):
        raise error

    monkeypatch.setattr(ImageOps, "exif_transpose", damaged)
    with pytest.raises(UploadError, match="first frame: the image data is damaged or cut short"):
        load_image_upload(_png(upload_root / "ok.png"), "first frame")


def test_uploads_outside_the_upload_folder_are_refused(tmp_path, upload_root):
    outside = _png(tmp_path / "outside.png")
    with pytest.raises(UploadError, match="only files uploaded through this page"):
        load_image_upload(outside, "first frame")
    link = upload_root / "link.png"
    os.symlink(outside, link)
    with pytest.raises(UploadError, match="only files uploaded through this page"):
        load_image_upload(link, "first frame")
    with pytest.raises(UploadError, match="missing"):
        checked_upload(upload_root / "absent.png", "first frame", max_bytes=10)


def test_image_uploads_are_checked_for_type_size_and_dimensions(upload_root):
    image = load_image_upload(_png(upload_root / "ok.png"), "first frame")
    assert image.size == (96, 64) and image.getpixel((0, 0)) == (200, 30, 30)
    text = upload_root / "notes.png"
    text.write_text("not an image")
    with pytest.raises(UploadError, match="first frame: not a readable image"):
        load_image_upload(text, "first frame")
    with pytest.raises(UploadError, match="image is 32x64; each side must be between 64 and 4096"):
        load_image_upload(_png(upload_root / "small.png", size=(32, 64)), "first frame")
    gif = upload_root / "anim.gif"
    Image.new("P", (80, 80)).save(gif)
    with pytest.raises(UploadError, match="format GIF is not accepted"):
        load_image_upload(gif, "depth map")
    Image.fromarray(np.zeros((64, 64), np.uint16)).save(upload_root / "depth16.png")
    with pytest.raises(UploadError, match="depth map must be an 8-bit image"):
        load_image_upload(upload_root / "depth16.png", "depth map")
    empty = upload_root / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(UploadError, match="empty"):
        load_image_upload(empty, "first frame")
    noise = np.random.default_rng(0).integers(0, 256, (700, 800, 3), dtype=np.uint8)
    Image.fromarray(noise).save(upload_root / "big.png")
    with pytest.raises(UploadError, match=r"first frame: file is 1\.\d MiB, the limit is 1\.0 MiB"):
        checked_upload(upload_root / "big.png", "first frame", max_bytes=2**20)


def test_image_uploads_are_turned_upright_by_exif(upload_root):
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.new("RGB", (100, 64), (0, 90, 200)).save(upload_root / "phone.jpg", exif=exif)
    assert load_image_upload(upload_root / "phone.jpg", "first frame").size == (64, 100)


def test_trajectory_uploads_in_each_supported_shape(upload_root):
    expected = CameraTrajectory.preset("pan_right", num_frames=5)
    json_path = expected.save(upload_root / "camera.json")
    np.testing.assert_allclose(load_trajectory_upload([json_path]).c2w, expected.c2w, atol=1e-9)

    colmap = upload_root / "colmap"
    expected.save(colmap, format="colmap")
    loaded = load_trajectory_upload([colmap / "cameras.txt", colmap / "images.txt"])
    np.testing.assert_allclose(loaded.relative().c2w, expected.relative().c2w, atol=1e-6)

    with pytest.raises(UploadError, match="missing images.txt"):
        load_trajectory_upload([colmap / "cameras.txt", colmap / "points3D.txt"])
    (upload_root / "evil.sh").write_text("rm -rf /")
    with pytest.raises(UploadError, match="unknown type"):
        load_trajectory_upload([upload_root / "evil.sh"])
    (upload_root / "broken.json").write_text("{not json")
    with pytest.raises(UploadError, match="broken.json could not be read") as refused:
        load_trajectory_upload([upload_root / "broken.json"])
    assert str(upload_root) not in str(refused.value)  # no server path in the message


def _nerf_document(with_size: bool) -> dict:
    frames = [{"file_path": "frame.png", "transform_matrix": np.eye(4).tolist()} for _ in range(3)]
    return {"camera_angle_x": 1.2, "frames": frames, **({"w": 96, "h": 64} if with_size else {})}


def test_uploaded_transforms_json_must_give_its_image_size(upload_root, monkeypatch):
    from diffsynth_dualcam.camera import formats

    opened = []
    monkeypatch.setattr(formats, "_image_file_size", lambda *args: opened.append(args) or (96, 64))
    _png(upload_root / "frame.png")  # the file the frames name exists: only the check keeps it from being read
    transforms = upload_root / "transforms.json"
    transforms.write_text(json.dumps(_nerf_document(with_size=False)))
    with pytest.raises(UploadError, match=r'transforms.json could not be read: frame 0 has no "w" and "h": an '
                                          "uploaded transforms.json must give the image width and height") as refused:
        load_trajectory_upload([transforms])
    assert opened == [] and str(upload_root) not in str(refused.value)
    # The page shows the same message beside the camera plot, and generation refuses it.
    plot, message = preview_camera("Trajectory file", "orbit_left", 1.0, [str(transforms)], None, 90.0, 9, 96, 64)
    assert plot is None and "must give the image width and height" in message
    # Absolute or escaping paths are not reached either.
    for file_path in ("/etc/hostname", "../../x.png"):
        document = _nerf_document(with_size=False)
        document["frames"][1]["file_path"] = file_path
        transforms.write_text(json.dumps(document))
        with pytest.raises(UploadError, match="frame 0 has no"):
            load_trajectory_upload([transforms])
    assert opened == []

    transforms.write_text(json.dumps(_nerf_document(with_size=True)))
    trajectory = load_trajectory_upload([transforms])
    assert trajectory.source_size == (96, 64) and len(trajectory) == 3 and opened == []
    np.testing.assert_allclose(trajectory.intrinsics[0, 0], 0.5 / math.tan(0.6))


def _colmap_models(folder):
    """The pan_right preset as a COLMAP text model and the same model written binary by pycolmap."""
    pycolmap = pytest.importorskip("pycolmap")
    preset = CameraTrajectory.preset("pan_right", num_frames=5)
    expected = CameraTrajectory(preset.c2w, preset.intrinsics, (96, 64))
    expected.save(folder / "text", format="colmap")
    (folder / "binary").mkdir()
    pycolmap.Reconstruction(str(folder / "text")).write_binary(str(folder / "binary"))
    return expected


def _same_cameras(loaded, expected):
    np.testing.assert_allclose(loaded.relative().c2w, expected.relative().c2w, atol=1e-6)
    np.testing.assert_allclose(loaded.intrinsics, expected.intrinsics, atol=1e-9)
    assert loaded.source_size == (96, 64)


def test_binary_colmap_model_uploads(upload_root):
    expected = _colmap_models(upload_root)
    binary = upload_root / "binary"
    assert {"cameras.bin", "images.bin", "points3D.bin"} <= {path.name for path in binary.iterdir()}
    _same_cameras(load_trajectory_upload(sorted(binary.iterdir())), expected)
    # An older model without rigs/frames, and one without its (possibly large) points3D.bin.
    _same_cameras(load_trajectory_upload([binary / "cameras.bin", binary / "images.bin", binary / "points3D.bin"]),
                  expected)
    _same_cameras(load_trajectory_upload([binary / "images.bin", binary / "cameras.bin"]), expected)

    with pytest.raises(UploadError, match="the files mix .txt and .bin"):
        load_trajectory_upload([binary / "cameras.bin", upload_root / "text" / "images.txt"])
    with pytest.raises(UploadError, match="missing images.bin"):
        load_trajectory_upload([binary / "cameras.bin"])
    with pytest.raises(UploadError, match="cameras.txt given more than once"):
        load_trajectory_upload([upload_root / "text" / "cameras.txt", upload_root / "text" / "images.txt",
                                _copy_to(upload_root / "text" / "cameras.txt", upload_root / "again")])
    (upload_root / "weights.bin").write_bytes(b"\0" * 16)
    with pytest.raises(UploadError, match="unexpected weights.bin"):
        load_trajectory_upload([upload_root / "weights.bin"])
    (upload_root / "broken").mkdir()
    for name in ("cameras.bin", "images.bin"):
        (upload_root / "broken" / name).write_bytes(b"\xff" * 40)
    with pytest.raises(UploadError, match="the COLMAP model could not be read") as refused:
        load_trajectory_upload(sorted((upload_root / "broken").iterdir()))
    assert "dualcam-colmap-" not in str(refused.value)  # the private folder's path is not shown


def _copy_to(path, folder):
    folder.mkdir(exist_ok=True)
    (folder / path.name).write_bytes(path.read_bytes())
    return folder / path.name


def test_zipped_colmap_model_uploads_by_base_name_only(tmp_path, upload_root, monkeypatch):
    expected = _colmap_models(tmp_path)
    archive = upload_root / "scene.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted((tmp_path / "binary").iterdir()):
            zipped.write(path, f"project/sparse/0/{path.name}")
        zipped.writestr("project/images/frame_00000.png", b"not extracted")
        zipped.writestr("../../outside/evil.txt", b"not extracted")
    import diffsynth_dualcam.app.uploads as uploads

    private = []
    read_folder = uploads._read_colmap_folder
    monkeypatch.setattr(uploads, "_read_colmap_folder",
                        lambda folder: private.append((folder, sorted(os.listdir(folder)))) or read_folder(folder))
    _same_cameras(load_trajectory_upload([archive]), expected)
    # Only the model files were extracted, each to its fixed name in one private folder, which is gone afterwards.
    folder, names = private[0]
    assert names == sorted(path.name for path in (tmp_path / "binary").iterdir())
    assert folder.name.startswith("dualcam-colmap-") and not folder.exists()
    assert not (tmp_path / "outside").exists() and not (upload_root.parent / "outside").exists()

    # The scene.zip the app offers for download (text model under sparse/0/) reads back as well.
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted((tmp_path / "text").iterdir()):
            zipped.write(path, f"sparse/0/{path.name}")
        zipped.writestr("points.ply", b"ply")
    _same_cameras(load_trajectory_upload([archive]), expected)


def _zip(path, members, compression=zipfile.ZIP_DEFLATED, encrypted=False):
    with zipfile.ZipFile(path, "w", compression=compression) as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    if encrypted:  # zipfile cannot encrypt: set the "encrypted" flag bit of every local and central header
        data = bytearray(path.read_bytes())
        for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            start = data.find(signature)
            while start >= 0:
                data[start + flag_offset] |= 0x1
                start = data.find(signature, start + 4)
        path.write_bytes(bytes(data))
    return path


def test_bad_zip_uploads_are_refused_with_a_reason(tmp_path, upload_root, monkeypatch):
    import diffsynth_dualcam.app.uploads as uploads

    _colmap_models(tmp_path)
    text = {path.name: path.read_bytes() for path in (tmp_path / "text").iterdir()}
    binary = {path.name: path.read_bytes() for path in (tmp_path / "binary").iterdir()}
    cases = [
        ({f"0/{name}": data for name, data in text.items()} | {f"1/{name}": data for name, data in text.items()},
         {}, "more than one COLMAP model"),
        ({"cameras.txt": text["cameras.txt"], "images.bin": binary["images.bin"]}, {}, "the files mix .txt and .bin"),
        ({"readme.md": b"hello"}, {}, "holds no COLMAP model files"),
        ({"cameras.txt": text["cameras.txt"]}, {}, "missing images.txt"),
        (text, {"encrypted": True}, "cameras.txt is encrypted|images.txt is encrypted"),
        (text, {"compression": zipfile.ZIP_BZIP2}, "uses a compression other than deflate or none"),
    ]
    for members, options, message in cases:
        with pytest.raises(UploadError, match=message):
            load_trajectory_upload([_zip(upload_root / "model.zip", members, **options)])
    (upload_root / "fake.zip").write_bytes(b"PK\x03\x04 this is not an archive")
    with pytest.raises(UploadError, match="the .zip is damaged or not a zip archive"):
        load_trajectory_upload([upload_root / "fake.zip"])
    # The unpacked size is checked from the archive before anything is extracted (no zip bombs).
    bomb = _zip(upload_root / "bomb.zip", {**text, "images.txt": b"#" * 4096})
    monkeypatch.setattr(uploads, "MAX_COLMAP_BYTES", 2048)
    with pytest.raises(UploadError, match=r"images.txt is 4.0 KiB unpacked, the limit is 2.0 KiB"):
        load_trajectory_upload([bomb])


# ---- the page ---------------------------------------------------------------------------------------------------


def test_build_camera_from_each_source(upload_root):
    preset = build_camera("Preset", "dolly_in", 2.0, None, None, 90.0, 9, 96, 64)
    np.testing.assert_allclose(preset.c2w, CameraTrajectory.preset("dolly_in", num_frames=9, speed=2.0).c2w)
    rows = [[0, 0, 0, 0, 0, 0, 0], [8, 0, 0, 0, 0, 0, 1]]
    keyframed = build_camera("Keyframes", "dolly_in", 1.0, None, rows, 90.0, 9, 96, 64)
    assert keyframed.source_size == (96, 64)
    np.testing.assert_allclose(keyframed.intrinsics[0], [0.5, 0.75, 0.5, 0.5])
    with pytest.raises(UploadError, match="upload a trajectory first"):
        build_camera("Trajectory file", "dolly_in", 1.0, [], None, 90.0, 9, 96, 64)


def test_uploaded_path_is_followed_frame_by_frame_unless_resampled(upload_root):
    recorded = CameraTrajectory.preset("orbit_left", num_frames=17)
    upload = str(recorded.save(upload_root / "orbit.json"))
    followed = build_camera("Trajectory file", "dolly_in", 1.0, [upload], None, 90.0, 9, 96, 64)
    np.testing.assert_allclose(followed.c2w, recorded.c2w[:9], atol=1e-9)
    stretched = build_camera("Trajectory file", "dolly_in", 1.0, [upload], None, 90.0, 9, 96, 64, True)
    np.testing.assert_allclose(stretched.c2w, recorded.c2w[::2], atol=1e-9)  # 17 cameras over 9 frames
    with pytest.raises(ValueError, match="has 17 frames, num_frames=21 are needed: .* at most 17 frames"):
        build_camera("Trajectory file", "dolly_in", 1.0, [upload], None, 90.0, 21, 96, 64)
    plot, message = preview_camera("Trajectory file", "dolly_in", 1.0, [upload], None, 90.0, 21, 96, 64, False)
    assert plot is None and "resample_camera" in message
    assert len(build_camera("Trajectory file", "dolly_in", 1.0, [upload], None, 90.0, 21, 96, 64, True)) == 21


class RecordingGenerate:
    """Stands in for the pipeline: records the request, writes placeholder files, drives the progress bar."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.requests = []

    def __call__(self, request, progress_bar_cmd):
        from diffsynth_dualcam.app.generation import GenerationResult

        self.requests.append(request)
        self.steps = list(progress_bar_cmd(range(3)))
        files = {name: self.run_dir / name for name in ("video.mp4", "depth.mp4", "side.mp4", "depth.png")}
        for path in files.values():
            path.write_bytes(b"placeholder")
        return GenerationResult(
            run_dir=self.run_dir, input_depth=files["depth.png"], video=files["video.mp4"],
            depth_video=files["depth.mp4"], side_by_side=files["side.mp4"], point_cloud=None,
            downloads=[files["video.mp4"]], notes=["No point cloud: flat depth"],
        )


def test_handlers_validate_then_generate(tmp_path, upload_root):
    generate = RecordingGenerate(tmp_path)
    handlers = PageHandlers(generate)
    image = _png(upload_root / "frame.png")
    outputs = handlers.run(image, None, "a red wall", "", "Preset", "pan_left", 1.0, None, None, 90.0, 96, 64, 9, 3,
                           6.0, -1)
    request = generate.requests[0]
    assert request.seed is None and request.depth is None and request.prompt == "a red wall"
    assert (request.height, request.width, request.num_frames, len(request.camera)) == (64, 96, 9, 9)
    assert generate.steps == [0, 1, 2]
    assert outputs[0] == str(tmp_path / "video.mp4") and outputs[3] is None and outputs[7] is None
    assert "No point cloud: flat depth" in outputs[5]

    bad = upload_root / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(gr.Error, match="depth map: not a readable image"):
        handlers.run(image, bad, "", "", "Preset", "pan_left", 1.0, None, None, 90.0, 96, 64, 9, 3, 6.0, 1)
    with pytest.raises(gr.Error, match="first frame: upload an image"):
        handlers.run(None, None, "", "", "Preset", "pan_left", 1.0, None, None, 90.0, 96, 64, 9, 3, 6.0, 1)
    with pytest.raises(gr.Error, match="keyframe row 1"):
        handlers.run(image, None, "", "", "Keyframes", "pan_left", 1.0, None, [[0, "x", 0, 0, 0, 0, 0]], 90.0, 96,
                     64, 9, 3, 6.0, 1)
    assert len(generate.requests) == 1


def test_preview_plots_the_camera_or_says_why_not(tmp_path, upload_root):
    plot, message = preview_camera("Preset", "orbit_left", 1.0, None, None, 90.0, 9, 96, 64)
    assert plot.size[0] > 100 and "9 frames" in message
    plot, message = preview_camera("Keyframes", "orbit_left", 1.0, None, [[99, 0, 0, 0, 0, 0, 0]], 90.0, 9, 96, 64)
    assert plot is None and "frame must be a whole number in 0..8" in message
    plot, message = preview_camera("Keyframes", "orbit_left", 1.0, None, [[0, 0, 0, 0, 0, 0, 0], [8, 0, 0, 0, 1e308, 0,
                                                                                                  0]], 90.0, 9, 96, 64)
    assert plot is None and "farther than 1e+06 scene units" in message
    handlers = PageHandlers(RecordingGenerate(tmp_path))
    with pytest.raises(gr.Error, match="first frame: not a readable image"):
        (upload_root / "x.png").write_text("text")
        handlers.check_image(str(upload_root / "x.png"), "first frame")


def test_scene_preview_follows_the_camera_and_the_uploads(tmp_path, upload_root):
    import trimesh

    from diffsynth_dualcam.app.scene import PreviewFolder
    from diffsynth_dualcam.app.ui import preview_scene
    from diffsynth_dualcam.export.export3d import VIEWER_AXES
    from diffsynth_dualcam.export.preview import lift_first_frame

    folder = PreviewFolder(tmp_path / "scenes")
    image = _png(upload_root / "frame.png", size=(240, 160))
    depth = upload_root / "depth.png"
    Image.fromarray(np.tile(np.linspace(20, 240, 120), (80, 1)).astype(np.uint8)).save(depth)
    scene_path, message = preview_scene(folder, image, str(depth), "Preset", "dolly_in", 2.0, None, None, 90.0, 9, 48,
                                        32)
    assert "moves" in message and "median scene depth over 9 frames" in message
    scene = trimesh.load(scene_path, file_type="glb")
    # The preset as the generation prepares it (9 frames, cover-cropped to 48x32), from the first camera's axes.
    camera = CameraTrajectory.preset("dolly_in", num_frames=9, speed=2.0).cover_crop(target_size=(48, 32))
    for index in range(9):
        transform, _ = scene.graph[f"frustum_{index:05d}"]
        np.testing.assert_allclose(transform[:3, 3], camera.centres[index] * VIEWER_AXES, atol=1e-6)
    with Image.open(image) as picture, Image.open(depth) as depth_map:
        expected = lift_first_frame(picture.resize((48, 32), Image.Resampling.BICUBIC),
                                    depth_map.resize((48, 32), Image.Resampling.BICUBIC), camera.intrinsics[0])
    np.testing.assert_allclose(scene.geometry["points"].vertices, expected.points * VIEWER_AXES, atol=1e-6)

    # A speed change moves the cameras; no depth map: the cameras only, and what to upload.
    faster, _ = preview_scene(folder, image, None, "Preset", "dolly_in", 3.0, None, None, 90.0, 9, 48, 32)
    transform, _ = trimesh.load(faster, file_type="glb").graph["frustum_00008"]
    np.testing.assert_allclose(transform[2, 3], -0.08 * 3.0, atol=1e-6)  # 8 steps of 0.01 at speed 3, toward -z
    assert faster != scene_path
    _, message = preview_scene(folder, image, None, "Preset", "dolly_in", 3.0, None, None, 90.0, 9, 48, 32)
    assert "Upload the first frame and its depth map" in message
    # An unusable camera or upload: no scene, the reason.
    assert preview_scene(folder, image, None, "Keyframes", "", 1.0, None, [[99, 0, 0, 0, 0, 0, 0]], 90.0, 9, 48,
                         32) == (None, "")
    (upload_root / "bad.png").write_text("text")
    scene_path, message = preview_scene(folder, str(upload_root / "bad.png"), None, "Preset", "dolly_in", 1.0, None,
                                        None, 90.0, 9, 48, 32)
    assert scene_path is not None and "The first frame upload is not usable" in message


def test_preview_folder_removes_scenes_older_than_an_hour(tmp_path):
    from diffsynth_dualcam.app.scene import PREVIEW_MAX_AGE_S, PreviewFolder

    folder = PreviewFolder(tmp_path)
    old, recent = tmp_path / "old.glb", tmp_path / "recent.glb"
    for path in (old, recent):
        path.write_bytes(b"glTF")
    past = os.path.getmtime(old) - PREVIEW_MAX_AGE_S - 1
    os.utime(old, (past, past))
    fresh = folder.new_path()
    assert fresh.parent == tmp_path and fresh.suffix == ".glb" and not fresh.exists()
    assert not old.exists() and recent.exists()
    assert folder.new_path() != fresh


def test_preview_says_why_when_the_plot_fails(monkeypatch):
    def failing_plot(self, path, title=None):
        raise OverflowError()  # matplotlib's error for axes it cannot draw carries no message

    monkeypatch.setattr(CameraTrajectory, "plot", failing_plot)
    plot, message = preview_camera("Preset", "orbit_left", 1.0, None, None, 90.0, 9, 96, 64)
    assert plot is None and message == "**Camera:** cannot plot this path (OverflowError)"


def test_page_builds_with_banner(tmp_path):
    page = build_app(RecordingGenerate(tmp_path), AppSettings(banner="Tiny random model"))
    assert isinstance(page, gr.Blocks)
    assert any(getattr(block, "value", None) == "⚠️ Tiny random model" for block in page.blocks.values())


# ---- the generator on the tiny pipeline ---------------------------------------------------------------------------


def test_pipeline_generator_with_automatic_depth_writes_videos_and_point_cloud(tmp_path):
    from diffsynth_dualcam.app.generation import GenerationRequest, PipelineGenerator
    from diffsynth_dualcam.export.export3d import read_ply
    from diffsynth_dualcam.models.depth_estimator import DepthEstimator
    from diffsynth_dualcam.pipeline.inputs import prepare_image
    from diffsynth_dualcam.pipeline.tiny import save_tiny_depth_anything, tiny_pipeline

    depth_model = tmp_path / "depth_model"
    save_tiny_depth_anything(depth_model)
    generator = PipelineGenerator(tiny_pipeline(), tmp_path / "runs", depth_model=str(depth_model), tiled=False)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 120, 3), dtype=np.uint8))
    request = GenerationRequest(
        image=image, depth=None, prompt="a room", negative_prompt="", camera=CameraTrajectory.preset("pan_left", 5),
        height=32, width=48, num_frames=5, num_inference_steps=2, cfg_scale=6.0, seed=3,
    )
    seen_steps = []
    result = generator(request, lambda steps: seen_steps.extend(steps) or steps)
    assert len(seen_steps) == 2
    assert result.run_dir.parent == tmp_path / "runs"
    assert "estimated automatically" in result.notes[0]
    assert json.loads((result.run_dir / "params.json").read_text())["depth_estimated"] is True
    # The conditioning depth is the tiny model's estimate of the first frame at the output size.
    estimate = DepthEstimator.from_pretrained(str(depth_model))(prepare_image(image, width=48, height=32))
    with Image.open(result.input_depth) as depth:
        assert depth.mode == "L" and depth.size == (48, 32)
        np.testing.assert_array_equal(np.asarray(depth), np.asarray(estimate))
    for path in (result.video, result.depth_video, result.side_by_side):
        assert path.stat().st_size > 0
    assert {path.name for path in result.downloads} >= {"video.mp4", "depth.mp4", "points.ply", "scene.zip"}
    # The viewer's copy is the exported cloud turned to y-up axes (y and z flipped).
    exported, shown = read_ply(result.run_dir / "points.ply"), read_ply(result.point_cloud)
    np.testing.assert_allclose(shown.points, exported.points * [1, -1, -1])
    np.testing.assert_array_equal(shown.colors, exported.colors)
    with zipfile.ZipFile(result.run_dir / "scene.zip") as archive:
        assert {"points.ply", "sparse/0/cameras.txt", "sparse/0/images.txt", "sparse/0/points3D.txt",
                "images/frame_00004.png"} <= set(archive.namelist())
    # The 3D view's scene: the same cloud, with the generated cameras' frustums at their centres.
    import trimesh

    scene = trimesh.load(result.scene, file_type="glb")
    np.testing.assert_allclose(scene.geometry["points"].vertices, shown.points, atol=1e-6)
    cameras = CameraTrajectory.load(result.run_dir / "trajectory.json")
    for index in range(5):
        transform, _ = scene.graph[f"frustum_{index:05d}"]
        np.testing.assert_allclose(transform[:3, 3], cameras.centres[index] * [1, -1, -1], atol=1e-6)
    assert result.scene in result.downloads
    # docs/app.md names every file of the run folder besides those of DualCamCtrlOutput.save.
    from pathlib import Path

    from diffsynth_dualcam.pipeline.output import OUTPUT_FILES

    docs = (Path(__file__).resolve().parents[1] / "docs" / "app.md").read_text()
    listing = docs[docs.index("Every generation writes its folder"):].split("\n\n")[0]
    for path in result.run_dir.iterdir():
        if path.name not in OUTPUT_FILES:
            assert f"`{path.name}{'/' if path.is_dir() else ''}" in listing, path.name


def test_missing_depth_model_asks_for_a_depth_map(tmp_path):
    from types import SimpleNamespace

    from diffsynth_dualcam.app.generation import PipelineGenerator

    pipe = SimpleNamespace(device="cpu", depth_estimator=None)
    generator = PipelineGenerator(pipe, tmp_path, depth_model=str(tmp_path / "absent"))
    request = SimpleNamespace(depth=None)
    with pytest.raises(ValueError, match="no depth map was uploaded and the depth model .* could not be loaded"):
        generator(request, progress_bar_cmd=iter)


def test_app_command_falls_back_to_the_tiny_model_with_a_banner(tmp_path):
    from diffsynth_dualcam.cli import build_parser
    from diffsynth_dualcam.cli.app import load_generator
    from diffsynth_dualcam.pipeline.tiny import tiny_depth_estimator

    args = build_parser().parse_args(["app", "--checkpoint-dir", str(tmp_path), "--output-dir", str(tmp_path / "o"),
                                      "--device", "cpu"])
    generator, settings = load_generator(args)
    assert f"no DualCamCtrl weights in {tmp_path}" in settings.banner
    assert (settings.height, settings.width, settings.num_frames) == (64, 96, 9)
    assert generator.output_root == tmp_path / "o" and generator.pipe.dit is not None
    # No --depth-model: the tiny pipeline estimates depth with the tiny random Depth Anything, offline.
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), np.uint8))
    expected = tiny_depth_estimator()(image)
    np.testing.assert_array_equal(np.asarray(generator.pipe.depth_estimator(image)), np.asarray(expected))

    args = build_parser().parse_args(["app", "--checkpoint-dir", str(tmp_path), "--output-dir", str(tmp_path / "o"),
                                      "--device", "cpu", "--depth-model", str(tmp_path / "depth")])
    generator, _ = load_generator(args)
    assert generator.pipe.depth_estimator is None and generator.depth_model == str(tmp_path / "depth")


def test_app_command_prints_the_attention_backend_and_compiles_on_request(tmp_path, capsys):
    from diffsynth_dualcam.cli import build_parser
    from diffsynth_dualcam.cli.app import load_generator
    from diffsynth_dualcam.parallel.backend import attention_backend

    def compiled_blocks(pipe):
        return [getattr(block, "_compiled_call_impl", None) is not None
                for block in pipe.dit.modules() if type(block).__name__ == "DiTBlock"]

    base = ["app", "--tiny", "--output-dir", str(tmp_path), "--device", "cpu"]
    generator, _ = load_generator(build_parser().parse_args(base))
    summary = capsys.readouterr().err
    assert f"attention: {attention_backend()}" in summary
    assert "cpu allocator: keeps freed memory" in summary  # a CPU process reuses freed activations
    assert not any(compiled_blocks(generator.pipe))
    # torch.compile is lazy: wrapping the blocks costs nothing until the first generation runs them.
    generator, _ = load_generator(build_parser().parse_args([*base, "--compile"]))
    blocks = compiled_blocks(generator.pipe)
    assert blocks and all(blocks)
    assert "DiT on cpu float32; attention: " in capsys.readouterr().err


def test_pipeline_generator_chains_requests_longer_than_its_clip_length(tmp_path):
    from diffsynth_dualcam.app.generation import GenerationRequest, PipelineGenerator
    from diffsynth_dualcam.pipeline.tiny import tiny_pipeline

    generator = PipelineGenerator(tiny_pipeline(), tmp_path / "runs", tiled=False, chunk_frames=5)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8))
    depth = Image.fromarray(np.tile(np.linspace(0, 255, 48), (32, 1)).astype(np.uint8))
    request = GenerationRequest(
        image=image, depth=depth, prompt="a room", negative_prompt="", camera=CameraTrajectory.preset("pan_left", 9),
        height=32, width=48, num_frames=9, num_inference_steps=1, cfg_scale=6.0, seed=3,
    )
    seen_steps = []
    result = generator(request, lambda steps: seen_steps.extend(steps) or steps)
    assert len(seen_steps) == 2  # one progress iterable over both clips' steps
    params = json.loads((result.run_dir / "params.json").read_text())
    assert [clip["frames"] for clip in params["clips"]] == [[0, 4], [4, 8]]
    assert {path.name for path in result.downloads} >= {"video.mp4", "world.ply", "points.ply"}


def test_app_out_option_keeps_output_dir_as_a_hidden_alias(tmp_path, capsys):
    from pathlib import Path

    from diffsynth_dualcam.cli import build_parser

    parser = build_parser(["app"])
    assert parser.parse_args(["app", "--out", str(tmp_path / "a")]).out == tmp_path / "a"
    assert parser.parse_args(["app", "--output-dir", str(tmp_path / "b")]).out == tmp_path / "b"
    assert parser.parse_args(["app"]).out == Path("outputs") / "app"
    with pytest.raises(SystemExit):
        parser.parse_args(["app", "--help"])
    help_text = capsys.readouterr().out
    assert "--out OUT" in help_text and "--output-dir" not in help_text
