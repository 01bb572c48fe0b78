"""The DiT, the fusion, the pipeline and the compiled DiT on every available device in float32 and bfloat16.

The CPU cases always run; the CUDA cases run where a GPU is present (``make gpu-check``). Reduced-precision
results are held to the float32 result on the same device, and shared-batch guidance to the same computation with
every input repeated.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.models import DualCamCtrlDiT, tokens_to_volume, volume_to_tokens
from diffsynth_dualcam.models.fusion import PointwiseConv3d
from diffsynth_dualcam.parallel.backend import compile_dit
from diffsynth_dualcam.pipeline import DualCamCtrlPipeline
from diffsynth_dualcam.pipeline.tiny import tiny_dit_config, tiny_pipeline

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]
DTYPES = [pytest.param(torch.float32, id="float32"), pytest.param(torch.bfloat16, id="bfloat16")]
FRAMES, HEIGHT, WIDTH = 3, 4, 6  # latent size of the DiT checks: 3 x 2 x 3 tokens


@contextlib.contextmanager
def full_float32() -> Iterator[None]:
    """cuDNN and cuBLAS without TF32 inside the block. By default cuDNN rounds float32 convolution inputs to TF32
    (10-bit mantissa), so a convolution run at another batch size, by another algorithm, differs by about 1e-3:
    checks that two code paths compute the same float32 function run without it."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    """||value - reference|| / ||reference|| in float64."""
    value, reference = value.double(), reference.double()
    return ((value - reference).norm() / reference.norm()).item()


def random_dit(device: str, dtype: torch.dtype) -> DualCamCtrlDiT:
    """The tiny DiT with random fusion projections (zero ones would make fusion a no-op)."""
    torch.manual_seed(0)
    dit = DualCamCtrlDiT(**tiny_dit_config()).eval().requires_grad_(False)
    for name, parameter in dit.named_parameters():
        if "zero_inits" in name:
            parameter.copy_(torch.randn_like(parameter) * 0.2)
    return dit.to(device=device, dtype=dtype)


def dit_inputs(device: str, dtype: torch.dtype, contexts: int = 2) -> dict[str, torch.Tensor]:
    """Batch-1 DiT inputs with ``contexts`` prompt contexts, as merged guidance passes them."""
    generator = torch.Generator().manual_seed(1)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)

    latent = (1, 16, FRAMES, HEIGHT, WIDTH)
    return {
        "x": randn(*latent), "depth_latents": randn(*latent), "y": randn(*latent), "depth_y": randn(*latent),
        "timestep": torch.tensor([700.0], device=device, dtype=dtype),
        "context": randn(contexts, 7, tiny_dit_config()["text_dim"]), "clip_feature": randn(1, 257, 1280),
        "camera_latents": randn(1, 24, FRAMES, 8 * HEIGHT, 8 * WIDTH),
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", DEVICES)
@torch.no_grad()
@full_float32()
def test_shared_guidance_inputs_equal_repeated_ones(device, dtype):
    dit, inputs = random_dit(device, dtype), dit_inputs(device, dtype)
    repeated = {name: value if name == "context" else value.expand(2, *value.shape[1:]).contiguous()
                for name, value in inputs.items()}
    shared_rgb, shared_depth = dit(**inputs)
    rgb, depth = dit(**repeated)
    reference_rgb, reference_depth = random_dit(device, torch.float32)(
        **{name: value.float() for name, value in repeated.items()})
    for shared, plain, reference in ((shared_rgb, rgb, reference_rgb), (shared_depth, depth, reference_depth)):
        assert shared.shape == plain.shape == (2, 16, FRAMES, HEIGHT, WIDTH) and shared.dtype == dtype
        assert torch.isfinite(shared).all()
        # Sharing changes which kernels run, not what they compute: no further from float32 than the plain call
        # (kernels for another batch size may sum in another order, hence the floor).
        precision = relative_error(plain, reference)
        assert relative_error(shared, plain) <= max(2 * precision, 1e-4)
        assert precision <= (1e-5 if dtype == torch.float32 else 3e-2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", DEVICES)
@torch.no_grad()
@full_float32()
def test_pointwise_convolution_equals_conv3d(device, dtype):
    torch.manual_seed(2)
    conv = PointwiseConv3d(32, 24, bias=True).to(device=device, dtype=dtype)
    tokens = torch.randn(2, 3 * 4 * 5, 32, device=device, dtype=dtype)
    volume = tokens_to_volume(tokens, (3, 4, 5))
    out = conv(volume)
    assert out.dtype == dtype and volume_to_tokens(out).is_contiguous()
    reference = F.conv3d(volume.float().contiguous(), conv.weight.float(), conv.bias.float())
    assert relative_error(out, reference) <= (1e-6 if dtype == torch.float32 else 1e-2)


def generate(device: str, dtype: torch.dtype, cfg_merge: bool = True, pipe: DualCamCtrlPipeline | None = None):
    """A 5-frame clip of the tiny pipeline (or of ``pipe``) from a random image, a depth ramp and an orbit."""
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (72, 128, 3), dtype=np.uint8))
    depth = Image.fromarray(np.tile(np.linspace(0, 255, 128), (72, 1)).astype(np.uint8))
    camera = CameraTrajectory.preset("orbit_left", num_frames=5, degrees_per_frame=2.0)
    pipe = pipe or tiny_pipeline(seed=0, device=device, torch_dtype=dtype)
    return pipe(
        prompt="a slow orbit around a red car", negative_prompt="blurry", input_image=image, input_depth=depth,
        camera=camera, height=64, width=96, num_frames=5, num_inference_steps=2, seed=7, cfg_merge=cfg_merge,
        progress_bar_cmd=lambda iterable: iterable,
    )


@pytest.mark.parametrize("device", DEVICES)
def test_bfloat16_generation_stays_close_to_float32(device):
    full, half = generate(device, torch.float32), generate(device, torch.bfloat16)
    assert half.latents.dtype == torch.bfloat16
    assert relative_error(half.latents, full.latents) < 5e-2
    assert relative_error(half.depth_latents, full.depth_latents) < 5e-2


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.filterwarnings("ignore:Torchinductor does not support code generation for complex operators")
def test_compiled_dit_generates_the_clip_of_the_eager_one(device):
    """``--compile``: every RGB and depth block compiled by inductor (the default backend), guidance merged."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    with full_float32():
        eager = generate(device, torch.float32)
        pipe = tiny_pipeline(seed=0, device=device, torch_dtype=torch.float32)
        compile_dit(pipe)
        compiled = generate(device, torch.float32, pipe=pipe)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # the blocks did run compiled
    assert relative_error(compiled.latents, eager.latents) < 1e-4
    assert relative_error(compiled.depth_latents, eager.depth_latents) < 1e-4
    torch._dynamo.reset()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_generation_equals_cpu_generation():
    with full_float32():
        merged, unmerged = generate("cuda", torch.float32), generate("cuda", torch.float32, cfg_merge=False)
    assert relative_error(unmerged.latents, merged.latents) < 1e-4
    assert relative_error(unmerged.depth_latents, merged.depth_latents) < 1e-4
    on_gpu, on_cpu = generate("cuda", torch.float32), generate("cpu", torch.float32)
    # The noise is drawn on the CPU, so the devices differ only by kernels (TF32 convolutions included).
    assert relative_error(on_gpu.latents.cpu(), on_cpu.latents) < 1e-2
    assert relative_error(on_gpu.depth_latents.cpu(), on_cpu.depth_latents) < 1e-2
