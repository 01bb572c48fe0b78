"""Peak memory of one generation: all models on the device (the default), and with ``--offload``.

On a GPU (size ``full``): the real-size models with random weights, built directly on the GPU in bf16, so nothing
is downloaded: the DualCamCtrl DiT (official config, 30 + 30 blocks), the umT5-xxl text encoder, the CLIP ViT-H
image encoder and the Wan2.1 VAE. Each setting generates 61 frames at 480x720 from an image and its depth map
with the pipeline's defaults (merged guidance, tiled decoding of both videos), 2 denoising steps (every step
peaks alike). The figure is ``torch.cuda.max_memory_allocated`` over the whole call, resident weights included;
targets: <= 24 GB by default, <= 12 GB with ``--offload``. With ``--offload`` the models stay in CPU memory and
DiffSynth's VRAM management moves a model's layers to the GPU as they run and back when the pipeline moves on to
another model, with the ``ModelConfig`` offload fields that ``dualcam generate --offload`` sets.

On the CPU (size ``tiny``): the same two settings with the tiny models, 9 frames at 64x96; the figure is the rise
of the resident set of a forked child running the generation above its resident set at the start (the loaded
models are not counted), so offloading to the CPU changes nothing there: the run checks that the code path works.

    .venv/bin/python benchmarks/bench_memory.py [--device cuda] [--size tiny|full] [--steps 2]
"""
from __future__ import annotations

import argparse
import contextlib
import gc
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import torch
from common import TEXT_TOKENS, Row, generation_arguments, gib, latent_shape, peak_memory, resolve
from diffsynth.configs import VRAM_MANAGEMENT_MODULE_MAPS
from diffsynth.core.vram.layers import enable_vram_management
from diffsynth.models import wan_video_dit
from diffsynth.models.model_loader import ModelPool
from diffsynth.models.wan_video_image_encoder import WanImageEncoder
from diffsynth.models.wan_video_text_encoder import WanTextEncoder
from diffsynth.models.wan_video_vae import WanVideoVAE
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType

from diffsynth_dualcam.models import OFFICIAL_CONFIG, DualCamCtrlDiT
from diffsynth_dualcam.models.registry import VRAM_MODULE_MAP
from diffsynth_dualcam.pipeline import DualCamCtrlPipeline
from diffsynth_dualcam.pipeline.setup import offload_fields
from diffsynth_dualcam.pipeline.tiny import tiny_models, tiny_tokenizer

#: (frames, height, width) generated per size.
VIDEO = {"tiny": (9, 64, 96), "full": (61, 480, 720)}
#: Targets in GB (10^9 bytes) on a GPU: default settings, and ``--offload``.
GOAL_GB = {"default": 24.0, "offload": 12.0}
#: The VRAM-management module map of each pipeline model (the tiny models subclass the full-size ones).
MODULE_MAPS = {
    "dit": VRAM_MODULE_MAP,
    "text_encoder": VRAM_MANAGEMENT_MODULE_MAPS["diffsynth.models.wan_video_text_encoder.WanTextEncoder"],
    "vae": VRAM_MANAGEMENT_MODULE_MAPS["diffsynth.models.wan_video_vae.WanVideoVAE"],
    "image_encoder": VRAM_MANAGEMENT_MODULE_MAPS["diffsynth.models.wan_video_image_encoder.WanImageEncoder"],
}


def offload_config(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """The ``ModelConfig`` offload fields of ``dualcam generate --offload``: weights in CPU memory, computation on
    ``device``."""
    return offload_fields(str(device), dtype)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Build floating-point tensors in ``dtype`` inside the block."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def random_models(size: str, device: torch.device, dtype: torch.dtype) -> Iterator[tuple[str, torch.nn.Module]]:
    """The pipeline's four models with random weights on ``device`` in ``dtype``, one at a time: real-size ones
    built directly there in ``dtype`` (the CLIP encoder builds itself on the CPU and is moved), or the
    tiny ones."""
    if size == "tiny":
        models = tiny_models(seed=0)
        for name, model in models.items():
            yield name, model.to(device=device, dtype=dtype)
        return
    if size != "full":
        raise ValueError(f"the memory benchmark runs size 'tiny' or 'full', got {size!r}")
    torch.manual_seed(0)
    builders = {
        "dit": lambda: DualCamCtrlDiT(**OFFICIAL_CONFIG), "text_encoder": WanTextEncoder, "vae": WanVideoVAE,
        "image_encoder": WanImageEncoder,
    }
    for name, build in builders.items():
        with torch.device(device), default_dtype(dtype):
            model = build()
        yield name, model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def build_pipeline(size: str, device: torch.device, dtype: torch.dtype, offload: bool) -> DualCamCtrlPipeline:
    """A pipeline of random models: all on ``device``, or (``offload``) in CPU memory under VRAM management, each
    moved there before the next is built."""
    pipe = DualCamCtrlPipeline(device=device, torch_dtype=dtype)
    pool = ModelPool()
    vram_config = offload_config(device, dtype)
    for name, model in random_models(size, device, dtype):
        if offload:
            module_map = {pool.import_model_class(source): pool.import_model_class(target)
                          for source, target in MODULE_MAPS[name].items()}
            model = enable_vram_management(model.to("cpu"), module_map, vram_config=vram_config)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        setattr(pipe, name, model)
    # A byte-level tokenizer: prompts are padded to the same 512 tokens as with umT5's, without a download.
    pipe.tokenizer = tiny_tokenizer()
    pipe.vram_management_enabled = pipe.check_vram_management_state()
    return pipe


def measure(size: str, device: torch.device, dtype: torch.dtype, offload: bool, steps: int) -> dict[str, float]:
    """Peak bytes of one generation (``peak``), and on a GPU the bytes allocated at its start (``start``) and the
    allocator's peak reservation (``reserved``)."""
    pipe = build_pipeline(size, device, dtype, offload)
    frames, height, width = VIDEO[size]
    arguments = generation_arguments(frames, height, width, steps)

    def generate() -> None:
        pipe(**arguments)

    if device.type != "cuda":
        return {"peak": peak_memory(generate, device)}
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    generate()
    torch.cuda.synchronize(device)
    return {"peak": float(torch.cuda.max_memory_allocated(device)), "start": float(start),
            "reserved": float(torch.cuda.max_memory_reserved(device))}


@contextlib.contextmanager
def flash_attention_memory() -> Iterator[None]:
    """Inside the block DiffSynth's attention takes PyTorch's kernel, and that kernel allocates what FlashAttention
    does: its output, never the [tokens x tokens] score matrix (for tracing memory on fake tensors)."""
    flags = ("FLASH_ATTN_3_AVAILABLE", "FLASH_ATTN_2_AVAILABLE", "SAGE_ATTN_AVAILABLE")
    saved = {flag: getattr(wan_video_dit, flag) for flag in flags}

    def output_only(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args: Any, **kwargs: Any):
        return query.new_empty(*query.shape[:-1], value.shape[-1])

    try:
        for flag in flags:
            setattr(wan_video_dit, flag, False)
        with mock.patch.object(torch.nn.functional, "scaled_dot_product_attention", output_only):
            yield
    finally:
        for flag, value in saved.items():
            setattr(wan_video_dit, flag, value)


def traced_peak(build: Callable[[], torch.nn.Module], inputs: Callable[[torch.nn.Module], dict[str, Any]],
                device: str = "cuda", dtype: torch.dtype = torch.bfloat16) -> dict[str, int]:
    """Bytes of one forward of ``build()`` on ``device`` in ``dtype``, traced on fake tensors (no memory is used and
    no GPU is needed): ``parameters``, and ``peak``, the most the live tensors other than the parameters held at
    once, ``inputs(model)`` included. PyTorch's MemTracker follows every tensor storage as the forward creates and
    frees it; attention is counted as FlashAttention allocates (``flash_attention_memory``)."""
    with FakeTensorMode(), flash_attention_memory(), torch.device(device), default_dtype(dtype):
        model = build().eval()  # trainable parameters: MemTracker classifies tensors by their gradient hooks
        with torch.no_grad():
            arguments = inputs(model)
        tracker = MemTracker()
        tracker.track_external(model, *[value for value in arguments.values() if isinstance(value, torch.Tensor)])
        with tracker, torch.no_grad():
            model(**arguments)
    peak = next(iter(tracker.get_tracker_snapshot("peak").values()))
    parameters = peak[_MemRefType.PARAM]
    return {"parameters": parameters, "peak": peak["Total"] - parameters}


def estimated_full_size_peaks() -> dict[str, float]:
    """Peak GPU bytes of one full-size generation (61 frames 480x720, merged guidance, bf16) by setting, from traced
    forwards: every model's weights plus the DiT's activations (``default``: all models resident, the DiT step is
    the largest stage), and the larger of the text encoder's and the DiT's weights plus their own activations
    (``offload``: one model on the GPU at a time). The tiled VAE decoder keeps its output in CPU memory, the CLIP
    encoder sees one image; neither stage reaches the DiT's peak."""
    channels, frames, height, width = latent_shape("full")

    def dit_inputs(dit: torch.nn.Module) -> dict[str, Any]:
        latents = [torch.randn(1, channels, frames, height, width) for _ in range(4)]
        camera = torch.randn(1, OFFICIAL_CONFIG["in_dim_control_adapter"], frames, 8 * height, 8 * width)
        contexts = torch.randn(2, TEXT_TOKENS, OFFICIAL_CONFIG["text_dim"])  # merged guidance: both prompts
        return {"x": latents[0], "depth_latents": latents[1], "y": latents[2], "depth_y": latents[3],
                "timestep": torch.full((1,), 500.0), "context": contexts, "clip_feature": torch.randn(1, 257, 1280),
                "camera_embedding": dit.embed_camera(camera)}

    def text_inputs(encoder: torch.nn.Module) -> dict[str, Any]:
        return {"ids": torch.randint(0, 256000, (1, TEXT_TOKENS)), "mask": torch.ones(1, TEXT_TOKENS, dtype=torch.long)}

    dit = traced_peak(lambda: DualCamCtrlDiT(**OFFICIAL_CONFIG), dit_inputs)
    text = traced_peak(WanTextEncoder, text_inputs)
    with torch.device("meta"), default_dtype(torch.bfloat16):
        others = sum(p.numel() * p.element_size() for model in (WanImageEncoder(), WanVideoVAE())
                     for p in model.parameters())
    return {
        "default": dit["parameters"] + text["parameters"] + others + dit["peak"],
        "offload": max(text["parameters"] + text["peak"], dit["parameters"] + dit["peak"]),
        "dit_activations": dit["peak"],
    }


def estimate_rows() -> list[Row]:
    """One row per setting: the full-size GPU peak of ``estimated_full_size_peaks`` against its goal."""
    peaks = estimated_full_size_peaks()
    rows = []
    for setting, what in (("default", "all models on the device"), ("offload", "--offload")):
        rows.append(Row(
            benchmark=f"peak GPU memory of one generation, {what} (full models, {VIDEO['full'][0]} frames "
                      f"{VIDEO['full'][1]}x{VIDEO['full'][2]}, bf16), estimated by tracing on fake tensors",
            measured=(f"{peaks[setting] / 1e9:.1f} GB estimated (DiT activations {peaks['dit_activations'] / 1e9:.2f} "
                      f"GB; goal {GOAL_GB[setting]:g} GB, measured by --device cuda)"),
            baseline="-", ratio=float("nan"), target="report", met=None, device="cpu (traced cuda bfloat16)",
        ))
    return rows


def run(device: str = "cpu", dtype: str | None = None, size: str | None = None, steps: int = 2,
        estimate: bool = False) -> list[Row]:
    """One row per setting (default, ``--offload``): the peak memory of one generation; with ``estimate``, also
    the traced full-size GPU estimate of each setting (``estimate_rows``)."""
    torch_device, torch_dtype, _ = resolve(device, dtype, None)
    size = size or ("full" if torch_device.type == "cuda" else "tiny")
    if size not in VIDEO:
        raise ValueError(f"--size for the memory benchmark: 'tiny' or 'full', got {size!r}")
    if size == "full" and torch_device.type != "cuda":
        raise ValueError("the full-size memory benchmark measures GPU memory: give --device cuda (the CPU runs 'tiny')")
    frames, height, width = VIDEO[size]
    label = f"{size} models, {frames} frames {height}x{width}, {steps} steps"
    rows = []
    for setting, offload in (("default", False), ("offload", True)):
        result = measure(size, torch_device, torch_dtype, offload, steps)
        if torch_device.type == "cuda":  # the pipeline is gone: free its blocks before the next setting
            gc.collect()
            torch.cuda.empty_cache()
        what = "all models on the device" if setting == "default" else "--offload"
        if torch_device.type == "cuda":
            measured = (f"{gib(result['peak'])} allocated at peak ({result['peak'] / 1e9:.1f} GB; weights on the "
                        f"GPU at the start {gib(result['start'])}, reserved {gib(result['reserved'])})")
            goal = GOAL_GB[setting]
            target, met = f"<= {goal:g} GB", result["peak"] <= goal * 1e9
        else:
            measured = f"{gib(result['peak'])} resident-set rise"
            target, met = "report", None
        rows.append(Row(
            benchmark=f"peak memory of one generation, {what} ({label})", measured=measured, baseline="-",
            ratio=float("nan"), target=target, met=met, device=f"{torch_device.type} {torch_dtype}",
        ))
    return rows + (estimate_rows() if estimate else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                        help="default: float32 on the CPU, bfloat16 on a GPU")
    parser.add_argument("--size", choices=sorted(VIDEO), default=None,
                        help="default: full on a GPU, tiny on the CPU")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--estimate", action="store_true",
                        help="also estimate the full-size GPU peaks by tracing on fake tensors (no GPU needed)")
    args = parser.parse_args()
    for row in run(args.device, args.dtype, args.size, args.steps, estimate=args.estimate):
        print(row.report())


if __name__ == "__main__":
    main()
