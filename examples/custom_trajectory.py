"""A custom camera path: presets composed (simultaneous moves) and chained (one after the other), checked in a plot
before generating."""
from common import DEMO_DIR, load_pipeline, parse_args
from PIL import Image

from diffsynth_dualcam.camera import CameraTrajectory

args = parse_args(__doc__)
pipe, size = load_pipeline(args.tiny)
frames = size["num_frames"]

# First half: orbit left around a point 2 units ahead while rising; second half: push in.
half = frames // 2 + 1
orbit_rising = CameraTrajectory.preset("orbit_left", num_frames=half, distance=2.0).compose(
    CameraTrajectory.preset("pedestal_up", num_frames=half, speed=0.5))
camera = orbit_rising.then(CameraTrajectory.preset("dolly_in", num_frames=frames - half + 1))
assert len(camera) == frames

out_dir = args.out / "custom_trajectory"
camera.save(out_dir / "camera.json")
print(camera.plot(out_dir / "camera_preview.png", title="orbit + rise, then push in"))

output = pipe(
    prompt="A seaside town on a hill above a turquoise bay, a long pier, sunny day, aerial view.",
    input_image=Image.open(DEMO_DIR / "seaside.png"), input_depth=Image.open(DEMO_DIR / "seaside_depth.png"),
    camera=camera, seed=3, **size,
)
for path in output.save(out_dir).values():
    print(path)
