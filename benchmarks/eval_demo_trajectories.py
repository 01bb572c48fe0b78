"""End-to-end check of `dualcam eval` on real camera motion with known truth.

Renders the synthetic scene along the RealEstate10K trajectories of the demo assets (resampled to --frames,
cover-cropped to --width x --height), encodes each as H.264, and runs the evaluation on the folder. Prints the
summary table; the report, CSV and plots are written under --out.

    .venv/bin/python benchmarks/eval_demo_trajectories.py --out /tmp/eval_demo
"""
from __future__ import annotations

import argparse
from pathlib import Path

import imageio.v3 as iio

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.cli import main as dualcam
from diffsynth_dualcam.eval.render import SyntheticScene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path(__file__).resolve().parents[1] / "demo_assets")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    videos, trajectories = args.out / "videos", args.out / "trajectories"
    videos.mkdir(parents=True, exist_ok=True)
    trajectories.mkdir(parents=True, exist_ok=True)
    scene = SyntheticScene(seed=0)
    for path in sorted(args.demo.glob("*.torch")):
        trajectory = CameraTrajectory.load(path).resampled(args.frames)
        # Start at the scene's origin, where the room leaves space for the motion.
        trajectory = CameraTrajectory(trajectory.relative().c2w, trajectory.intrinsics, trajectory.source_size)
        view = trajectory.cover_crop(target_size=(args.width, args.height))
        frames = scene.render(view, width=args.width, height=args.height).frames
        iio.imwrite(videos / f"{path.stem}.mp4", frames, fps=10, codec="libx264", macro_block_size=1)
        trajectory.save(trajectories / f"{path.stem}.json")
    dualcam(["eval", "--videos", str(videos), "--trajectories", str(trajectories),
             "--out", str(args.out / "report.json"), "--trials", str(args.trials), "--threads", str(args.threads)])


if __name__ == "__main__":
    main()
