"""`dualcam export-3d`: a generated run as a point cloud, COLMAP model or 3D Gaussians (``export.export3d``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..export.export3d import (
    DEFAULT_EXPORT_FORMATS,
    DEFAULT_FAR,
    DEFAULT_NEAR,
    EXPORT_FORMATS,
    INPUT_DEPTH_FILE,
    export_run,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `dualcam export-3d`."""
    parser.add_argument("run_dir", type=Path, help="folder written by a generation (video.mp4, depth.mp4, params.json)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: RUN_DIR)")
    parser.add_argument("--input-depth", type=Path, default=None,
                        help=f"frame-0 depth map to fit the depth scale to (default: RUN_DIR/{INPUT_DEPTH_FILE})")
    parser.add_argument("--frame-stride", type=int, default=4, help="lift every N-th frame (default 4)")
    parser.add_argument("--pixel-stride", type=int, default=2, help="lift every N-th pixel per axis (default 2)")
    parser.add_argument("--near", type=float, default=DEFAULT_NEAR,
                        help=f"distance of the nearest depth value (default {DEFAULT_NEAR:g})")
    parser.add_argument("--far", type=float, default=DEFAULT_FAR,
                        help=f"distance of the farthest depth value (default {DEFAULT_FAR:g})")
    parser.add_argument("--voxel-size", type=float, default=None,
                        help="voxel edge for downsampling, >= 0; 0 keeps every point (default: one pixel at median "
                             "depth; none for gaussians, which keep each surface once)")
    parser.add_argument("--format", nargs="+", choices=EXPORT_FORMATS, default=list(DEFAULT_EXPORT_FORMATS),
                        dest="formats", metavar="FORMAT",
                        help="what to write, one or more of: points (points.ply), colmap (images/ and sparse/0/), "
                             "gaussians (gaussians.ply, 3D Gaussian Splatting) (default: points colmap)")
    parser.add_argument("--sh-degree", type=int, choices=range(4), default=3, metavar="{0,1,2,3}",
                        help="spherical-harmonic degree of gaussians.ply; higher bands are zero (default 3: the "
                             "layout every 3D Gaussian Splatting viewer reads; 0 makes the file 3.6x smaller)")


def run(args: argparse.Namespace) -> int:
    """`dualcam export-3d`: write the point cloud, COLMAP model or 3D Gaussians of a generated run."""
    written = export_run(
        args.run_dir, args.out, args.input_depth, frame_stride=args.frame_stride, pixel_stride=args.pixel_stride,
        near=args.near, far=args.far, voxel_size=args.voxel_size, formats=args.formats, sh_degree=args.sh_degree,
    )
    for name, path in written.items():
        print(f"{name}: {path.resolve()}")
    return 0
