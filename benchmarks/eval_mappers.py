"""Which structure-from-motion mapper should `dualcam eval` use by default?

Renders the synthetic scene along several camera moves, optionally round-trips the frames through H.264 (as a
generated video would be), and runs one pass of each mapper (no retries). Prints, per case, the frames registered,
RotErr per frame (degrees), TransErr per frame ("max" normalisation) and the time of the global mapper relative to
the incremental one in the same run.

    .venv/bin/python benchmarks/eval_mappers.py [--frames 16] [--size 256] [--threads 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from scipy.spatial.transform import Rotation

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.eval import PoseEstimationError, camera_errors, estimate_trajectory
from diffsynth_dualcam.eval.render import SyntheticScene


def move(num_frames: int, yaw_deg: float = 0.0, centre_end=(0.0, 0.0, 0.0), orbit_depth: float | None = None):
    """Linear yaw and centre motion, or an orbit of ``yaw_deg`` around the point ``orbit_depth`` ahead."""
    yaws = np.linspace(-yaw_deg / 2, yaw_deg / 2, num_frames) if orbit_depth else np.linspace(0, yaw_deg, num_frames)
    c2w = np.tile(np.eye(4), (num_frames, 1, 1))
    c2w[:, :3, :3] = Rotation.from_euler("y", yaws[:, None], degrees=True).as_matrix()
    if orbit_depth:
        target = np.array([0.0, 0.0, orbit_depth])
        c2w[:, :3, 3] = target - c2w[:, :3, :3] @ target
    else:
        c2w[:, :3, 3] = np.linspace(0, 1, num_frames)[:, None] * np.asarray(centre_end)
    return CameraTrajectory(c2w, np.tile([0.9, 0.9, 0.5, 0.5], (num_frames, 1)))


def h264_round_trip(frames: np.ndarray) -> np.ndarray:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.mp4"
        iio.imwrite(path, frames, fps=16, codec="libx264", quality=7, macro_block_size=1)
        return iio.imread(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    cases = {
        "truck": move(args.frames, centre_end=(1.6, 0.0, 0.0)),
        "orbit": move(args.frames, yaw_deg=40.0, orbit_depth=4.0),
        "dolly-in": move(args.frames, centre_end=(0.0, 0.0, 1.5)),
        "pan+truck": move(args.frames, yaw_deg=15.0, centre_end=(0.6, 0.0, 0.0)),
        "small truck": move(args.frames, centre_end=(0.3, 0.0, 0.0)),
    }
    scene = SyntheticScene(seed=0)
    print(f"{'case':<24}{'mapper':<13}{'registered':>11}{'rot deg/frame':>15}{'trans/frame':>13}{'time s':>8}")
    totals = {"incremental": 0.0, "global": 0.0}
    for name, trajectory in cases.items():
        clean = scene.render(trajectory, width=args.size, height=args.size).frames
        for condition, frames in (("png", clean), ("h264", h264_round_trip(clean))):
            for mapper in ("incremental", "global"):
                start = time.perf_counter()
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        estimate = estimate_trajectory(
                            frames, trajectory.intrinsics[0], mapper=mapper, num_threads=args.threads, retries=False
                        )
                    reference = CameraTrajectory(trajectory.c2w[estimate.registered_frames],
                                                 trajectory.intrinsics[estimate.registered_frames])
                    errors = camera_errors(reference, estimate)
                    row = (f"{len(estimate)}/{len(frames)}", f"{errors['rot_err_deg_mean']:.4f}",
                           f"{errors['trans_err_mean']:.4f}")
                except PoseEstimationError:
                    row = (f"0/{len(frames)}", "failed", "failed")
                elapsed = time.perf_counter() - start
                totals[mapper] += elapsed
                print(f"{name + ' ' + condition:<24}{mapper:<13}{row[0]:>11}{row[1]:>15}{row[2]:>13}{elapsed:>8.1f}")
    print(f"time global / incremental: {totals['global'] / totals['incremental']:.2f}")


if __name__ == "__main__":
    main()
