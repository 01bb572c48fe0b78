"""Plücker conditioning of a demo-length trajectory: `CameraTrajectory.plucker` against a per-frame loop.

81 frames at 480x832 (goal on the CPU: at most 0.2 s on an otherwise idle machine). Times are wall times with
torch's default threads, the time a user waits. The baseline is the direct implementation, one frame at a time
(pixel grid, normalised rays, rotation, cross product), timed in the same run so that the ratio does not depend on
the machine. Both results are checked to agree before timing; packing onto latent frames (`pack_plucker`) is timed
as well. At the goal size the output is 776 MB, so faulting in fresh pages and memory bandwidth bound the time: the
row also reports the time of filling fresh memory of the output's size once, the floor of any implementation.

    .venv/bin/python benchmarks/bench_plucker.py [--device cpu|cuda] [--frames 81] [--height 480] [--width 832]
"""
from __future__ import annotations

import argparse

import torch
from common import Row, interleaved_times, paired_ratio, seconds

from diffsynth_dualcam.camera import CameraTrajectory, pack_plucker

GOAL_SECONDS = 0.2


def plucker_per_frame(trajectory: CameraTrajectory, height: int, width: int, device: torch.device) -> torch.Tensor:
    """The baseline: a Python loop over frames, each frame's rays built and crossed in float32."""
    relative = trajectory.relative()
    rows, columns = torch.meshgrid(torch.arange(height, device=device) + 0.5,
                                   torch.arange(width, device=device) + 0.5, indexing="ij")
    frames = []
    for pose, (fx, fy, cx, cy) in zip(relative.c2w, relative.pixel_intrinsics(width=width, height=height)):
        pose = torch.from_numpy(pose).float().to(device)
        directions = torch.stack([(columns - cx) / fx, (rows - cy) / fy, torch.ones_like(rows)], dim=-1)
        directions = directions / directions.norm(dim=-1, keepdim=True)
        directions = directions @ pose[:3, :3].T
        moments = torch.linalg.cross(pose[:3, 3].expand_as(directions), directions, dim=-1)
        frames.append(torch.cat([moments, directions], dim=-1).permute(2, 0, 1))
    return torch.stack(frames, dim=1)


def run(device: str = "cpu", num_frames: int = 81, height: int = 480, width: int = 832, repeats: int = 6) -> Row:
    """Time the vectorised Plücker map against the per-frame loop; the benchmark table row."""
    device = torch.device(device)
    trajectory = CameraTrajectory.preset("orbit_left", num_frames=num_frames, degrees_per_frame=0.5)
    trajectory = trajectory.compose(CameraTrajectory.preset("pedestal_up", num_frames=num_frames))
    trajectory = trajectory.cover_crop(target_size=(width, height))
    plucker = trajectory.plucker(width=width, height=height, device=device)
    torch.testing.assert_close(plucker, plucker_per_frame(trajectory, height, width, device), atol=1e-5, rtol=0)
    functions = {
        "vectorised": lambda: trajectory.plucker(width=width, height=height, device=device),
        "per_frame": lambda: plucker_per_frame(trajectory, height, width, device),
    }
    if num_frames % 4 == 1:
        functions["pack"] = lambda: pack_plucker(plucker)
    # The floor of any implementation: writing once into fresh memory of the output's size.
    functions["fresh_memory"] = lambda: torch.empty_like(plucker).fill_(0.0)
    times = interleaved_times(functions, repeats, device, wall_time=True)
    vectorised = times["vectorised"].median
    speedup = paired_ratio(times["per_frame"], times["vectorised"])
    packing = f", pack_plucker {seconds(times['pack'].median)}" if "pack" in times else ""
    packing += f"; filling fresh memory of its size takes {seconds(times['fresh_memory'].median)}"
    goal = f"time <= {GOAL_SECONDS} s" if device.type == "cpu" else "speed-up > 1"
    met = vectorised <= GOAL_SECONDS if device.type == "cpu" else speedup > 1
    return Row(
        benchmark=f"Plücker map, {num_frames} frames {height}x{width}, vectorised vs per-frame loop",
        measured=f"{seconds(vectorised)}{packing}",
        baseline=f"{seconds(times['per_frame'].median)} per-frame loop",
        ratio=speedup, ratio_label="speed-up", target=goal, met=met,
        device=f"{device.type} float32, wall time, {torch.get_num_threads()} threads",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--repeats", type=int, default=6, help="timed rounds of each side (medians are reported)")
    args = parser.parse_args()
    print(run(args.device, args.frames, args.height, args.width, args.repeats).report())


if __name__ == "__main__":
    main()
