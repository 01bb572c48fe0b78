"""`dualcam eval`: camera accuracy (RotErr, TransErr, CamMC) of generated videos against their trajectories."""
from __future__ import annotations

import argparse
from pathlib import Path

from diffsynth_dualcam.eval.metrics import NORMALIZATIONS
from diffsynth_dualcam.eval.report import EvalSettings, evaluate_folder, failed_trials, summary_table, write_report
from diffsynth_dualcam.eval.sfm import DEFAULT_MAPPER, MAPPERS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `dualcam eval`."""
    parser.add_argument("--videos", required=True, type=Path,
                        help="a run folder of dualcam generate, a folder of them, or a folder of videos (.mp4, .avi, "
                             ".mov, .mkv, .webm) or frame folders, one per clip")
    parser.add_argument("--trajectories", type=Path, default=None,
                        help="folder of requested trajectories named like the videos (any CameraTrajectory format; "
                             "other files are ignored); not needed for run folders, which hold their trajectory")
    parser.add_argument("--out", required=True, type=Path,
                        help="report.json to write; the per-clip CSV goes beside it, plots into <name>_plots/")
    parser.add_argument("--trials", type=int, default=3, help="SfM trials per clip, averaged (default 3)")
    parser.add_argument("--normalization", choices=NORMALIZATIONS, default="max",
                        help="'max': each trajectory's t divided by its own max norm (CamI2V); 'sim3': estimated "
                             "poses aligned by the Umeyama similarity of the centres, orientations included (evo); "
                             "default max")
    parser.add_argument("--mapper", choices=MAPPERS, default=DEFAULT_MAPPER,
                        help=f"first SfM mapper to try (default {DEFAULT_MAPPER}); the other one is a retry")
    parser.add_argument("--fov", type=float, default=None,
                        help="horizontal field of view in degrees, instead of the trajectory's intrinsics")
    parser.add_argument("--stride", type=int, default=1, help="use every N-th frame (default 1)")
    parser.add_argument("--max-frames", type=int, default=None, help="use at most this many frames per clip")
    parser.add_argument("--min-registered", type=float, default=0.5,
                        help="a trial fails below this fraction of registered frames (default 0.5)")
    parser.add_argument("--resample", action=argparse.BooleanOptionalAction, default=True,
                        help="stretch a trajectory of another length over the video, as generate "
                             "--resample-camera does (default); --no-resample cuts a longer trajectory to the video's "
                             "first frames, as generate does by default")
    parser.add_argument("--threads", type=int, default=-1, help="CPU threads for COLMAP (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first trial; trial k uses seed + k")
    parser.add_argument("--no-plots", action="store_true", help="skip the per-clip trajectory plots")


def run(args: argparse.Namespace) -> int:
    """Evaluate the folder, write report.json, the CSV and plots, and print the summary."""
    settings = EvalSettings(
        trials=args.trials,
        normalization=args.normalization,
        mapper=args.mapper,
        fov=args.fov,
        stride=args.stride,
        max_frames=args.max_frames,
        min_registered=args.min_registered,
        resample=args.resample,
        num_threads=args.threads,
        seed=args.seed,
    )
    plot_dir = None if args.no_plots else args.out.with_name(f"{args.out.stem}_plots")
    report = evaluate_folder(args.videos, args.trajectories, settings, plot_dir)
    json_path, csv_path = write_report(report, args.out)
    print(summary_table(report))
    for line in failed_trials(report):
        print(line)
    if report["unmatched_videos"]:
        print(f"videos without a trajectory (skipped): {', '.join(report['unmatched_videos'])}")
    print(f"report: {json_path}")
    print(f"per-clip CSV: {csv_path}")
    if plot_dir is not None and any(clip["plot"] for clip in report["clips"]):
        print(f"plots: {plot_dir}")
    return 0
