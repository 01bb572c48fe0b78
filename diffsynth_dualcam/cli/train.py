"""`dualcam train --config FILE`: one training stage (``train.stage``)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..train.config import TrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dualcam train``."""
    parser.add_argument("--config", required=True,
                        help="YAML or JSON training config (see examples/train/; tiny.yaml runs on a CPU without "
                             "weights). A run into an output_dir that holds an interrupted run of the same config "
                             "resumes it from its last complete checkpoint")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value, e.g. --set train.max_steps=100 (repeatable)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: the config's train.output_dir, which this replaces)")


def load_run_config(args: argparse.Namespace) -> TrainConfig:
    """The config of ``--config`` with the ``--set`` overrides and ``--out`` applied."""
    from ..train.config import load_config

    overrides = list(args.overrides)
    if args.out is not None:
        overrides.append(f"train.output_dir={json.dumps(str(args.out))}")  # quoted: YAML reads any path as text
    return load_config(args.config, overrides)


def run(args: argparse.Namespace) -> int:
    """Train one stage; prints where the checkpoints, loss log and validation videos are."""
    from ..train.stage import train

    config = load_run_config(args)
    logger = train(config)
    if logger.saved:
        print(f"final checkpoint: {logger.saved[-1]}")
        print(f"loss log: {Path(logger.output_path) / 'loss.csv'}")
    return 0
