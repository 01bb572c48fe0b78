"""`dualcam check-dataset`: a training dataset folder checked clip by clip (``data.check``)."""
from __future__ import annotations

import argparse
import json

from ..io import atomic_write


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dualcam check-dataset``."""
    parser.add_argument("root", help="dataset folder")
    parser.add_argument("--layout", choices=("realestate10k", "dl3dv"), default="realestate10k")
    parser.add_argument("--num-frames", type=int, default=None, help="frames per training clip (4k+1)")
    parser.add_argument("--min-stride", type=int, default=1,
                        help="smallest frame stride training may use (data.min_stride): clips need "
                             "(num-frames - 1) * min-stride + 1 frames")
    parser.add_argument("--report", default=None, help="also write the reports to this JSON file")


def run(args: argparse.Namespace) -> int:
    """Check a dataset folder; exit code 1 when any clip has a problem."""
    from ..data import DATASETS
    from ..data.check import check_dataset

    if args.min_stride < 1:
        raise ValueError(f"--min-stride must be >= 1, got {args.min_stride}")
    dataset = DATASETS[args.layout](args.root, height=16, width=16, num_frames=1)
    reports = check_dataset(dataset, args.num_frames, min_stride=args.min_stride)
    for report in reports:
        for problem in report.problems:
            print(f"PROBLEM {report.name}: {problem}")
        for warning in report.warnings:
            print(f"warning {report.name}: {warning}")
    bad = sum(not report.ok for report in reports)
    total_frames = sum(report.num_frames for report in reports)
    print(f"{len(reports)} clips, {total_frames} frames with cameras, {bad} with problems")
    if args.report:
        path = atomic_write(args.report, json.dumps([report.__dict__ for report in reports], indent=1).encode())
        print(f"report written to {path}")
    return 1 if bad else 0
