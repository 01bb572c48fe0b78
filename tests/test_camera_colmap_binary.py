"""COLMAP binary models: every record is checked against the file size before pycolmap reads it.

pycolmap trusts binary files: a name cut off by the end of the file makes it read forever and a corrupt point
count makes it allocate gigabytes. Loads that could reach pycolmap with such input run in a worker process with a
CPU-time limit and a memory cap (no wall-clock limit: a loaded machine must not fail them), so that a regression
fails the test instead of stalling or killing the run.
"""
import multiprocessing
import resource
import struct
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pycolmap
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.camera.formats import read_trajectory

LOAD_CPU_SECONDS = 30  # a load of this model takes milliseconds of CPU time
MEMORY_HEADROOM = 2 << 30  # address space the worker may add to what it holds after its imports

# name -> (image id, camera id, rotation vector of cam_from_world, its translation, 2D points)
IMAGES = {
    "b.png": (1, 1, [0.1, -0.2, 0.3], [0.1, 0.2, 0.3], [(1.5, 2.5), (3.5, 4.5)]),
    "a.png": (3, 2, [0.0, 0.05, 0.0], [0.0, 0.0, 1.0], [(5.0, 6.0)]),
    "c.png": (2, 1, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], []),
}
CAMERAS = "1 PINHOLE 64 48 50 52 32 24\n2 OPENCV 80 60 70 71 40 30 0.01 0.001 0 0\n"
INTRINSICS = {1: [50 / 64, 52 / 48, 32 / 64, 24 / 48], 2: [70 / 80, 71 / 60, 40 / 80, 30 / 60]}


def _cap_worker() -> None:
    """Pool initializer: import the reader, then cap the address space so that a runaway allocation fails."""
    import diffsynth_dualcam.camera.formats  # noqa: F401  (its imports come before the cap)

    warnings.simplefilter("ignore")
    with open("/proc/self/statm") as statm:
        held = int(statm.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (held + MEMORY_HEADROOM, resource.getrlimit(resource.RLIMIT_AS)[1]))


def _with_cpu_limit(cpu_seconds: int, function, *args):
    """Run ``function(*args)`` in the worker with ``cpu_seconds`` more CPU time; past it the kernel ends the worker
    (SIGXCPU), however long the machine makes it wait."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    limit = int(usage.ru_utime + usage.ru_stime) + cpu_seconds + 1
    resource.setrlimit(resource.RLIMIT_CPU, (limit, resource.getrlimit(resource.RLIMIT_CPU)[1]))
    return function(*args)


def _spin() -> None:
    while True:
        pass


class GuardedLoader:
    """``read_trajectory`` (or ``function``) in a worker process; an AssertionError when the worker dies, from its
    CPU-time limit or its memory cap."""

    def __init__(self, cpu_seconds: int = LOAD_CPU_SECONDS) -> None:
        self.cpu_seconds = cpu_seconds
        self._pool = None

    def __call__(self, path: Path | None, function=read_trajectory):
        if self._pool is None:
            spawn = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(1, mp_context=spawn, initializer=_cap_worker)
        arguments = () if path is None else (path,)
        try:
            return self._pool.submit(_with_cpu_limit, self.cpu_seconds, function, *arguments).result()
        except BrokenProcessPool:
            self.close()  # a fresh worker for the next load (hypothesis shrinks on)
            raise AssertionError(f"loading {path} used over {self.cpu_seconds} s of CPU time or crashed the worker: "
                                 "the reader hangs or crashed") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def test_the_guard_stops_a_load_that_spins_by_its_cpu_time():
    loader = GuardedLoader(cpu_seconds=1)
    try:
        with pytest.raises(AssertionError, match="over 1 s of CPU time"):
            loader(None, _spin)
        assert loader(None, int) == 0  # and the next load gets a fresh worker
    finally:
        loader.close()


@pytest.fixture(scope="module")
def guarded_load():
    loader = GuardedLoader()
    yield loader
    loader.close()


@pytest.fixture(scope="module")
def binary_model(tmp_path_factory) -> Path:
    """A binary model written by pycolmap from a hand-written text model: two cameras, 2D points, 3 images."""
    text = tmp_path_factory.mktemp("text")
    (text / "cameras.txt").write_text(CAMERAS)
    lines = []
    for name, (image_id, camera_id, rotvec, translation, points) in IMAGES.items():
        qx, qy, qz, qw = Rotation.from_rotvec(rotvec).as_quat()
        pose = " ".join(repr(float(value)) for value in [qw, qx, qy, qz, *translation])
        lines.append(f"{image_id} {pose} {camera_id} {name}")
        lines.append(" ".join(f"{x!r} {y!r} -1" for x, y in points))
    (text / "images.txt").write_text("\n".join(lines) + "\n")
    (text / "points3D.txt").write_text("")
    binary = tmp_path_factory.mktemp("binary")
    pycolmap.Reconstruction(text).write_binary(binary)
    return binary


def expected_trajectory() -> CameraTrajectory:
    """The model's trajectory computed from the text values: images by name, c2w = inverse of cam_from_world."""
    w2c, intrinsics = [], []
    for name in sorted(IMAGES):
        _, camera_id, rotvec, translation, _ = IMAGES[name]
        pose = np.eye(4)
        pose[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
        pose[:3, 3] = translation
        w2c.append(pose)
        intrinsics.append(INTRINSICS[camera_id])
    return CameraTrajectory(np.linalg.inv(np.stack(w2c)), intrinsics)


def copy_model(binary_model: Path, target: Path, **changes: bytes) -> Path:
    """``binary_model`` copied to ``target`` with some files replaced (``images_bin=b"..."``)."""
    target.mkdir(exist_ok=True)
    for source in binary_model.iterdir():
        data = changes.get(source.name.replace(".", "_"), source.read_bytes())
        (target / source.name).write_bytes(data)
    return target


def image_record(images: bytes, name: str) -> int:
    """Offset of the record of image ``name`` in images.bin: 64 bytes (id, pose, camera id) precede the name."""
    return images.index(name.encode() + b"\0") - 64


def test_binary_model_loads_with_points_and_distortion(binary_model, tmp_path):
    # 3D points, rigs and frames are not read: garbage in those files changes nothing.
    model = copy_model(binary_model, tmp_path / "model", points3D_bin=b"\xff" * 20, rigs_bin=b"\xff" * 3,
                       frames_bin=b"")
    with pytest.warns(UserWarning, match="OPENCV reduced to pinhole"):
        trajectory = CameraTrajectory.load(model)
    expected = expected_trajectory()
    np.testing.assert_allclose(trajectory.c2w, expected.c2w, atol=1e-12)
    np.testing.assert_allclose(trajectory.intrinsics, expected.intrinsics, rtol=1e-12)
    assert trajectory.source_size is None  # the two cameras differ in size


def overwritten(data: bytes, offset: int, value: bytes) -> bytes:
    """``data`` with ``value`` written over it at ``offset``."""
    return data[:offset] + value + data[offset + len(value):]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # cut inside the name of the last record: pycolmap would wait forever for its NUL byte
        (lambda c, i: {"images_bin": i[:max(i.index(n.encode()) for n in IMAGES) + 2]},
         "images.bin: image record 2 \\(id \\d\\): the file ends inside the image name"),
        # one byte of b.png's point count changed: pycolmap would reserve 24 bytes for each of 2**38 points
        (lambda c, i: {"images_bin": overwritten(i, i.index(b"b.png\0") + 6 + 4, b"\x40")},
         "images.bin: image record \\d \\(id 1\\): 274877906946 2D points need 6597069766704 bytes but only "
         "\\d+ remain"),
        (lambda c, i: {"images_bin": overwritten(i, 0, struct.pack("<Q", 2**40))},
         "images.bin: the header counts 1099511627776 images but 314 bytes hold at most 4"),
        (lambda c, i: {"images_bin": i + b"\0"}, "images.bin: 1 byte\\(s\\) follow the last of the 3 image records"),
        (lambda c, i: {"images_bin": overwritten(i, image_record(i, "a.png") + 60, struct.pack("<I", 9))},
         "images.bin: image record \\d \\(id 3\\): camera id 9 is not in cameras.bin"),
        (lambda c, i: {"images_bin": overwritten(i, image_record(i, "a.png"), struct.pack("<I", 1))},
         "images.bin: image record \\d \\(id 1\\): image id 1 appears twice"),
        (lambda c, i: {"images_bin": overwritten(i, i.index(b"a.png"), b"\xff")},
         "images.bin: image record \\d \\(id 3\\): the image name is not UTF-8"),
        (lambda c, i: {"images_bin": i[:5]}, "images.bin: 5 bytes are too few for the image count"),
        (lambda c, i: {"cameras_bin": overwritten(c, 8 + 4, struct.pack("<i", 99))},
         "cameras.bin: camera record 0 \\(id 1\\): unknown camera model id 99"),
        (lambda c, i: {"cameras_bin": c[:-8]},
         "cameras.bin: camera record 1 \\(id 2\\): the file ends inside the 8 parameters of its OPENCV model"),
        (lambda c, i: {"cameras_bin": overwritten(c, 8 + 24 + 32, struct.pack("<I", 1))},
         "cameras.bin: camera record 1 \\(id 1\\): camera id 1 appears twice"),
        (lambda c, i: {"images_bin": overwritten(i, image_record(i, "b.png") + 4, bytes(32))},
         "image 'b.png' \\(id 1\\): quaternion \\(qw qx qy qz\\) = \\(0 0 0 0\\) has norm 0"),
    ],
)
def test_binary_model_errors_name_the_file_and_record(binary_model, tmp_path, guarded_load, change, message):
    cameras, images = (binary_model / "cameras.bin").read_bytes(), (binary_model / "images.bin").read_bytes()
    model = copy_model(binary_model, tmp_path / "model", **change(cameras, images))
    with pytest.raises(ValueError, match=message):
        guarded_load(model)


positions = st.integers(0, 2**16)
mutation = st.one_of(
    st.tuples(st.just("truncate"), positions, st.just(b"")),
    st.tuples(st.just("overwrite"), positions, st.binary(min_size=1, max_size=4)),
    st.tuples(st.just("overwrite"), positions, st.integers(0, 2**64 - 1).map(lambda n: struct.pack("<Q", n))),
    st.tuples(st.just("insert"), positions, st.binary(min_size=1, max_size=4)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(st.tuples(st.sampled_from(["cameras.bin", "images.bin"]), mutation), min_size=1, max_size=3))
def test_fuzz_binary_model(binary_model, tmp_path, guarded_load, changes):
    files = {name: bytearray((binary_model / name).read_bytes()) for name in ("cameras.bin", "images.bin")}
    for name, (kind, position, value) in changes:
        data = files[name]
        position %= len(data) + 1
        if kind == "truncate":
            del data[position:]
        elif kind == "overwrite":
            data[position:position + len(value)] = value
        else:
            data[position:position] = value
    model = tmp_path / "fuzz"
    model.mkdir(exist_ok=True)
    for name, data in files.items():
        (model / name).write_bytes(data)
    try:
        trajectory = guarded_load(model)
    except ValueError as error:
        assert str(model) in str(error)
    else:
        assert 1 <= len(trajectory) <= len(IMAGES)
