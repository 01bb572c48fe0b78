"""Camera poses of a video's frames by structure from motion (pycolmap), with the intrinsics held fixed.

Frames are written to a temporary folder, SIFT features go to a temporary database, pairs are matched
sequentially (or exhaustively), and a global or incremental mapper reconstructs the scene with one PINHOLE camera
fixed to the known intrinsics. When a pass leaves frames unregistered, further passes retry with other settings
(the other mapper, exhaustive matching, then more features); the pass registering the most frames wins.
COLMAP's ``cam_from_world`` (world-to-camera) is inverted to camera-to-world, OpenCV axes, and each frame's
intrinsics are read back from its camera in the reconstruction (so a refinement would show).
"""
from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
from PIL import Image

from diffsynth_dualcam.camera import CameraTrajectory

logger = logging.getLogger(__name__)

Mapper = Literal["incremental", "global"]
MAPPERS: tuple[str, ...] = ("incremental", "global")
# The global mapper registered every synthetic clip in benchmarks/eval_mappers.py, including small motions where the
# incremental one failed to initialise or was far less accurate, for about 1.2x the time (docs/evaluation.md).
DEFAULT_MAPPER: Mapper = "global"


class PoseEstimationError(RuntimeError):
    """Structure from motion registered fewer than two frames with every setting tried."""


class UnregisteredFramesWarning(UserWarning):
    """Some frames could not be registered; the estimated trajectory leaves them out."""


@dataclass(frozen=True)
class SfmSettings:
    """One structure-from-motion pass."""

    mapper: Mapper = DEFAULT_MAPPER
    matching: Literal["sequential", "exhaustive"] = "sequential"
    max_num_features: int = 8192
    sift_peak_threshold: float = 0.0066667
    sequential_overlap: int = 10
    # Incremental mapper only: COLMAP's defaults (16 degrees, 100 inliers) fail to initialise on small motions.
    init_min_tri_angle: float = 4.0
    init_min_num_inliers: int = 50

    def describe(self) -> str:
        """Short human-readable summary, for reports."""
        return f"{self.mapper} mapper, {self.matching} matching, up to {self.max_num_features} features"


class EstimatedTrajectory(CameraTrajectory):
    """A ``CameraTrajectory`` of the registered frames, with the structure-from-motion report.

    Attributes (besides those of ``CameraTrajectory``):
        registered_frames: indices (into the input frames) of the poses, in order.
        unregistered_frames: indices of the input frames that no pass could register.
        num_input_frames: number of input frames.
        settings: the pass whose reconstruction was kept.
        attempts: ``(pass description, frames registered)`` for every pass run.
        num_points3d: triangulated points of the kept reconstruction.

    Slicing and the geometry methods return plain ``CameraTrajectory`` objects.
    """

    def __init__(
        self,
        c2w: np.ndarray,
        intrinsics: np.ndarray,
        source_size: tuple[int, int],
        registered_frames: list[int],
        num_input_frames: int,
        settings: SfmSettings,
        attempts: list[tuple[str, int]],
        num_points3d: int,
    ) -> None:
        super().__init__(c2w, intrinsics, source_size)
        self.registered_frames = list(registered_frames)
        self.unregistered_frames = sorted(set(range(num_input_frames)) - set(registered_frames))
        self.num_input_frames = num_input_frames
        self.settings = settings
        self.attempts = list(attempts)
        self.num_points3d = num_points3d

    @property
    def registered_fraction(self) -> float:
        """Share of the input frames with a pose."""
        return len(self.registered_frames) / self.num_input_frames


class _Reconstruction(NamedTuple):
    """What one pass recovered for each registered frame index: camera-to-world pose [4, 4] and the normalised
    (fx, fy, cx, cy) of its camera as the reconstruction holds it; and the number of triangulated points."""

    poses: dict[int, np.ndarray]
    intrinsics: dict[int, np.ndarray]
    num_points3d: int


def retry_schedule(mapper: Mapper) -> list[SfmSettings]:
    """The passes tried in order: the chosen mapper first, then the other mapper, exhaustive matching, and finally
    exhaustive matching of more (and weaker) features."""
    if mapper not in MAPPERS:
        raise ValueError(f"mapper must be one of {MAPPERS}, got {mapper!r}")
    other = "global" if mapper == "incremental" else "incremental"
    first = SfmSettings(mapper=mapper)
    return [
        first,
        replace(first, mapper=other),
        replace(first, matching="exhaustive"),
        replace(first, matching="exhaustive", max_num_features=16384, sift_peak_threshold=0.004),
    ]


def frames_to_array(frames: Sequence[Image.Image] | np.ndarray) -> np.ndarray:
    """Frames as uint8 [F, H, W, 3] from a list of PIL images or an array of that shape."""
    if isinstance(frames, np.ndarray):
        array = frames
    else:
        images = [np.asarray(frame.convert("RGB")) if isinstance(frame, Image.Image) else np.asarray(frame)
                  for frame in frames]
        array = np.stack(images) if images else np.empty(0)
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise ValueError(
            f"frames must be a list of PIL images or a uint8 array [F, H, W, 3], got {array.dtype} {array.shape}"
        )
    if len(array) < 2:
        raise ValueError(f"frames: structure from motion needs at least 2 frames, got {len(array)}")
    return array


def single_intrinsics(intrinsics: Sequence[float] | np.ndarray) -> np.ndarray:
    """Normalised (fx, fy, cx, cy) shared by every frame, from [4] or [F, 4] (all rows equal)."""
    values = np.asarray(intrinsics, dtype=np.float64)
    if values.ndim == 2 and values.shape[1] == 4 and len(values) > 0:
        if not np.allclose(values, values[0], rtol=1e-6, atol=1e-9):
            raise ValueError("intrinsics: frames with different intrinsics are not supported (one fixed camera)")
        values = values[0]
    if values.shape != (4,) or not np.all(np.isfinite(values)) or values[0] <= 0 or values[1] <= 0:
        raise ValueError(
            f"intrinsics must be normalised (fx, fy, cx, cy) with positive focal lengths, shape [4] or [F, 4], "
            f"got {np.asarray(intrinsics).tolist()}"
        )
    return values


def estimate_trajectory(
    frames: Sequence[Image.Image] | np.ndarray,
    intrinsics: Sequence[float] | np.ndarray,
    mapper: Mapper = DEFAULT_MAPPER,
    num_threads: int = -1,
    seed: int | None = 0,
    retries: bool = True,
) -> EstimatedTrajectory:
    """Camera trajectory of ``frames`` by structure from motion with fixed pinhole ``intrinsics``.

    Returns one camera-to-world pose (OpenCV axes, arbitrary world frame and scale) per registered frame, with the
    normalised intrinsics of its camera in the reconstruction. Frames that stay unregistered are left out, listed
    in ``unregistered_frames`` of the result and reported by an ``UnregisteredFramesWarning`` that also names what
    each pass registered.

    Args:
        frames: list of PIL images or uint8 [F, H, W, 3], in temporal order.
        intrinsics: normalised (fx, fy, cx, cy), shape [4] or [F, 4] with equal rows.
        mapper: first mapper to try, "global" or "incremental".
        num_threads: CPU threads for COLMAP (-1: all).
        seed: random seed of COLMAP's RANSAC and mappers; None draws a fresh one (for repeated trials).
        retries: when frames stay unregistered, run the further passes of ``retry_schedule``.

    Raises:
        PoseEstimationError: when no pass registers at least two frames.
    """
    array = frames_to_array(frames)
    camera = single_intrinsics(intrinsics)
    schedule = retry_schedule(mapper) if retries else retry_schedule(mapper)[:1]
    if seed is None:
        seed = int(np.random.default_rng().integers(0, 2**31 - 1))
    best: tuple[_Reconstruction, SfmSettings] | None = None
    attempts: list[tuple[str, int]] = []
    with tempfile.TemporaryDirectory(prefix="dualcam_sfm_") as work_dir, _quiet_colmap():
        image_dir = Path(work_dir) / "images"
        image_dir.mkdir()
        for index, frame in enumerate(array):
            # BMP, not PNG: the pycolmap wheel bundles its own zlib, which clashes with Pillow's (docs/evaluation.md).
            Image.fromarray(frame).save(image_dir / f"{index:06d}.bmp")
        image_size = (array.shape[2], array.shape[1])  # (width, height) of frames [F, H, W, 3]
        for attempt, settings in enumerate(schedule):
            result = _run_pass(Path(work_dir), attempt, settings, image_size, camera, num_threads, seed)
            attempts.append((settings.describe(), len(result.poses)))
            logger.info("SfM pass %d (%s): %d/%d frames", attempt, settings.describe(), len(result.poses), len(array))
            if best is None or len(result.poses) > len(best[0].poses):
                best = (result, settings)
            if len(result.poses) == len(array):
                break
    result, settings = best
    passes = "; ".join(f"{name}: {count}" for name, count in attempts)
    if len(result.poses) < 2:
        raise PoseEstimationError(
            f"structure from motion registered {len(result.poses)} of {len(array)} frames after {len(attempts)} "
            f"passes ({passes})"
        )
    registered = sorted(result.poses)
    height, width = array.shape[1:3]
    trajectory = EstimatedTrajectory(
        np.stack([result.poses[index] for index in registered]),
        np.stack([result.intrinsics[index] for index in registered]),
        source_size=(width, height),
        registered_frames=registered,
        num_input_frames=len(array),
        settings=settings,
        attempts=attempts,
        num_points3d=result.num_points3d,
    )
    if trajectory.unregistered_frames:
        warnings.warn(
            f"{len(trajectory.unregistered_frames)} of {len(array)} frames could not be registered and are left out "
            f"of the trajectory: {trajectory.unregistered_frames} (frames registered per pass: {passes}; kept: "
            f"{settings.describe()})",
            UnregisteredFramesWarning,
            stacklevel=2,
        )
    return trajectory


@contextmanager
def _quiet_colmap() -> Iterator[None]:
    """Silence COLMAP's informational and warning log lines (errors still show)."""
    import pycolmap

    previous = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 2
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = previous


def _run_pass(
    work_dir: Path,
    attempt: int,
    settings: SfmSettings,
    image_size: tuple[int, int],
    camera: np.ndarray,
    num_threads: int,
    seed: int,
) -> _Reconstruction:
    """One feature/matching/mapping pass on frames of ``image_size`` (width, height); returns what the largest
    model holds."""
    import pycolmap

    pycolmap.set_random_seed(seed)
    width, height = image_size
    pixel_camera = camera * np.array([width, height, width, height])
    database_path = work_dir / f"database_{attempt}.db"
    output_path = work_dir / f"sparse_{attempt}"
    output_path.mkdir()

    reader_options = pycolmap.ImageReaderOptions()
    reader_options.camera_model = "PINHOLE"
    reader_options.camera_params = ",".join(f"{value:.10g}" for value in pixel_camera)
    extraction_options = pycolmap.FeatureExtractionOptions()
    extraction_options.num_threads = num_threads
    extraction_options.sift.max_num_features = settings.max_num_features
    extraction_options.sift.peak_threshold = settings.sift_peak_threshold
    pycolmap.extract_features(
        database_path,
        work_dir / "images",
        camera_mode=pycolmap.CameraMode.SINGLE,
        reader_options=reader_options,
        extraction_options=extraction_options,
        device=pycolmap.Device.cpu,
    )

    matching_options = pycolmap.FeatureMatchingOptions()
    matching_options.num_threads = num_threads
    if settings.matching == "sequential":
        pairing_options = pycolmap.SequentialPairingOptions()
        pairing_options.overlap = settings.sequential_overlap
        pairing_options.num_threads = num_threads
        pycolmap.match_sequential(
            database_path,
            matching_options=matching_options,
            pairing_options=pairing_options,
            device=pycolmap.Device.cpu,
        )
    else:
        pycolmap.match_exhaustive(database_path, matching_options=matching_options, device=pycolmap.Device.cpu)

    if settings.mapper == "incremental":
        options = pycolmap.IncrementalPipelineOptions()
        options.ba_refine_focal_length = False
        options.ba_refine_principal_point = False
        options.ba_refine_extra_params = False
        options.mapper.abs_pose_refine_focal_length = False
        options.mapper.abs_pose_refine_extra_params = False
        options.mapper.init_min_tri_angle = settings.init_min_tri_angle
        options.mapper.init_min_num_inliers = settings.init_min_num_inliers
        options.min_model_size = 2
        options.num_threads = num_threads
        options.random_seed = seed
        reconstructions = pycolmap.incremental_mapping(database_path, work_dir / "images", output_path, options)
    else:
        options = pycolmap.GlobalPipelineOptions()
        options.mapper.bundle_adjustment.refine_focal_length = False
        options.mapper.bundle_adjustment.refine_principal_point = False
        options.mapper.bundle_adjustment.refine_extra_params = False
        options.mapper.bundle_adjustment.ceres.use_gpu = False
        options.mapper.global_positioning.use_gpu = False
        options.min_model_size = 2
        options.num_threads = num_threads
        options.random_seed = seed
        reconstructions = pycolmap.global_mapping(database_path, work_dir / "images", output_path, options)

    if not reconstructions:
        return _Reconstruction({}, {}, 0)
    reconstruction = max(reconstructions.values(), key=lambda model: model.num_reg_images())
    poses, intrinsics = {}, {}
    for image in reconstruction.images.values():
        if not image.has_pose:
            continue
        index = int(Path(image.name).stem)
        world_to_camera = np.eye(4)
        world_to_camera[:3] = image.cam_from_world().matrix()
        poses[index] = np.linalg.inv(world_to_camera)
        model_camera = reconstruction.cameras[image.camera_id]
        width, height = model_camera.width, model_camera.height
        # PINHOLE parameters fx, fy, cx, cy in pixels, as bundle adjustment left them.
        intrinsics[index] = np.asarray(model_camera.params, dtype=np.float64) / [width, height, width, height]
    return _Reconstruction(poses, intrinsics, reconstruction.num_points3D())
