"""Start-up of the command line: `dualcam --help` and a refused `dualcam generate`, against `python -c pass`.

Each command runs as a fresh process of this Python (`python -m diffsynth_dualcam ...`, this checkout first on the
path), the time a user waits before anything is printed. The baseline is the interpreter starting and doing
nothing (`python -c pass`), timed in the same rounds, so the ratio says how much the command line adds to Python's
own start-up. Goals (absolute, on the 2-core CPU machine): `--help` <= 1.5 s, a refused `generate` <= 2 s. The
refused call gives an invalid size, which must be answered (exit code 2) before torch or any model loads.

    .venv/bin/python benchmarks/bench_startup.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from common import Row, interleaved_times, paired_ratio, seconds

REPO_ROOT = Path(__file__).resolve().parents[1]
#: name -> (arguments after ``python``, expected exit code, goal in seconds or None for the baseline).
COMMANDS: dict[str, tuple[list[str], int, float | None]] = {
    "baseline": (["-c", "pass"], 0, None),
    "help": (["-m", "diffsynth_dualcam", "--help"], 0, 1.5),
    "refused": (["-m", "diffsynth_dualcam", "generate", "--size", "15x15"], 2, 2.0),
}
LABELS = {"help": "`dualcam --help`", "refused": "refused `dualcam generate --size 15x15`"}


def command_runner(arguments: list[str], expected_code: int) -> Callable[[], None]:
    """A function that runs ``python ARGUMENTS`` with this checkout first on the path and checks its exit code."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                                               os.environ.get("PYTHONPATH")]))}

    def run() -> None:
        done = subprocess.run([sys.executable, *arguments], cwd=REPO_ROOT, env=environment, capture_output=True)
        if done.returncode != expected_code:
            raise RuntimeError(f"python {' '.join(arguments)} exited with {done.returncode}, expected "
                               f"{expected_code}: {done.stderr.decode(errors='replace')[-500:]}")

    return run


def run(repeats: int = 5) -> list[Row]:
    """Time both commands against ``python -c pass``; one table row each."""
    functions = {name: command_runner(arguments, code) for name, (arguments, code, _) in COMMANDS.items()}
    times = interleaved_times(functions, repeats, torch.device("cpu"), wall_time=True)
    baseline = times["baseline"]
    rows = []
    for name, label in LABELS.items():
        goal = COMMANDS[name][2]
        median = times[name].median
        rows.append(Row(
            benchmark=f"start-up: {label}",
            measured=f"{seconds(median)} (rounds {seconds(min(times[name].runs))}-{seconds(max(times[name].runs))})",
            baseline=f"{seconds(baseline.median)} python -c pass",
            ratio=paired_ratio(times[name], baseline), ratio_label="/ python -c pass",
            target=f"time <= {goal} s", met=median <= goal,
            device=f"cpu, wall time of a fresh process, {os.cpu_count()} cores",
        ))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds of each command (medians reported)")
    args = parser.parse_args()
    for row in run(args.repeats):
        print(row.report())


if __name__ == "__main__":
    main()
