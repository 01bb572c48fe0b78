"""`dualcam train --config FILE`: one training stage (``train.stage``)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dualcam train``."""
    parser.add_argument("--config", required=True,
                        help="YAML or JSON training config (see examples/train/; tiny.yaml runs on a CPU without "
                             "weights). A run into an output_dir that holds an interrupted run of the same config "
                             "resumes it from its last complete checkpoint")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value, e.g. --set train.max_steps=100 (repeatable)")


def run(args: argparse.Namespace) -> int:
    """Train one stage; prints where the checkpoints, loss log and validation videos are."""
    from ..train.config import load_config
    from ..train.stage import train

    config = load_config(args.config, args.overrides)
    logger = train(config)
    if logger.saved:
        print(f"final checkpoint: {logger.saved[-1]}")
        print(f"loss log: {Path(logger.output_path) / 'loss.csv'}")
    return 0
