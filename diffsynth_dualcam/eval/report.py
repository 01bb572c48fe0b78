"""Camera accuracy of a folder of videos against their requested trajectories: several SfM trials per clip,
per-clip averages, a summary over clips, and the files `dualcam eval` writes (JSON report, per-clip CSV, plots)."""
from __future__ import annotations

import csv
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.camera.formats import format_for_path
from diffsynth_dualcam.camera.trajectory import fov_intrinsics
from diffsynth_dualcam.data.frames import IMAGE_SUFFIXES, VIDEO_SUFFIXES, FrameSource
from diffsynth_dualcam.eval.metrics import CONVENTIONS, NORMALIZATIONS, Normalization, camera_errors
from diffsynth_dualcam.eval.plot import plot_comparison
from diffsynth_dualcam.eval.sfm import (
    DEFAULT_MAPPER,
    Mapper,
    PoseEstimationError,
    UnregisteredFramesWarning,
    estimate_trajectory,
)
from diffsynth_dualcam.io import atomic_write

#: Metrics averaged over trials and summarised over clips (sums over the registered frames and per-frame means).
METRIC_KEYS = ("rot_err", "rot_err_deg", "rot_err_deg_mean", "trans_err", "trans_err_mean", "cammc", "cammc_mean")


@dataclass(frozen=True)
class ClipPair:
    """A video (file or folder of frames) and the trajectory it was asked to follow."""

    name: str
    video: Path
    trajectory: Path


@dataclass(frozen=True)
class EvalSettings:
    """How `dualcam eval` estimates and scores each clip."""

    trials: int = 3
    normalization: Normalization = "max"
    mapper: Mapper = DEFAULT_MAPPER
    fov: float | None = None
    stride: int = 1
    max_frames: int | None = None
    min_registered: float = 0.5
    resample: bool = True
    num_threads: int = -1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ValueError(f"trials must be at least 1, got {self.trials}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        if self.fov is not None and not 0 < self.fov < 180:
            raise ValueError(f"fov must be a horizontal field of view in degrees between 0 and 180, got {self.fov}")
        if self.stride < 1:
            raise ValueError(f"stride must be at least 1, got {self.stride}")
        if self.max_frames is not None and self.max_frames < 2:
            raise ValueError(f"max_frames must be at least 2, got {self.max_frames}")
        if not 0 < self.min_registered <= 1:
            raise ValueError(f"min_registered must be a fraction in (0, 1], got {self.min_registered}")


#: The files of a ``dualcam generate`` run folder that eval reads: the generated video and the trajectory it followed.
RUN_VIDEO, RUN_TRAJECTORY = "video.mp4", "trajectory.json"


def _is_video(path: Path) -> bool:
    if path.is_dir():
        return any(child.suffix.lower() in IMAGE_SUFFIXES for child in path.iterdir())
    return path.suffix.lower() in VIDEO_SUFFIXES


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``dualcam generate`` (its video and trajectory inside)."""
    return path.is_dir() and (path / RUN_VIDEO).is_file() and (path / RUN_TRAJECTORY).is_file()


def _is_trajectory(path: Path) -> bool:
    """A file of a trajectory format (by its suffix) or a folder (a COLMAP model); plots, videos, CSVs are not."""
    if path.is_dir():
        return True
    try:
        format_for_path(path)
    except ValueError:
        return False
    return True


def find_clip_pairs(
    videos_dir: str | Path, trajectories_dir: str | Path | None = None
) -> tuple[list[ClipPair], list[str]]:
    """Match videos to their trajectories. Run folders of ``dualcam generate`` (``videos_dir`` itself, or its
    sub-folders) pair their ``video.mp4`` with their ``trajectory.json`` and are named by the folder. Other videos
    (files or frame folders) are matched by name stem to the trajectories of ``trajectories_dir`` (files of a format
    ``CameraTrajectory.load`` reads, or COLMAP folders; other files, such as the plots written beside trajectories,
    are ignored). Returns the pairs sorted by name and the names of videos without a trajectory."""
    videos_dir = Path(videos_dir)
    if not videos_dir.is_dir():
        raise FileNotFoundError(f"--videos: {videos_dir} is not a folder")
    if is_run_folder(videos_dir):
        return [ClipPair(videos_dir.name, videos_dir / RUN_VIDEO, videos_dir / RUN_TRAJECTORY)], []
    entries = [path for path in sorted(videos_dir.iterdir()) if not path.name.startswith(".")]
    runs = {path.name: ClipPair(path.name, path / RUN_VIDEO, path / RUN_TRAJECTORY)
            for path in entries if is_run_folder(path)}
    videos = {path.stem if path.is_file() else path.name: path
              for path in entries if path.name not in runs and _is_video(path)}
    trajectories: dict[str, Path] = {}
    if trajectories_dir is not None:
        trajectories_dir = Path(trajectories_dir)
        if not trajectories_dir.is_dir():
            raise FileNotFoundError(f"--trajectories: {trajectories_dir} is not a folder")
        for path in sorted(trajectories_dir.iterdir()):
            if path.name.startswith(".") or not _is_trajectory(path):
                continue
            if path.is_dir() and (_is_video(path) or is_run_folder(path)):
                continue
            stem = path.stem if path.is_file() else path.name
            if stem in trajectories:
                raise ValueError(f"two trajectories for clip {stem!r}: {trajectories[stem].name} and {path.name}")
            trajectories[stem] = path
    elif not runs:
        raise ValueError(f"--videos: {videos_dir} holds no run folder of dualcam generate ({RUN_VIDEO} and "
                         f"{RUN_TRAJECTORY} inside); give --trajectories for other videos")
    pairs = {**{name: ClipPair(name, video, trajectories[name]) for name, video in videos.items()
                if name in trajectories}, **runs}
    unmatched = [name for name in videos if name not in trajectories]
    if not pairs:
        raise ValueError(f"no video in {videos_dir} has a trajectory of the same name in {trajectories_dir}")
    return [pairs[name] for name in sorted(pairs)], unmatched


def reference_for_video(
    trajectory: CameraTrajectory,
    num_frames: int,
    width: int,
    height: int,
    fov: float | None = None,
    resample: bool = True,
) -> CameraTrajectory:
    """The requested trajectory as the video shows it, matching what generation does with a trajectory of another
    length: with ``resample`` (generation's ``resample_camera``) the whole motion resampled to ``num_frames``,
    without it (generation's default) the first ``num_frames`` frames.
    Intrinsics come from ``fov`` when given, else are cover-cropped from the
    trajectory's source size to the video size (or kept when the source size is unknown)."""
    trajectory = trajectory.fitted(num_frames, resample, too_short=(
        f"trajectory has {len(trajectory)} frames but the video has {num_frames}; resample it to stretch the "
        "trajectory over the video"
    ))
    if fov is not None:
        intrinsics = np.tile(fov_intrinsics(fov, width, height), (num_frames, 1))
        return CameraTrajectory(trajectory.c2w, intrinsics, (width, height))
    if trajectory.source_size is not None:
        return trajectory.cover_crop(target_size=(width, height))
    return trajectory


def _frame_indices(num_frames: int, settings: EvalSettings) -> np.ndarray:
    indices = np.arange(0, num_frames, settings.stride)
    return indices[: settings.max_frames] if settings.max_frames else indices


def _mean_or_none(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _median_or_none(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def open_clip_pair(pair: ClipPair, settings: EvalSettings) -> tuple[FrameSource, CameraTrajectory, CameraTrajectory]:
    """Open the clip's video and load its trajectory: (frame source, trajectory as loaded, reference for the video).
    Raises a ValueError naming the clip when the video cannot be read, the lengths cannot be matched, or the
    reference's intrinsics change over the clip (a zoom: SfM here solves for one fixed camera)."""
    try:
        source = FrameSource(pair.video)
    except RuntimeError as error:
        raise ValueError(f"{pair.video}: cannot read the video ({str(error).splitlines()[0]})") from None
    requested = CameraTrajectory.load(pair.trajectory)
    width, height = source.size
    try:
        reference = reference_for_video(requested, len(source), width, height, settings.fov, settings.resample)
    except ValueError as error:
        raise ValueError(f"clip {pair.name}: {error}") from None
    if not np.allclose(reference.intrinsics, reference.intrinsics[0], rtol=1e-6, atol=1e-9):
        raise ValueError(
            f"clip {pair.name}: the trajectory changes its intrinsics over the clip (a zoom), but pose estimation "
            "solves for one fixed camera: leave zoom clips out of the evaluation"
        )
    return source, requested, reference


def evaluate_clip(
    pair: ClipPair, settings: EvalSettings, plot_path: Path | None = None, progress: tqdm | None = None
) -> dict:
    """Run ``settings.trials`` SfM trials on one clip and score each against its requested trajectory.

    A trial fails when SfM gives up or registers less than ``settings.min_registered`` of the frames; metrics of the
    others are computed on their registered frames (relative to the first registered one) and averaged, with their
    median over trials in ``trial_median``; each trial also records the normalisation's ``alignment``. Returns the
    clip's JSON record; with ``plot_path``, also plots the trial with the median RotErr.
    """
    source, requested, reference = open_clip_pair(pair, settings)
    indices = _frame_indices(len(source), settings)
    frames = source.read(indices)
    reference = CameraTrajectory(reference.c2w[indices], reference.intrinsics[indices], reference.source_size)

    trials, scored = [], []
    for trial in range(settings.trials):
        seed = settings.seed + trial
        record: dict = {"trial": trial, "seed": seed}
        try:
            with warnings.catch_warnings():
                # Unregistered frames are listed in the record instead.
                warnings.simplefilter("ignore", UnregisteredFramesWarning)
                estimate = estimate_trajectory(frames, reference.intrinsics, settings.mapper,
                                               settings.num_threads, seed)
        except PoseEstimationError as error:
            record.update(failed=True, error=str(error), registered_fraction=0.0)
        else:
            registered = estimate.registered_frames
            record.update(
                registered_fraction=estimate.registered_fraction,
                unregistered_frames=[int(indices[i]) for i in estimate.unregistered_frames],
                passes=[{"settings": name, "registered": count} for name, count in estimate.attempts],
            )
            if estimate.registered_fraction < settings.min_registered:
                record.update(failed=True, error=f"registered {len(registered)} of {len(frames)} frames, below "
                                                 f"the minimum fraction {settings.min_registered}")
            else:
                matched = CameraTrajectory(reference.c2w[registered], reference.intrinsics[registered])
                errors = camera_errors(matched, estimate, settings.normalization)
                record.update(failed=False, alignment=errors["alignment"], **{key: errors[key] for key in METRIC_KEYS})
                scored.append((errors["rot_err"], matched, estimate))
        trials.append(record)
        if progress is not None:
            progress.update(1)

    successes = [record for record in trials if not record["failed"]]
    clip = {
        "name": pair.name,
        "video": str(pair.video),
        "trajectory": str(pair.trajectory),
        "num_frames": len(frames),
        "frame_indices": indices.tolist(),
        "trajectory_frames": len(requested),
        "intrinsics": reference.intrinsics[0].tolist(),
        "trials": trials,
        "failures": len(trials) - len(successes),
        "failure_rate": (len(trials) - len(successes)) / len(trials),
        "registered_fraction": float(np.mean([record["registered_fraction"] for record in trials])),
        **{key: _mean_or_none([record[key] for record in successes]) for key in METRIC_KEYS},
        # The median is robust to one trial whose reconstruction converged badly, which the mean is not.
        "trial_median": {key: _median_or_none([record[key] for record in successes]) for key in METRIC_KEYS},
        "plot": None,
    }
    if plot_path is not None and scored:
        scored.sort(key=lambda item: item[0])
        _, matched, estimate = scored[(len(scored) - 1) // 2]
        title = f"{pair.name}: estimated vs requested ({settings.normalization} normalisation)"
        clip["plot"] = str(plot_comparison(matched, estimate, plot_path, settings.normalization, title))
    return clip


def summarize(clips: list[dict]) -> dict:
    """Mean and median over clips of each metric (clips whose trials all failed are left out) and the failure
    rate over all trials."""
    summary: dict = {}
    for key in METRIC_KEYS:
        values = [clip[key] for clip in clips if clip[key] is not None]
        summary[key] = {"mean": _mean_or_none(values), "median": _median_or_none(values)}
    num_trials = sum(len(clip["trials"]) for clip in clips)
    summary.update(
        num_clips=len(clips),
        num_trials=num_trials,
        failure_rate=sum(clip["failures"] for clip in clips) / num_trials if num_trials else None,
        clips_without_success=[clip["name"] for clip in clips if clip["failures"] == len(clip["trials"])],
    )
    return summary


def evaluate_folder(
    videos_dir: str | Path,
    trajectories_dir: str | Path | None,
    settings: EvalSettings,
    plot_dir: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Evaluate every run folder in ``videos_dir`` and every video that has a trajectory of the same stem in
    ``trajectories_dir`` (see ``find_clip_pairs``); returns the full report."""
    pairs, unmatched = find_clip_pairs(videos_dir, trajectories_dir)
    for pair in pairs:  # fail on a malformed trajectory or an unreadable video before hours of SfM
        open_clip_pair(pair, settings)
    clips = []
    with tqdm(total=len(pairs) * settings.trials, desc="eval (SfM trials)", unit="trial", disable=not progress) as bar:
        for pair in pairs:
            plot_path = Path(plot_dir) / f"{pair.name}.png" if plot_dir is not None else None
            clips.append(evaluate_clip(pair, settings, plot_path, bar))
    return {
        "normalization": settings.normalization,
        "convention": CONVENTIONS[settings.normalization],
        "settings": {
            "trials": settings.trials,
            "mapper": settings.mapper,
            "fov": settings.fov,
            "stride": settings.stride,
            "max_frames": settings.max_frames,
            "min_registered": settings.min_registered,
            "resample": settings.resample,
            "seed": settings.seed,
        },
        "summary": summarize(clips),
        "unmatched_videos": unmatched,
        "clips": clips,
    }


CSV_COLUMNS = (
    "name", "num_frames", "trials", "failures", "registered_fraction", *METRIC_KEYS, "normalization", "plot",
    "convention",
)


def report_csv(report: dict) -> str:
    """One CSV row per clip (metrics averaged over successful trials; empty when every trial failed)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for clip in report["clips"]:
        values = {**clip, "trials": len(clip["trials"]), "normalization": report["normalization"],
                  "convention": report["convention"]}
        writer.writerow(["" if values[column] is None else values[column] for column in CSV_COLUMNS])
    return buffer.getvalue()


def summary_table(report: dict) -> str:
    """The summary as a fixed-width text table, with the convention underneath."""
    summary = report["summary"]
    lines = [f"{'metric':<20}{'mean':>12}{'median':>12}"]
    for key in METRIC_KEYS:
        mean, median = summary[key]["mean"], summary[key]["median"]
        lines.append(f"{key:<20}{_format(mean):>12}{_format(median):>12}")
    failure_rate = summary["failure_rate"]
    lines.append(f"{'failure rate':<20}{_format(failure_rate):>12}  ({summary['num_trials']} trials, "
                 f"{summary['num_clips']} clips)")
    lines.append(f"convention ({report['normalization']}): {report['convention']}")
    return "\n".join(lines)


def failed_trials(report: dict) -> list[str]:
    """One line per failed trial: the clip, the trial and seed, and why it failed."""
    return [f"clip {clip['name']}, trial {trial['trial']} (seed {trial['seed']}) failed: {trial['error']}"
            for clip in report["clips"] for trial in clip["trials"] if trial["failed"]]


def _format(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def write_report(report: dict, out_path: str | Path) -> tuple[Path, Path]:
    """Write the JSON report to ``out_path`` and the per-clip CSV beside it (same name, .csv); returns both."""
    out_path = Path(out_path)
    csv_path = out_path.with_suffix(".csv")
    atomic_write(out_path, (json.dumps(report, indent=2, allow_nan=False) + "\n").encode("utf-8"))
    atomic_write(csv_path, report_csv(report).encode("utf-8"))
    return out_path, csv_path
