"""`dualcam prepare-data`: the missing depth videos and the captions of a training dataset (``data.prepare``)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from ..data.layouts import LAYOUT_SOURCES, PREPARED_DEPTH_NAME


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dualcam prepare-data``."""
    parser.add_argument("root", help="dataset folder (one folder per clip or scene)")
    parser.add_argument("--layout", choices=tuple(LAYOUT_SOURCES), default="realestate10k",
                        help="where the RGB frames of a clip are: video.mp4 | frames/ (realestate10k) or "
                             "images/ | images_2/ | images_4/ | images_8/ (dl3dv)")
    parser.add_argument("--depth-model", default=None,
                        help="Depth Anything model (hub id or local folder) for clips without a depth video")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fps", type=int, default=10, help="frame rate written into the depth videos")
    parser.add_argument("--captions", default=None, help="JSON file {clip name: caption} merged into captions.json")


def run(args: argparse.Namespace) -> int:
    """Write missing depth videos and/or merge captions; prints what was written."""
    root = Path(args.root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    if args.depth_model is None and args.captions is None:
        raise ValueError("nothing to do: give --depth-model and/or --captions")
    from ..data.prepare import plan_depth_videos, save_captions, write_depth_video

    captions, todo = None, []
    if args.captions:
        captions = json.loads(Path(args.captions).read_text(encoding="utf-8"))
        if not isinstance(captions, dict):
            raise ValueError(f"{args.captions}: expected a JSON object {{clip name: caption}}")
    if args.depth_model:
        todo, have_depth, skipped = plan_depth_videos(root, args.layout)
        for message in skipped:
            print(f"warning: skipped {message}", file=sys.stderr)
        if not todo and not have_depth:
            raise ValueError(f"{root}: no clip folder has RGB frames of the {args.layout} layout "
                             f"({' or '.join(LAYOUT_SOURCES[args.layout][0])})")
        print(f"{len(todo)} depth videos to write, {have_depth} clips already have depth, "
              f"{len(skipped)} folders skipped")
    if captions is not None:
        print(f"captions written to {save_captions(root, captions)}")
    if todo:
        from ..models.depth_estimator import DepthEstimator

        estimator = DepthEstimator.from_pretrained(args.depth_model, device=args.device)
        for rgb_path in tqdm(todo, desc="depth videos"):
            folder = rgb_path.parent
            path = write_depth_video(rgb_path, folder / PREPARED_DEPTH_NAME, estimator.disparity, fps=args.fps)
            print(f"depth video written to {path}")
    return 0
