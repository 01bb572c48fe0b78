"""Text-to-video with a preset camera move: no input image, the depth video is generated alongside."""
from common import load_pipeline, parse_args

from diffsynth_dualcam.camera import CameraTrajectory

args = parse_args(__doc__)
pipe, size = load_pipeline(args.tiny)

camera = CameraTrajectory.preset("dolly_in", num_frames=size["num_frames"], speed=1.5)
output = pipe(
    prompt="A cosy library with tall wooden shelves full of old books, warm lamp light, slow camera push-in.",
    negative_prompt="blurry, distorted, low quality",
    t2v=True, camera=camera, seed=7, **size,
)
for path in output.save(args.out / "t2v_library").values():
    print(path)
