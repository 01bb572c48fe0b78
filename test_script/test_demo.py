"""The three demo scenes (``python -m test_script.test_demo``, or ``make demo``).

With the official weights in ``checkpoints/`` every scene is generated as in the published demo: 61 frames,
480x320, 50 steps, seed 42, guidance 6.0. Without them the tiny random models run instead (a few seconds per scene
on a CPU) so that the whole path (inputs, camera, sampling, decoding, saving) is exercised from a fresh clone.
Outputs go to ``outputs/demo/<scene>/``, and ``outputs/demo/overview.png`` shows per scene the inputs, four frames
and their depth.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.io import atomic_output
from diffsynth_dualcam.pipeline import DualCamCtrlOutput, DualCamCtrlPipeline
from diffsynth_dualcam.pipeline.setup import check_device, load_pipeline, print_tiny_notice, tiny_reason

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO_ROOT / "demo_assets"
NEGATIVE_PROMPT = "blurry, distorted, low quality, flickering, static frame, watermark, text"


@dataclass(frozen=True)
class Scene:
    """One demo scene: files in the demo folder and a prompt."""

    name: str
    image: str
    depth: str
    prompt: str


SCENES = (
    Scene("astronaut", "astronaut.png", "astronaut_depth.png",
          "An astronaut in a white spacesuit walks across the grey dusty surface of the Moon, the blue Earth rising "
          "in the black sky behind, sharp shadows, cinematic, highly detailed."),
    Scene("route66", "route66.jpg", "route66_depth.jpg",
          "An empty desert highway with the Route 66 emblem painted on the asphalt, stretching to the horizon under a "
          "glowing orange sunset sky with dark clouds, photorealistic."),
    Scene("seaside", "seaside.png", "seaside_depth.png",
          "A seaside town seen from a hill: rows of white houses, a long pier reaching into the turquoise sea and a "
          "sandy beach curving along the coast on a clear sunny day, aerial view, photorealistic."),
)


@dataclass(frozen=True)
class DemoSettings:
    """Sampling settings of a demo run."""

    height: int
    width: int
    num_frames: int
    num_inference_steps: int
    seed: int = 42
    cfg_scale: float = 6.0


OFFICIAL_SETTINGS = DemoSettings(height=320, width=480, num_frames=61, num_inference_steps=50)
TINY_SETTINGS = DemoSettings(height=96, width=144, num_frames=13, num_inference_steps=4)


def load_scene(scene: Scene, demo_dir: Path, num_frames: int) -> tuple[Image.Image, Image.Image, CameraTrajectory]:
    """Image, depth map and trajectory of a scene.

    As in the published demo, the camera follows the first ``num_frames`` rows of the recorded trajectory (its
    RealEstate10K rows keep their 640x360 source size) rather than the whole path squeezed into the clip.
    """
    with Image.open(demo_dir / scene.image) as image, Image.open(demo_dir / scene.depth) as depth:
        image.load()
        depth.load()
    trajectory = CameraTrajectory.load(demo_dir / f"{scene.name}.torch")
    return image, depth, trajectory[:num_frames]


def overview(outputs: dict[str, DualCamCtrlOutput], columns: int = 4) -> Image.Image:
    """One row per scene: input image and depth map, ``columns`` evenly spaced RGB frames, the same frames' depth."""
    rows = []
    for output in outputs.values():
        last = len(output.video) - 1
        picks = [round(i * last / (columns - 1)) for i in range(columns)]
        inputs = [output.input_image, output.input_depth.convert("RGB")]
        rows.append(inputs + [output.video[i] for i in picks] + [output.depth_video[i].convert("RGB") for i in picks])
    width, height = rows[0][0].size
    gap = 4
    strip = Image.new("RGB", (len(rows[0]) * (width + gap) - gap, len(rows) * (height + gap) - gap), "white")
    for row_index, row in enumerate(rows):
        for column_index, frame in enumerate(row):
            strip.paste(frame, (column_index * (width + gap), row_index * (height + gap)))
    return strip


def build_pipeline(checkpoint_dir: Path, force_tiny: bool) -> tuple[DualCamCtrlPipeline, DemoSettings]:
    """The official pipeline when its weights are in ``checkpoint_dir``, else the tiny one (with a notice)."""
    reason = tiny_reason(force_tiny, checkpoint_dir)
    if not reason:
        return load_pipeline(tiny=False, device=check_device("auto"), checkpoint_dir=checkpoint_dir), OFFICIAL_SETTINGS
    print_tiny_notice(reason, checkpoint_dir)
    return load_pipeline(tiny=True), TINY_SETTINGS


def main(argv: list[str] | None = None) -> int:
    """Generate the demo scenes and print where the files went."""
    parser = argparse.ArgumentParser(prog="python -m test_script.test_demo", description=__doc__.splitlines()[0])
    parser.add_argument("--demo-dir", type=Path, default=DEMO_DIR, help=f"demo assets (default {DEMO_DIR})")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "demo", help="output folder")
    parser.add_argument("--checkpoint-dir", type=Path, default=REPO_ROOT / "checkpoints",
                        help="folder with the official DiT")
    parser.add_argument("--tiny", action="store_true", help="use the tiny random models even if weights exist")
    parser.add_argument("--scenes", nargs="+", choices=[scene.name for scene in SCENES],
                        default=[scene.name for scene in SCENES], help="scenes to run (default: all)")
    args = parser.parse_args(argv)
    if not args.demo_dir.is_dir():
        print(f"error: demo assets not found at {args.demo_dir} (the repository keeps them in demo_assets/)",
              file=sys.stderr)
        return 2
    pipe, settings = build_pipeline(args.checkpoint_dir, args.tiny)
    outputs = {}
    for scene in (scene for scene in SCENES if scene.name in args.scenes):
        image, depth, trajectory = load_scene(scene, args.demo_dir, settings.num_frames)
        print(f"{scene.name}: {settings.num_frames} frames, {settings.width}x{settings.height}, "
              f"{settings.num_inference_steps} steps")
        output = pipe(
            prompt=scene.prompt, negative_prompt=NEGATIVE_PROMPT, input_image=image, input_depth=depth,
            camera=trajectory, height=settings.height, width=settings.width, num_frames=settings.num_frames,
            num_inference_steps=settings.num_inference_steps, cfg_scale=settings.cfg_scale, seed=settings.seed,
        )
        for name, path in output.save(args.out / scene.name).items():
            print(f"  {name}: {path}")
        outputs[scene.name] = output
    strip_path = args.out / "overview.png"
    with atomic_output(strip_path) as temporary:
        overview(outputs).save(temporary, format="PNG")
    print(f"overview: {strip_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
