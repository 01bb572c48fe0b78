"""Image-to-video from a demo scene: the astronaut image, its depth map and its RealEstate10K camera path."""
from common import DEMO_DIR, load_pipeline, parse_args
from PIL import Image

from diffsynth_dualcam.camera import CameraTrajectory

args = parse_args(__doc__)
pipe, size = load_pipeline(args.tiny)

image = Image.open(DEMO_DIR / "astronaut.png")
depth = Image.open(DEMO_DIR / "astronaut_depth.png")  # 8-bit disparity: near = bright
camera = CameraTrajectory.load(DEMO_DIR / "astronaut.torch")  # {"cameras": [N, 18]} RealEstate10K rows
# The rows' intrinsics were measured on 640x360 videos; the pipeline cover-crops them to the output size.
camera = CameraTrajectory(camera.c2w, camera.intrinsics, source_size=(640, 360))

output = pipe(
    prompt="An astronaut in a white spacesuit walks across the grey surface of the Moon, the Earth rising behind.",
    negative_prompt="blurry, distorted, low quality",
    input_image=image, input_depth=depth, camera=camera, seed=42, cfg_scale=6.0, **size,
)
for path in output.save(args.out / "i2v_astronaut", fps=16).values():
    print(path)
