"""Trajectory files: round trips through every writer, each reader on hand-written files, fuzzed parsers."""
import json
import math
import warnings

import numpy as np
import pycolmap
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy.spatial.transform import Rotation

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.camera.formats import detect_format
from diffsynth_dualcam.camera.trajectory import REALESTATE10K_FRAME_SIZE

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def sample_trajectory() -> CameraTrajectory:
    """Turning, moving and zooming, so every field changes per frame."""
    moves = CameraTrajectory.preset("orbit_left", num_frames=7, degrees_per_frame=5.0)
    moves = moves.compose(CameraTrajectory.preset("zoom_in", num_frames=7, focal_change_per_frame=0.05))
    moves = moves.compose(CameraTrajectory.preset("roll_cw", num_frames=7, degrees_per_frame=3.0))
    world = np.eye(4)
    world[:3, 3] = [3.0, -1.0, 0.5]
    return CameraTrajectory(world @ moves.c2w, moves.intrinsics, (1280, 720))


@pytest.mark.parametrize(
    ("name", "format", "atol"),
    [
        ("trajectory.json", "json", 1e-15),
        ("trajectory.txt", "realestate10k", 1e-12),
        ("trajectory.torch", "torch", 1e-5),  # float32 rows, as in the demo files
        ("model", "colmap", 1e-12),
        ("transforms.json", "nerf", 1e-15),
    ],
)
def test_round_trip_through_every_writer(tmp_path, name, format, atol):
    trajectory = sample_trajectory()
    path = trajectory.save(tmp_path / name)
    assert detect_format(path) == format
    restored = CameraTrajectory.load(path)
    np.testing.assert_allclose(restored.c2w, trajectory.c2w, atol=atol)
    np.testing.assert_allclose(restored.intrinsics, trajectory.intrinsics, atol=atol)
    assert restored.source_size == trajectory.source_size == (1280, 720)
    assert not list(tmp_path.rglob("*.tmp")), "temporary files left behind"


def test_colmap_binary_and_image_order(tmp_path):
    trajectory = sample_trajectory()
    trajectory.save(tmp_path / "text", format="colmap")
    binary = tmp_path / "binary"
    binary.mkdir()
    pycolmap.Reconstruction(tmp_path / "text").write_binary(binary)
    restored = CameraTrajectory.load(binary)
    np.testing.assert_allclose(restored.c2w, trajectory.c2w, atol=1e-12)
    np.testing.assert_allclose(restored.intrinsics, trajectory.intrinsics, atol=1e-12)


def test_colmap_hand_written_text_model(tmp_path):
    # Images listed out of order and with different cameras; no points3D.txt; an OPENCV camera with distortion.
    (tmp_path / "cameras.txt").write_text("# cameras\n1 PINHOLE 640 360 320 330 300 180\n"
                                          "2 OPENCV 100 50 60 61 50 24 0.1 0.01 0 0\n")
    (tmp_path / "images.txt").write_text("1 1 0 0 0 0.1 0.2 0.3 1 b.png\n\n2 1 0 0 0 0 0 1 2 a.png\n\n")
    with pytest.warns(UserWarning, match="OPENCV reduced to pinhole"):
        trajectory = CameraTrajectory.load(tmp_path)
    np.testing.assert_allclose(trajectory.centres, [[0, 0, -1], [-0.1, -0.2, -0.3]])  # a.png first; centre = -t
    np.testing.assert_allclose(trajectory.intrinsics, [[0.6, 61 / 50, 0.5, 0.48], [0.5, 330 / 360, 300 / 640, 0.5]])
    assert trajectory.source_size is None  # the cameras differ in size


def test_colmap_text_model_errors(tmp_path):
    (tmp_path / "cameras.txt").write_text("1 PINHOLE 64 48 50 50 32 24\n")
    (tmp_path / "images.txt").write_text("1 1 0 0 0 0 0 0 1 a.png\n\n2 0 0 0 0 1 2 3 1 b.png\n\n")
    with pytest.raises(ValueError, match="image 'b.png' \\(id 2\\): quaternion \\(qw qx qy qz\\) = \\(0 0 0 0\\) "
                                         "has norm 0"):
        CameraTrajectory.load(tmp_path)
    (tmp_path / "images.txt").write_text("1 1 0 0 0 0 0 0 1 a.png\n\n2 0.6 0 0.6 0 1 2 3 1 b.png\n\n")
    with pytest.raises(ValueError, match="quaternion .* has norm 0.848528; a rotation needs a unit quaternion"):
        CameraTrajectory.load(tmp_path)
    # A camera model without focal length (pycolmap would crash if asked for one).
    (tmp_path / "cameras.txt").write_text("1 EQUIRECTANGULAR 64 32 64 32\n")
    (tmp_path / "images.txt").write_text("1 1 0 0 0 0 0 0 1 a.png\n\n")
    with pytest.raises(ValueError, match="camera 1 uses the EQUIRECTANGULAR model, which has no focal length"):
        CameraTrajectory.load(tmp_path)


def test_colmap_text_quaternions_are_normalised(tmp_path):
    # 6-digit text: the quaternion is a little off unit length; the pose is the exact rotation it stands for.
    rotation = Rotation.from_rotvec([0.3, -0.2, 0.1])
    qx, qy, qz, qw = rotation.as_quat()
    (tmp_path / "cameras.txt").write_text("1 PINHOLE 64 48 50 50 32 24\n")
    (tmp_path / "images.txt").write_text(f"1 {qw:.6f} {qx:.6f} {qy:.6f} {qz:.6f} 0 0 0 1 a.png\n\n")
    c2w = CameraTrajectory.load(tmp_path).c2w[0]
    np.testing.assert_allclose(c2w[:3, :3].T @ c2w[:3, :3], np.eye(3), atol=1e-14)
    np.testing.assert_allclose(c2w[:3, :3], rotation.inv().as_matrix(), atol=2e-6)


def test_nerf_conventions(tmp_path):
    # An OpenGL identity pose looks down world -z with y up: in OpenCV axes its y and z columns are negated.
    document = {"camera_angle_x": 2 * math.atan(0.5 / 0.8), "w": 200, "h": 100,
                "frames": [{"file_path": "a", "transform_matrix": np.eye(4).tolist()},
                           {"file_path": "b", "transform_matrix": np.eye(4).tolist(), "fl_x": 50.0, "fl_y": 40.0,
                            "cx": 90.0}]}
    path = tmp_path / "transforms.json"
    path.write_text(json.dumps(document))
    trajectory = CameraTrajectory.load(path)
    np.testing.assert_allclose(trajectory.c2w[0], np.diag([1.0, -1.0, -1.0, 1.0]))
    # frame 0: fx = 0.8 from the angle, fy from square pixels (0.8 * 200 px / 100 px); frame 1 overrides
    np.testing.assert_allclose(trajectory.intrinsics, [[0.8, 1.6, 0.5, 0.5], [0.25, 0.4, 0.45, 0.5]])
    assert trajectory.source_size == (200, 100)


def test_nerf_image_size_from_the_image_file(tmp_path):
    Image.new("RGB", (40, 20)).save(tmp_path / "r_0.png")
    document = {"camera_angle_x": 1.0, "frames": [{"file_path": "./r_0", "transform_matrix": np.eye(4).tolist()}]}
    (tmp_path / "transforms.json").write_text(json.dumps(document))
    trajectory = CameraTrajectory.load(tmp_path / "transforms.json")
    assert trajectory.source_size == (40, 20)
    np.testing.assert_allclose(trajectory.intrinsics[0, :2], np.array([1.0, 2.0]) * 0.5 / math.tan(0.5))
    del document["frames"][0]["file_path"]
    (tmp_path / "transforms.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match="frame 0: no image size"):
        CameraTrajectory.load(tmp_path / "transforms.json")


def test_realestate10k_text_with_url_line(tmp_path):
    rows = sample_trajectory().to_realestate10k()
    text = "https://www.youtube.com/watch?v=abc\n" + "\n".join(" ".join(f"{v:.9g}" for v in row) for row in rows)
    (tmp_path / "clip.txt").write_text(text)
    np.testing.assert_allclose(CameraTrajectory.load(tmp_path / "clip.txt").c2w, sample_trajectory().c2w, atol=1e-7)
    (tmp_path / "short.txt").write_text("url\n" + " ".join(["1"] * 17))
    with pytest.raises(ValueError, match="row 0 has 17 values, expected 19"):
        CameraTrajectory.load(tmp_path / "short.txt")


def test_realestate10k_source_size_in_the_first_line(tmp_path):
    row = " ".join(str(value) for value in sample_trajectory().to_realestate10k()[0])
    for first_line, expected in [
        ("https://www.youtube.com/watch?v=abc", REALESTATE10K_FRAME_SIZE),  # the dataset's clips are 640x360
        ("dualcam-trajectory", REALESTATE10K_FRAME_SIZE),
        ("dualcam-trajectory source_size=1280x720", (1280, 720)),
        ("dualcam-trajectory source_size=none", None),
        ("", REALESTATE10K_FRAME_SIZE),  # no first line at all
    ]:
        (tmp_path / "clip.txt").write_text(f"{first_line}\n{row}\n")
        assert CameraTrajectory.load(tmp_path / "clip.txt").source_size == expected, first_line
    sizeless = CameraTrajectory(sample_trajectory().c2w, sample_trajectory().intrinsics)
    assert sizeless.save(tmp_path / "sizeless.txt").read_text().splitlines()[0] == "dualcam-trajectory source_size=none"
    assert CameraTrajectory.load(tmp_path / "sizeless.txt").source_size is None
    for bad in ("640x0", "640", "wide", "640x360x2"):
        (tmp_path / "clip.txt").write_text(f"dualcam-trajectory source_size={bad}\n{row}\n")
        with pytest.raises(ValueError, match=f"first line: source_size must be WIDTHxHEIGHT .* got '{bad}'"):
            CameraTrajectory.load(tmp_path / "clip.txt")


def test_torch_source_size_entry(tmp_path):
    rows = torch.from_numpy(sample_trajectory().to_realestate10k()[:, 1:]).float()
    sizeless = CameraTrajectory(sample_trajectory().c2w, sample_trajectory().intrinsics)
    assert CameraTrajectory.load(sizeless.save(tmp_path / "sizeless.torch")).source_size is None
    saved = torch.load(tmp_path / "sizeless.torch", weights_only=True)
    assert sorted(saved) == ["cameras", "source_size"] and saved["source_size"] is None
    for content, expected in [({"cameras": rows}, REALESTATE10K_FRAME_SIZE), (rows, REALESTATE10K_FRAME_SIZE),
                              ({"cameras": rows, "source_size": (320, 240)}, (320, 240))]:
        torch.save(content, tmp_path / "t.torch")
        assert CameraTrajectory.load(tmp_path / "t.torch").source_size == expected
    for bad in ([True, True], "640x360", [640], [640.0, 360.0], [0, 360], torch.tensor([640, 360])):
        torch.save({"cameras": rows, "source_size": bad}, tmp_path / "t.torch")
        with pytest.raises(ValueError, match="t.torch: .*source_size"):
            CameraTrajectory.load(tmp_path / "t.torch")


def odd_tensors() -> dict:
    """Tensors torch.load(weights_only=True) can return that are not a dense real array of rows."""
    rows = torch.from_numpy(sample_trajectory().to_realestate10k()[:, 1:]).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized and nested tensors warn that they are deprecated or beta
        return {
            "sparse_coo": rows.to_sparse(),
            "sparse_csr": rows.to_sparse_csr(),
            "quantized": torch.quantize_per_tensor(rows, 0.1, 0, torch.qint32),
            "nested": torch.nested.nested_tensor(list(rows)),
            "meta": torch.empty(rows.shape, device="meta"),
            "dtype complex64": rows.to(torch.complex64),
            "dtype bool": rows != 0,
            "overlap": rows[:1].expand(10**9, 18),  # 18 stored numbers standing for 144 GB of float64
        }


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("kind", list(odd_tensors()))
def test_odd_tensors_are_refused(tmp_path, kind):
    tensor = odd_tensors()[kind]
    with pytest.raises(ValueError, match=f"must be a dense \\(strided\\) tensor of real .*{kind.split()[-1]}"):
        CameraTrajectory.from_realestate10k(tensor)
    torch.save({"cameras": tensor}, tmp_path / "odd.torch")
    with pytest.raises(ValueError, match="odd.torch: RealEstate10K rows must be a dense"):
        CameraTrajectory.load(tmp_path / "odd.torch")


def test_demo_torch_files_load(demo_dir):
    for name, frames in (("astronaut", 142), ("route66", 98), ("seaside", 125)):
        rows = torch.load(demo_dir / f"{name}.torch", weights_only=True)["cameras"].double().numpy()
        trajectory = CameraTrajectory.load(demo_dir / f"{name}.torch")
        assert len(trajectory) == frames and trajectory.source_size == (640, 360)
        np.testing.assert_array_equal(trajectory.intrinsics, rows[:, :4])
        np.testing.assert_allclose(np.linalg.inv(trajectory.c2w)[:, :3].reshape(frames, 12), rows[:, 6:], atol=1e-12)


def test_writers_need_a_source_size_for_pixel_formats(tmp_path):
    trajectory = CameraTrajectory.preset("dolly_in", num_frames=3)
    bare = CameraTrajectory(trajectory.c2w, trajectory.intrinsics)
    for name in ("transforms.json", "model"):
        with pytest.raises(ValueError, match="needs a source_size"):
            bare.save(tmp_path / name)
    with pytest.raises(ValueError, match="cannot tell the format from 'x.bin'"):
        bare.save(tmp_path / "x.bin")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        CameraTrajectory.load(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text('{"frames": []}')
    with pytest.raises(ValueError, match="neither a dualcam-trajectory file"):
        CameraTrajectory.load(tmp_path / "other.json")
    document = {"format": "dualcam-trajectory", "version": 1,
                "frames": [{"c2w": np.eye(4).tolist(), "intrinsics": [0.5, 0.9, 0.5, 0.5]},
                           {"c2w": (2 * np.eye(4)).tolist(), "intrinsics": [0.5, 0.9, 0.5, 0.5]}]}
    (tmp_path / "bad.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match="bad.json: frame 1: bottom row"):
        CameraTrajectory.load(tmp_path / "bad.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="needs cameras.txt and images.txt"):
        CameraTrajectory.load(tmp_path / "empty")
    with pytest.raises(ValueError, match="other.json: a COLMAP model is a directory"):
        CameraTrajectory.load(tmp_path / "other.json", format="colmap")
    (tmp_path / "array.json").write_text(json.dumps([document]))
    with pytest.raises(ValueError, match="array.json: a JSON array is not a trajectory; accepted JSON trajectories "
                                         "are objects: a dualcam-trajectory file .* or a NeRF transforms.json"):
        CameraTrajectory.load(tmp_path / "array.json")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda document: document.update(source_size=[True, True]), "source_size must be \\(width, height\\)"),
        (lambda document: document.update(version=True), "unsupported version True"),
        (lambda document: document["frames"][0]["c2w"][0].__setitem__(0, True), "frame 0 c2w must be numbers, got a "
                                                                                "boolean"),
        (lambda document: document["frames"][0].update(intrinsics=[0.5, 0.9, 0.5, False]),
         "frame 0 intrinsics must be numbers, got a boolean"),
    ],
)
def test_json_booleans_are_not_numbers(tmp_path, change, message):
    document = json.loads(sample_trajectory().save(tmp_path / "t.json").read_text())
    change(document)
    (tmp_path / "t.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match=f"t.json: {message}"):
        CameraTrajectory.load(tmp_path / "t.json")


def only_value_errors(path) -> None:
    try:
        CameraTrajectory.load(path)
    except ValueError:
        pass


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@FUZZ
@given(data=st.binary(max_size=300), prefix=st.sampled_from([b"", b"PK\x03\x04", b"\x80\x02", b"{", b"[", b"url\n",
                                                                  b"dualcam-trajectory source_size="]))
def test_fuzz_random_bytes(tmp_path, data, prefix):
    path = tmp_path / "fuzz.bin"
    path.write_bytes(prefix + data)
    only_value_errors(path)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=30,
)
frame_like = st.fixed_dictionaries({}, optional={
    "c2w": json_values | st.just(np.eye(4).tolist()), "intrinsics": json_values | st.just([0.5, 0.9, 0.5, 0.5]),
    "transform_matrix": json_values | st.just(np.eye(4).tolist()), "fl_x": json_values, "w": json_values,
    "h": json_values, "camera_angle_x": json_values, "file_path": json_values,
})


@FUZZ
@given(
    header=st.fixed_dictionaries({}, optional={"format": st.just("dualcam-trajectory") | json_values,
                                               "version": st.just(1) | json_values, "source_size": json_values,
                                               "w": json_values, "h": json_values, "camera_angle_x": json_values}),
    frames=st.lists(frame_like, max_size=3) | json_values,
)
def test_fuzz_random_json(tmp_path, header, frames):
    path = tmp_path / "fuzz.json"
    path.write_text(json.dumps({**header, "frames": frames}))
    only_value_errors(path)


@pytest.mark.filterwarnings("ignore")
@FUZZ
@given(kind=st.sampled_from(list(odd_tensors()) + ["float16", "int64", "uint8", "float64"]),
       rows=st.integers(0, 3), width=st.sampled_from([17, 18, 19]), source_size=json_values)
def test_fuzz_torch_contents(tmp_path, kind, rows, width, source_size):
    tensors = odd_tensors()
    tensor = tensors[kind] if kind in tensors else torch.ones(rows, width, dtype=getattr(torch, kind))
    torch.save({"cameras": tensor, "source_size": source_size}, tmp_path / "fuzz.torch")
    only_value_errors(tmp_path / "fuzz.torch")


@FUZZ
@given(rows=st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-3, 3), min_size=16,
                              max_size=20), max_size=4))
def test_fuzz_random_rows(tmp_path, rows):
    try:
        CameraTrajectory.from_realestate10k(rows)
    except ValueError:
        pass
    path = tmp_path / "rows.txt"
    path.write_text("url\n" + "\n".join(" ".join(str(value) for value in row) for row in rows))
    only_value_errors(path)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cameras=st.text(max_size=60), images=st.text(max_size=60))
def test_fuzz_colmap_text(tmp_path, cameras, images):
    (tmp_path / "cameras.txt").write_text("1 PINHOLE 64 48 " + cameras)
    (tmp_path / "images.txt").write_text("1 1 0 0 0 " + images)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        only_value_errors(tmp_path)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    num_frames=st.integers(1, 6),
    size=st.tuples(st.integers(1, 4000), st.integers(1, 4000)),
    name=st.sampled_from(["t.json", "t.txt", "t.torch", "model", "transforms.json"]),
)
def test_round_trip_of_random_trajectories(tmp_path, seed, num_frames, size, name):
    rng = np.random.default_rng(seed)
    c2w = np.tile(np.eye(4), (num_frames, 1, 1))
    c2w[:, :3, :3] = Rotation.random(num_frames, random_state=seed).as_matrix()
    c2w[:, :3, 3] = rng.normal(scale=10, size=(num_frames, 3))
    trajectory = CameraTrajectory(c2w, rng.uniform(0.05, 3.0, size=(num_frames, 4)), size)
    restored = CameraTrajectory.load(trajectory.save(tmp_path / name))
    atol = 1e-4 if name == "t.torch" else 1e-9  # the demo format stores float32
    np.testing.assert_allclose(restored.c2w, trajectory.c2w, atol=atol)
    np.testing.assert_allclose(restored.intrinsics, trajectory.intrinsics, atol=atol, rtol=1e-6)
    assert restored.source_size == size


def test_realestate10k_with_a_byte_order_mark_keeps_every_row_and_a_bad_first_row_is_an_error(tmp_path):
    trajectory = CameraTrajectory.preset("truck_right", 5)
    rows = "\n".join(" ".join(repr(float(value)) for value in row) for row in trajectory.to_realestate10k())
    with_mark = tmp_path / "mark.txt"
    with_mark.write_bytes(b"\xef\xbb\xbf" + rows.encode())
    np.testing.assert_allclose(CameraTrajectory.load(with_mark).c2w, trajectory.c2w, atol=1e-12)
    typo = tmp_path / "typo.txt"
    typo.write_text("O" + rows[1:])  # the letter O for the first timestamp's 0
    with pytest.raises(ValueError, match="row 0 holds a value that is not a number"):
        CameraTrajectory.load(typo)


def test_colmap_writer_refuses_files_binary_models_and_points_of_other_images(tmp_path):
    from diffsynth_dualcam.camera.formats import colmap_image_name

    trajectory = CameraTrajectory.preset("pan_left", 9, source_size=(64, 48))
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="a COLMAP model is a folder, and this is a file"):
        trajectory.save(tmp_path / "file", format="colmap")
    binary = tmp_path / "binary"
    CameraTrajectory.preset("static", 5, source_size=(64, 48)).save(tmp_path / "text", format="colmap")
    pycolmap.Reconstruction(str(tmp_path / "text")).write_binary(str(binary.mkdir() or binary))
    with pytest.raises(ValueError, match=r"holds a binary COLMAP model \(cameras.bin, images.bin\)"):
        trajectory.save(binary, format="colmap")
    trajectory.save(tmp_path / "text", format="colmap")  # over a model of its own kind: no points
    np.testing.assert_allclose(CameraTrajectory.load(tmp_path / "text").c2w, trajectory.c2w, atol=1e-9)
    (tmp_path / "text" / "points3D.txt").write_text("# 3D point list\n1 0 0 1 255 0 0 0 9 0\n")
    with pytest.raises(ValueError, match="its points3D.txt holds points"):
        trajectory.save(tmp_path / "text", format="colmap")
    # Names sort in frame order however long the trajectory.
    names = [colmap_image_name(index, 100_001) for index in (9, 99_999, 100_000)]
    assert names == sorted(names) and names[0] == "frame_000009.png"
    assert colmap_image_name(7, 12) == "frame_00007.png"


def test_a_torch_file_with_code_is_refused_with_a_reason(tmp_path):
    class RunsCode:
        def __reduce__(self):
            return (print, ("ran",))

    path = tmp_path / "evil.torch"
    torch.save({"cameras": RunsCode()}, path)
    with pytest.raises(ValueError, match="holds Python objects other than tensors and plain containers; refused"):
        CameraTrajectory.load(path)


@pytest.mark.parametrize("text", ["0", "-1", "+2.5", ".5", "5.", "1e-3", "-7.25E+2", "0.88900"])
def test_plain_decimal_numbers_parse_as_float_does(text):
    from diffsynth_dualcam.camera.formats import parse_number

    assert parse_number(text) == float(text)


@pytest.mark.parametrize("text", ["0_889", "nan", "inf", "-Infinity", "\u0660.\u0665", "\uff11", "1e", "0x10", " 1",
                                  "1.2.3", "", "+", "e5"])
def test_numbers_python_would_stretch_to_are_refused(text):
    from diffsynth_dualcam.camera.formats import parse_number

    with pytest.raises(ValueError, match="not a plain decimal number"):
        parse_number(text)
