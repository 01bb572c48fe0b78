"""Setting up a pipeline: official weights or the tiny random models, device, dtype, offloading, the depth model, and
the sampling defaults of each. ``dualcam generate``, the app, the examples, the demo and training set up through here.

Nothing here imports torch at module level, so that the command line checks its arguments first.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..models.checkpoints import local_official_dit
from ..models.depth_estimator import DEFAULT_DEPTH_MODEL

if TYPE_CHECKING:
    import torch

    from ..models.depth_estimator import DepthEstimator
    from .dualcam import DualCamCtrlPipeline

#: Frames of one clip of the released model: its default length, and the length of a chain's clips.
CLIP_FRAMES = 61
#: (width, height), frames, steps used when a value is not given: the official model's, and the tiny model's
#: (small enough for a CPU).
OFFICIAL_DEFAULTS = {"size": (720, 480), "frames": CLIP_FRAMES, "steps": 50}
TINY_DEFAULTS = {"size": (96, 64), "frames": 9, "steps": 3}
TINY_NOTICE = """\
=====================================================================================================
 NOTICE: {reason}
 Using TINY RANDOM models: the output shows that the pipeline runs, not what DualCamCtrl generates.
 Put the official weights in {checkpoint_dir}/ (see README, "Official weights") for real results.
=====================================================================================================
"""


def tiny_reason(tiny: bool, checkpoint_dir: str | os.PathLike, checkpoint: str | os.PathLike | None = None) -> str:
    """Why the tiny random models run instead of the official ones (``--tiny``, or no official DiT in
    ``checkpoint_dir`` and no ``checkpoint`` given); empty when the official models run."""
    if tiny:
        return "--tiny was given."
    if checkpoint is None and local_official_dit(checkpoint_dir) is None:
        return f"the official DualCamCtrl weights were not found in {checkpoint_dir}/."
    return ""


def print_tiny_notice(reason: str, checkpoint_dir: str | os.PathLike) -> None:
    """The notice on stderr that the tiny random models run, and why."""
    print(TINY_NOTICE.format(reason=reason, checkpoint_dir=checkpoint_dir), file=sys.stderr)


def check_device(text: str) -> str:
    """``--device`` as torch names it (``cpu`` for any CPU device, which has no index; ``auto``: cuda if available,
    else cpu), or a ValueError unless it names a torch device that is present (cpu, cuda, cuda:1, mps, ...)."""
    import torch

    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device: {text!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cpu":
        return "cpu"
    module = getattr(torch, device.type, None)
    if not (hasattr(module, "is_available") and module.is_available()):
        raise ValueError(f"--device {text}: no {device.type} device is available on this machine (try --device cpu)")
    count = module.device_count() if hasattr(module, "device_count") else None
    if device.index is not None and count is not None and device.index >= count:
        raise ValueError(f"--device {text}: this machine has {count} {device.type} device(s), numbered from 0")
    return str(device)


def inference_dtype(device: str | torch.device) -> torch.dtype:
    """The dtype the official models run in: bfloat16 on any accelerator, float32 on the CPU."""
    import torch

    return torch.bfloat16 if torch.device(device).type != "cpu" else torch.float32


def offload_fields(device: str | torch.device, torch_dtype: torch.dtype) -> dict[str, Any]:
    """``ModelConfig`` fields that keep the models in CPU memory and move each to ``device`` only while it runs."""
    return {"offload_device": "cpu", "offload_dtype": torch_dtype, "onload_device": "cpu",
            "onload_dtype": torch_dtype, "preparing_device": device, "preparing_dtype": torch_dtype,
            "computation_device": device, "computation_dtype": torch_dtype}


def load_pipeline(
    tiny: bool,
    device: str | torch.device = "cpu",
    checkpoint_dir: str | os.PathLike = "checkpoints",
    checkpoint: str | os.PathLike | None = None,
    offload: bool = False,
) -> DualCamCtrlPipeline:
    """The tiny random pipeline, or the official one (``checkpoint`` replacing the DiT of ``checkpoint_dir``) on
    ``device`` in :func:`inference_dtype`, its models offloaded to the CPU between uses when ``offload``."""
    if tiny:
        from .tiny import tiny_pipeline

        return tiny_pipeline(device=device)
    from .dualcam import DualCamCtrlPipeline, official_model_configs

    torch_dtype = inference_dtype(device)
    fields = offload_fields(device, torch_dtype) if offload else {}
    model_configs = official_model_configs(Path(checkpoint_dir), dit_path=checkpoint, **fields)
    return DualCamCtrlPipeline.from_pretrained(model_configs, device=device, torch_dtype=torch_dtype)


def load_depth_estimator(
    model: str | None, tiny: bool, device: str | torch.device = "cpu", why: str = "", remedy: str = ""
) -> DepthEstimator:
    """The depth model for a first frame without a depth map: ``model``, else the default one (the tiny random one
    on the tiny pipeline); a ValueError (``why``, the failure, ``remedy``) when it cannot be loaded."""
    if model is None and tiny:
        from .tiny import tiny_depth_estimator

        return tiny_depth_estimator(device=device)
    from ..models.depth_estimator import DepthEstimator

    model = model or DEFAULT_DEPTH_MODEL
    try:
        return DepthEstimator.from_pretrained(model, device=device)
    except OSError as error:
        raise ValueError(f"{why}the depth model {model!r} could not be loaded ({error}); {remedy}") from error
