"""How far the published camera paths move relative to their scenes: the range behind the preview's scale warning.

For each demo scene (demo_assets/<scene>.torch with its depth map) the path length is divided by the median scene
depth of the first frame (export-3d's reading of the disparity map, near 1 and far 10: see
diffsynth_dualcam/export/preview.py) and by the number of steps between frames. Measured on the paths as recorded (frame
by frame, whole and their first 61 cameras as the published demo follows them) - those give
``preview.PUBLISHED_STEP_RANGE`` - and, for reference, on each path stretched over 61 frames and on the moving
presets at speed 1 over 61 frames against the same depth maps.

    .venv/bin/python benchmarks/path_scale.py
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.export.preview import (
    PUBLISHED_STEP_RANGE,
    STEP_WARNING_RANGE,
    PathScale,
    median_scene_depth,
)

DEMO_ASSETS = Path(__file__).resolve().parents[1] / "demo_assets"
#: Demo scenes: camera path and first-frame depth map in demo_assets/.
SCENES = {"astronaut": "astronaut_depth.png", "seaside": "seaside_depth.png", "route66": "route66_depth.jpg"}
#: Frames of the published demo clips.
DEMO_FRAMES = 61


@dataclass(frozen=True)
class Measurement:
    """One path against one scene; ``published`` marks the paths as recorded (the ones the range is made of)."""

    scene: str
    path: str
    published: bool
    scale: PathScale


def measure(demo_assets: Path = DEMO_ASSETS) -> list[Measurement]:
    """Every measurement of the module docstring."""
    rows = []
    presets = [name for name in CameraTrajectory.preset_names()
               if CameraTrajectory.preset(name, DEMO_FRAMES).path_length() > 0]
    for scene, depth_file in SCENES.items():
        with Image.open(demo_assets / depth_file) as depth:
            median = median_scene_depth(depth)
        recorded = CameraTrajectory.load(demo_assets / f"{scene}.torch")
        paths = [(f"{scene} path, {len(recorded)} frames", recorded, True),
                 (f"{scene} path, first {DEMO_FRAMES} frames", recorded.take(DEMO_FRAMES), True),
                 (f"{scene} path stretched over {DEMO_FRAMES} frames", recorded.resampled(DEMO_FRAMES), False)]
        paths += [(f"preset {name}", CameraTrajectory.preset(name, DEMO_FRAMES), False) for name in presets]
        for label, trajectory, published in paths:
            rows.append(Measurement(scene, label, published, PathScale(trajectory.path_length(), len(trajectory),
                                                                       median)))
    return rows


def published_range(rows: list[Measurement]) -> tuple[float, float]:
    """Smallest and largest motion per frame of the published paths."""
    steps = [row.scale.ratio_per_frame for row in rows if row.published]
    return min(steps), max(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=DEMO_ASSETS, help="folder of the demo assets")
    args = parser.parse_args()
    rows = measure(args.demo)
    print(f"{'scene':10s} {'path':42s} {'frames':>6s} {'length':>7s} {'median depth':>12s} {'x depth':>8s} "
          f"{'per frame':>9s}")
    for row in rows:
        scale = row.scale
        print(f"{row.scene:10s} {row.path:42s} {scale.frames:6d} {scale.length:7.3f} {scale.median_depth:12.3f} "
              f"{scale.ratio:8.3f} {scale.ratio_per_frame:9.5f}{'' if row.published else '  (reference)'}")
    low, high = published_range(rows)
    print(f"\npublished paths: {low:.5f}..{high:.5f} of the median scene depth per frame "
          f"(preview.PUBLISHED_STEP_RANGE = {PUBLISHED_STEP_RANGE}; warning outside {STEP_WARNING_RANGE})")


if __name__ == "__main__":
    main()
