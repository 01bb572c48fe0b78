"""The generation arguments of ``DualCamCtrlPipeline``, declared once.

``GenerationArguments`` lists every argument of the pipeline call as a field carrying its type, its default, the
check it gets before any model runs and how ``params.json`` records it. The call's signature, the input checker
(``units.DualCamUnit_InputChecker``), the pipeline inputs the units read and ``params.json`` are all derived from
it, and ``generate_long`` forwards the same fields to each clip. docs/arguments.md walks through adding one.
"""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from PIL import Image
from tqdm import tqdm

from .. import limits
from ..camera import CameraTrajectory
from ..models.config import fields_signature
from .inputs import (
    check_camera_type,
    check_flag,
    check_guidance,
    check_non_negative_or_none,
    check_num_frames,
    check_positive_number,
    check_progress_bar,
    check_prompt,
    check_seed,
    check_side,
    check_steps,
    check_tile_pair,
    check_tile_stride,
    image_digest,
)

if TYPE_CHECKING:  # the arguments are checked before torch loads
    import torch

#: A field's check: ``check(name, value)`` returns the value as the pipeline uses it or raises naming ``name``.
Check = Callable[[str, Any], Any]
#: How ``params.json`` records a (checked) value: a JSON-ready value.
Record = Callable[[Any], Any]


def argument(default: Any = dataclasses.MISSING, *, check: Check | None = None, record: Record | None = None) -> Any:
    """A field of ``GenerationArguments``: its ``default``, the ``check`` run on it before any model runs (None:
    checked with other arguments by the input checker) and ``record``, how params.json records it (None: not
    recorded under its own name)."""
    return dataclasses.field(default=default, metadata={"check": check, "record": record})


def same(value: Any) -> Any:
    """Record a value as it is (strings, flags)."""
    return value


def int_pair(value: tuple[int, int]) -> list[int]:
    """Record a pair of ints as a JSON list."""
    return [int(item) for item in value]


@dataclasses.dataclass(frozen=True)
class GenerationArguments:
    """The arguments of one generation (``DualCamCtrlPipeline.__call__``).

    Args:
        prompt / negative_prompt: text for the positive and negative guidance branches.
        input_image / input_depth: first frame and its 8-bit disparity map (near = bright), image-to-video.
            Both are scaled to cover height x width and centre-cropped.
        camera: a ``CameraTrajectory`` (made relative, cover-cropped from its ``source_size`` or else the input
            image's size) or packed Plücker maps [24, T, H, W] / [1, 24, T, H, W]. A trajectory is followed frame
            by frame (its first ``num_frames`` cameras; a shorter one is refused) unless ``resample_camera``,
            which stretches the whole path over ``num_frames`` (slerp / lerp).
        height, width: multiples of 16. num_frames: 4k + 1.
        cfg_scale: standard guidance ``nega + cfg_scale * (posi - nega)`` on both branches; 6.0 is the look of
            the published demo. cfg_merge: run both guidance branches as one batched DiT call.
        seed: seeds the one noise draw shared by both branches (a random seed is drawn and recorded if None).
        tiled: tiled VAE decoding. tile_size / tile_stride: (height, width) in latent pixels, the order DiffSynth's
            ``WanVideoVAE`` takes them in; positive, each stride smaller than its size (neighbouring tiles are
            blended over their overlap).
        progress_bar_cmd: wraps the iterable of denoising steps (``tqdm`` by default; ``lambda steps: steps``
            for none).
        t2v: text-to-video: no image, zero conditioning latents, CLIP of a black image.
        step_cache_threshold: skip the DiT blocks of steps whose modulated input changed less than this in
            total since the last computed step (``diffsynth_dualcam.models.step_cache.StepCache``); None computes all.
    """

    #: Fields that live in the positive / negative guidance inputs (DiffSynth's units read them there).
    positive_names: ClassVar[tuple[str, ...]] = ("prompt",)
    negative_names: ClassVar[tuple[str, ...]] = ("negative_prompt",)

    prompt: str = argument(check=check_prompt, record=same)
    negative_prompt: str = argument("", check=check_prompt, record=same)
    # Images and camera are checked together (t2v, the depth estimator, aspect ratios) by the input checker.
    input_image: Image.Image | None = argument(None, record=image_digest)
    input_depth: Image.Image | None = argument(None, record=image_digest)
    camera: CameraTrajectory | torch.Tensor | None = argument(None, check=check_camera_type)
    height: int = argument(480, check=check_side, record=int)
    width: int = argument(720, check=check_side, record=int)
    num_frames: int = argument(61, check=lambda name, value: check_num_frames(value), record=int)
    num_inference_steps: int = argument(50, check=check_steps, record=int)
    cfg_scale: float = argument(6.0, check=check_guidance, record=float)
    seed: int | None = argument(None, check=lambda name, value: check_seed(value), record=same)
    tiled: bool = argument(True, check=check_flag, record=same)
    t2v: bool = argument(False, check=check_flag, record=same)
    cfg_merge: bool = argument(True, check=check_flag, record=same)
    progress_bar_cmd: Callable = argument(tqdm, check=check_progress_bar)
    resample_camera: bool = argument(False, check=check_flag, record=same)
    sigma_shift: float = argument(5.0, check=check_positive_number, record=float)
    tile_size: tuple[int, int] = argument((30, 52), check=check_tile_pair, record=int_pair)
    tile_stride: tuple[int, int] = argument((15, 26), check=check_tile_pair, record=int_pair)
    # Recorded as params.json's step_cache summary (threshold and skipped steps).
    step_cache_threshold: float | None = argument(None, check=check_non_negative_or_none)

    @classmethod
    def signature(cls) -> inspect.Signature:
        """The fields as the parameters of a call, in declaration order, with their defaults."""
        return fields_signature(cls, inspect.Parameter.POSITIONAL_OR_KEYWORD)

    @classmethod
    def from_call(cls, *args: Any, **kwargs: Any) -> GenerationArguments:
        """The arguments of a call as written (positional or keyword); a TypeError names an unknown or missing one."""
        bound = cls.signature().bind(*args, **kwargs)
        return cls(**bound.arguments)

    @classmethod
    def from_inputs(cls, inputs_shared: dict, inputs_posi: dict, inputs_nega: dict) -> GenerationArguments:
        """The arguments back from the pipeline inputs ``pipeline_inputs`` made."""
        values = {}
        for item in dataclasses.fields(cls):
            source = inputs_posi if item.name in cls.positive_names else (
                inputs_nega if item.name in cls.negative_names else inputs_shared)
            values[item.name] = source[item.name]
        return cls(**values)

    def pipeline_inputs(self) -> tuple[dict, dict, dict]:
        """(shared, positive, negative) inputs of DiffSynth's units: the prompts in their guidance branch."""
        shared, posi, nega = {}, {}, {}
        for name, value in self.values().items():
            target = posi if name in self.positive_names else nega if name in self.negative_names else shared
            target[name] = value
        return shared, posi, nega

    def values(self) -> dict[str, Any]:
        """Field name -> value (the values themselves, not copies)."""
        return {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}

    def checked(self) -> GenerationArguments:
        """The arguments as the pipeline uses them (ints, floats, int pairs), each checked by its field's check,
        then ``check_together``; a TypeError / ValueError names the argument refused."""
        values = self.values()
        for item in dataclasses.fields(self):
            check = item.metadata["check"]
            if check is not None:
                values[item.name] = check(item.name, values[item.name])
        checked = dataclasses.replace(self, **values)
        checked.check_together()
        return checked

    def check_together(self) -> None:
        """Checks of several fields at once (after each field's own)."""
        limits.check_clip(self.width, self.height, self.num_frames)
        check_tile_stride(self.tile_size, self.tile_stride)

    def record(self) -> dict[str, Any]:
        """The recorded fields for ``params.json`` (JSON-ready), in declaration order."""
        return {item.name: item.metadata["record"](getattr(self, item.name)) for item in dataclasses.fields(self)
                if item.metadata["record"] is not None}
