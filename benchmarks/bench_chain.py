"""Chaining overhead: everything a chained generation does besides generating its clips, against the whole chain.

Runs ``diffsynth_dualcam.world.generate_long`` on tiny random models (``diffsynth_dualcam.pipeline.tiny.tiny_pipeline``)
as the CLI does (finished clips kept in a resume folder) and writes the world cache's ``world.ply``. The overhead is the
chain's time less the time inside the clip generations (the pipeline calls): conditioning frames, depth alignment,
lifting into the world cache, its consistency figures, the kept clips and the PLY. The models are tiny, so the clips
are as cheap as they get and the ratio is an upper bound of what the official model pays.

    .venv/bin/python benchmarks/bench_chain.py [--device cuda] [--frames 25] [--chunk-frames 9] [--steps 3]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import Row, interleaved_times, resolve, seconds, synchronize

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.export.export3d import write_ply
from diffsynth_dualcam.pipeline import DualCamCtrlPipeline
from diffsynth_dualcam.pipeline.tiny import tiny_pipeline
from diffsynth_dualcam.world import generate_long

HEIGHT, WIDTH = 64, 96
ASSETS = Path(__file__).resolve().parents[1] / "demo_assets"
#: Goal: the overhead stays under this fraction of the chain's time.
GOAL = 0.05


def run(device: str = "cpu", frames: int = 25, chunk_frames: int = 9, steps: int = 3, repeats: int = 3) -> Row:
    """Time whole chains and the clip generations inside them; the ratio is overhead / chain per round (median)."""
    from PIL import Image

    device, torch_dtype, _ = resolve(device, None, "tiny")
    pipe = tiny_pipeline(seed=0, device=device, torch_dtype=torch_dtype)
    image = Image.open(ASSETS / "astronaut.png")
    depth = Image.open(ASSETS / "astronaut_depth.png")
    camera = CameraTrajectory.preset("orbit_left", num_frames=frames)
    wall_time = device.type == "cuda"
    clock = time.perf_counter if wall_time else time.thread_time
    clip_times: list[float] = []
    generate_clip = DualCamCtrlPipeline.__call__

    class TimedPipeline(type(pipe)):
        def __call__(self, *args, **kwargs):
            synchronize(device)
            start = clock()
            output = generate_clip(self, *args, **kwargs)
            synchronize(device)
            clip_times[-1] += clock() - start
            return output

    pipe.__class__ = TimedPipeline

    def chain() -> None:
        clip_times.append(0.0)
        with tempfile.TemporaryDirectory() as folder:
            output = generate_long(
                pipe, prompt="an astronaut", input_image=image, input_depth=depth, camera=camera, height=HEIGHT,
                width=WIDTH, num_frames=frames, chunk_frames=chunk_frames, num_inference_steps=steps, seed=0,
                progress_bar_cmd=lambda iterable: iterable, resume_dir=Path(folder) / "clips",
            )
            write_ply(Path(folder) / "world.ply", output.cache.cloud)

    times = interleaved_times({"chain": chain}, repeats, device, warmup=1, wall_time=wall_time)
    totals = times["chain"].runs
    clips = clip_times[-len(totals):]
    overheads = [total - clip for total, clip in zip(totals, clips, strict=True)]
    ratio = statistics.median(overhead / total for overhead, total in zip(overheads, totals, strict=True))
    num_clips = (frames - 1) // (chunk_frames - 1) + ((frames - 1) % (chunk_frames - 1) > 0)
    return Row(
        benchmark=(f"chaining overhead (tiny pipeline, {frames} frames as {num_clips} clips of {chunk_frames}, "
                   f"{HEIGHT}x{WIDTH}, {steps} steps): everything but the clip generations"),
        measured=f"{seconds(statistics.median(overheads))} overhead",
        baseline=f"{seconds(statistics.median(totals))} whole chain", ratio=ratio, ratio_label="overhead / chain",
        target=f"ratio < {GOAL}", met=ratio < GOAL, device=f"{device.type} {torch_dtype}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--chunk-frames", type=int, default=9)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(run(args.device, args.frames, args.chunk_frames, args.steps, args.repeats).report())


if __name__ == "__main__":
    main()
