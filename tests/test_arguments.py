"""The generation arguments declared once (``GenerationArguments``): the call's signature, the checker, params.json,
and a new argument added in one place (the walkthrough of docs/arguments.md)."""
from __future__ import annotations

import dataclasses
import inspect
import json

import pytest
import torch
from diffsynth.diffusion.base_pipeline import PipelineUnit

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.models import TINY_CONFIG, DualCamCtrlDiT
from diffsynth_dualcam.models.config import CONFIG_DEFAULTS, REQUIRED_KEYS, DiTConfig, normalize_config
from diffsynth_dualcam.pipeline import DualCamCtrlPipeline
from diffsynth_dualcam.pipeline.arguments import GenerationArguments, argument
from diffsynth_dualcam.pipeline.inputs import check_number
from diffsynth_dualcam.pipeline.tiny import tiny_pipeline
from diffsynth_dualcam.world import generate_long

#: The pipeline call's arguments and defaults as they were written out by hand before they were declared once.
HAND_WRITTEN_CALL = {
    "prompt": inspect.Parameter.empty, "negative_prompt": "", "input_image": None, "input_depth": None,
    "camera": None, "height": 480, "width": 720, "num_frames": 61, "num_inference_steps": 50, "cfg_scale": 6.0,
    "seed": None, "tiled": True, "t2v": False, "cfg_merge": True, "progress_bar_cmd": "tqdm",
    "resample_camera": False, "sigma_shift": 5.0, "tile_size": (30, 52), "tile_stride": (15, 26),
    "step_cache_threshold": None,
}
SMALL = {"height": 32, "width": 48, "num_frames": 5, "num_inference_steps": 1, "seed": 1, "t2v": True,
         "progress_bar_cmd": lambda steps: steps}


def check_grain(name: str, value: object) -> float:
    """A check of the new argument: a number in [0, 1]."""
    value = check_number(name, value)
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


# The walkthrough: the new argument is declared in this one place, with its default, check and record.
@dataclasses.dataclass(frozen=True)
class GrainArguments(GenerationArguments):
    grain: float = argument(0.0, check=check_grain, record=float)


class GrainUnit(PipelineUnit):
    """A unit reading the new argument from the pipeline inputs (where a real one would use it)."""

    def __init__(self) -> None:
        super().__init__(input_params=("grain",), output_params=())
        self.seen: list[object] = []

    def process(self, pipe: DualCamCtrlPipeline, grain: float) -> dict:
        self.seen.append(grain)
        return {}


class GrainPipeline(DualCamCtrlPipeline):
    arguments_class = GrainArguments


@pytest.fixture(scope="module")
def pipe() -> DualCamCtrlPipeline:
    return tiny_pipeline(seed=0)


@pytest.fixture(scope="module")
def grain_pipe(pipe) -> GrainPipeline:
    grain_pipe = GrainPipeline(device="cpu", torch_dtype=torch.float32)
    for name in ("dit", "vae", "text_encoder", "image_encoder", "tokenizer", "model_source"):
        setattr(grain_pipe, name, getattr(pipe, name))
    grain_pipe.units.append(GrainUnit())
    return grain_pipe


def test_the_call_signature_lists_the_declared_arguments_with_their_defaults(pipe):
    parameters = inspect.signature(pipe.__call__).parameters
    assert list(parameters) == list(HAND_WRITTEN_CALL)
    for name, default in HAND_WRITTEN_CALL.items():
        if name == "progress_bar_cmd":
            assert parameters[name].default.__name__ == "tqdm"
        else:
            assert parameters[name].default == default, name
    assert list(inspect.signature(DualCamCtrlPipeline.__call__).parameters)[0] == "self"
    assert "cfg_scale" in pipe.__call__.__doc__


def test_the_call_binds_like_a_written_out_signature(pipe):
    with pytest.raises(TypeError, match="grain"):
        pipe(prompt="a", grain=0.5)
    with pytest.raises(TypeError, match="prompt"):
        pipe(negative_prompt="a")
    by_position = GenerationArguments.from_call("a", "b", None, None, None, 64)
    assert (by_position.prompt, by_position.negative_prompt, by_position.height) == ("a", "b", 64)


def test_checked_arguments_are_plain_values_and_recorded_from_the_fields():
    import numpy as np

    camera = CameraTrajectory.preset("pan_left", num_frames=5)
    arguments = GenerationArguments(prompt="p", camera=camera, height=np.int64(64), cfg_scale=np.float32(2.5),
                                    tile_size=[4, 6], tile_stride=(2, 3), seed=np.int32(9))
    checked = arguments.checked()
    assert type(checked.height) is int and type(checked.cfg_scale) is float and checked.tile_size == (4, 6)
    assert checked.record() == {
        "prompt": "p", "negative_prompt": "", "input_image": None, "input_depth": None, "height": 64, "width": 720,
        "num_frames": 61, "num_inference_steps": 50, "cfg_scale": 2.5, "seed": 9, "tiled": True, "t2v": False,
        "cfg_merge": True, "resample_camera": False, "sigma_shift": 5.0, "tile_size": [4, 6], "tile_stride": [2, 3],
    }
    with pytest.raises(ValueError, match="tile_stride must be smaller"):
        GenerationArguments(prompt="p", camera=camera, tile_size=(4, 6), tile_stride=(4, 3)).checked()


def test_a_new_argument_declared_once_reaches_the_signature_the_checker_the_units_and_params_json(grain_pipe,
                                                                                                 tmp_path):
    parameters = inspect.signature(grain_pipe.__call__).parameters
    assert list(parameters)[-1] == "grain" and parameters["grain"].default == 0.0
    camera = CameraTrajectory.preset("pan_left", num_frames=5)
    with pytest.raises(ValueError, match="grain must be in \\[0, 1\\], got 2"):
        grain_pipe(prompt="a", camera=camera, grain=2, **SMALL)
    with pytest.raises(TypeError, match="grain must be a number"):
        grain_pipe(prompt="a", camera=camera, grain="coarse", **SMALL)
    assert grain_pipe.units[-1].seen == []  # refused by the checker, before any later unit ran

    output = grain_pipe(prompt="a", camera=camera, grain=0.25, **SMALL)
    assert grain_pipe.units[-1].seen == [0.25]
    output.save(tmp_path / "run")
    params = json.loads((tmp_path / "run" / "params.json").read_text())
    assert params["grain"] == 0.25 and params["width"] == 48 and params["height"] == 32


def test_generate_long_forwards_the_declared_arguments_and_checks_them_first(grain_pipe):
    camera = CameraTrajectory.preset("pan_left", num_frames=9)
    with pytest.raises(ValueError, match="grain must be in"):
        generate_long(grain_pipe, prompt="a", camera=camera, chunk_frames=5, grain=-1, **{**SMALL, "num_frames": 9})
    grain_pipe.units[-1].seen.clear()
    output = generate_long(grain_pipe, prompt="a", camera=camera, chunk_frames=5, grain=0.5,
                           **{**SMALL, "num_frames": 9})
    assert grain_pipe.units[-1].seen == [0.5, 0.5]  # every clip got it
    assert output.params["grain"] == 0.5 and [clip["frames"] for clip in output.params["clips"]] == [[0, 4], [4, 8]]


# ---- the DiT config, declared once --------------------------------------------------------------------------------


def test_the_dit_config_keys_and_defaults_come_from_one_declaration():
    declared = {item.name: item.default for item in dataclasses.fields(DiTConfig)}
    assert REQUIRED_KEYS == tuple(name for name, default in declared.items() if default is dataclasses.MISSING)
    assert CONFIG_DEFAULTS == {name: default for name, default in declared.items() if name not in REQUIRED_KEYS}
    parameters = inspect.signature(DualCamCtrlDiT).parameters
    assert list(parameters) == list(declared)
    assert all(parameters[name].default == CONFIG_DEFAULTS[name] for name in CONFIG_DEFAULTS)


def test_the_dit_records_the_config_it_was_built_from():
    short = {key: value for key, value in TINY_CONFIG.items() if key in REQUIRED_KEYS}
    with torch.device("meta"):
        dit = DualCamCtrlDiT(**short)
    assert dit.config == normalize_config(short)
    assert (dit.config["rgb_inject_blocks"], dit.config["update"], dit.config["text_len"]) == ([], False, 512)
    with pytest.raises(TypeError, match="num_heads"):
        DualCamCtrlDiT(**{key: value for key, value in short.items() if key != "num_heads"})


def test_generate_called_directly_tracks_no_gradients():
    pipe = tiny_pipeline()
    arguments = GenerationArguments(prompt="a", t2v=True, camera=CameraTrajectory.preset("pan_left", num_frames=5),
                                    height=32, width=48, num_frames=5, num_inference_steps=1, seed=0,
                                    progress_bar_cmd=lambda steps: steps)
    pipe.dit.requires_grad_(True)  # as in training, where validation calls the pipeline
    output = pipe.generate(arguments)
    assert not output.latents.requires_grad and not output.depth_latents.requires_grad
