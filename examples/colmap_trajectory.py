"""A camera path from a COLMAP reconstruction (e.g. of a real video shot with the move you want to reproduce).

Pass ``--colmap DIR`` (a sparse model folder, text or binary, or a folder containing sparse/0). Without it the
example writes the demo route66 path as a COLMAP text model first, so that it runs out of the box.
"""
from pathlib import Path

from common import DEMO_DIR, argument_parser, load_pipeline
from PIL import Image

from diffsynth_dualcam.camera import CameraTrajectory

parser = argument_parser(__doc__)
parser.add_argument("--colmap", type=Path, help="COLMAP sparse model folder")
args = parser.parse_args()
pipe, size = load_pipeline(args.tiny)

out_dir = args.out / "colmap_trajectory"
if args.colmap is None:
    demo_path = CameraTrajectory.load(DEMO_DIR / "route66.torch")
    args.colmap = CameraTrajectory(demo_path.c2w, demo_path.intrinsics, (640, 360)).save(out_dir / "sparse",
                                                                                          format="colmap")
# Images are taken in name order; each keeps its camera's intrinsics and the model's image size (source_size).
camera = CameraTrajectory.load(args.colmap)
print(f"{len(camera)} COLMAP images, {camera.source_size[0]}x{camera.source_size[1]}")

output = pipe(
    prompt="An empty desert highway with the Route 66 emblem on the asphalt under a glowing orange sunset sky.",
    input_image=Image.open(DEMO_DIR / "route66.jpg"), input_depth=Image.open(DEMO_DIR / "route66_depth.jpg"),
    camera=camera, seed=42, **size,
    resample_camera=True,  # the whole reconstruction stretched over num_frames (default: its first num_frames images)
)
for path in output.save(out_dir).values():
    print(path)
