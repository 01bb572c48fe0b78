"""Low-VRAM settings: every model stays in CPU memory in bfloat16 and is moved to the GPU only while it runs
(DiffSynth's per-model offload fields). With ``vram_limit`` (GB), a layer stays on the GPU after its first use only
while GPU memory use is below the limit; beyond it, each call computes with a temporary copy. The DiT's depth
branch and fusion modules are offloaded with it. Tiled VAE decoding (the default) bounds the VAE's memory. Slower
than keeping everything on the GPU: use it when the models do not fit."""
import dataclasses

from common import CHECKPOINT_DIR, DEMO_DIR, OFFICIAL_SIZE, TINY_SIZE, parse_args, use_tiny
from PIL import Image

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.pipeline import DualCamCtrlPipeline, official_model_configs
from diffsynth_dualcam.pipeline.setup import check_device, inference_dtype, offload_fields
from diffsynth_dualcam.pipeline.tiny import write_tiny_model_files

args = parse_args(__doc__)
device = check_device("auto")
torch_dtype = inference_dtype(device)
# Weights wait in CPU memory (offload_*), a model sits there while its turn comes (onload_*), and each layer runs on
# the device (preparing_*, computation_*).
offload = offload_fields(device, torch_dtype)
if use_tiny(args.tiny):  # the same loading path with tiny model files written on the fly
    model_configs, tokenizer_config = write_tiny_model_files(args.out / "tiny_models")
    model_configs = [dataclasses.replace(config, **offload) for config in model_configs]
    size = TINY_SIZE
else:
    model_configs, tokenizer_config = official_model_configs(CHECKPOINT_DIR, **offload), None
    size = OFFICIAL_SIZE
pipe = DualCamCtrlPipeline.from_pretrained(model_configs, tokenizer_config, device=device, torch_dtype=torch_dtype,
                                           vram_limit=6.0)

camera = CameraTrajectory.load(DEMO_DIR / "seaside.torch")
camera = CameraTrajectory(camera.c2w, camera.intrinsics, source_size=(640, 360))
output = pipe(
    prompt="A seaside town on a hill above a turquoise bay, a long pier, sunny day, aerial view.",
    input_image=Image.open(DEMO_DIR / "seaside.png"), input_depth=Image.open(DEMO_DIR / "seaside_depth.png"),
    camera=camera, seed=42, tiled=True, tile_size=(30, 52), tile_stride=(15, 26), **size,
)
for path in output.save(args.out / "low_vram").values():
    print(path)
