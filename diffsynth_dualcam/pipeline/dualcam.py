"""``DualCamCtrlPipeline``: camera-controlled image-to-video (or text-to-video) with a co-generated depth video."""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from diffsynth.core import ModelConfig
from diffsynth.core.device.npu_compatible_device import get_device_type
from diffsynth.diffusion import FlowMatchScheduler
from diffsynth.diffusion.base_pipeline import BasePipeline
from diffsynth.models.wan_video_text_encoder import HuggingfaceTokenizer
from PIL import Image

from ..camera import CameraTrajectory
from ..models import DualCamCtrlDiT
from ..models.registry import register_checkpoint
from ..models.step_cache import StepCache
from . import units
from .arguments import GenerationArguments
from .compat import patch_torch_cpu
from .output import DualCamCtrlOutput

patch_torch_cpu()

DEFAULT_DEVICE = get_device_type()

#: Where the text encoder, VAE, image encoder and tokenizer of the official setup come from.
BASE_MODEL_ID = "PAI/Wan2.1-Fun-V1.1-1.3B-Control-Camera"
BASE_MODEL_FILES = {
    "text_encoder": "models_t5_umt5-xxl-enc-bf16.pth",
    "vae": "Wan2.1_VAE.pth",
    "image_encoder": "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth",
}
TOKENIZER_FILES = "google/umt5-xxl/"
TOKENIZER_LENGTH = 512
#: Names of the base model files in error messages.
BASE_MODEL_LABELS = {
    BASE_MODEL_FILES["text_encoder"]: "text encoder (umT5)", BASE_MODEL_FILES["vae"]: "VAE",
    BASE_MODEL_FILES["image_encoder"]: "image encoder (CLIP)", TOKENIZER_FILES: "tokenizer (umT5)",
}
#: ``params.json``'s ``models`` entry of a pipeline whose models were not loaded by ``from_pretrained``.
DIRECT_MODEL_SOURCE = "models set on the pipeline directly (not loaded from files by from_pretrained)"
#: DiffSynth model names under which ``ModelPool`` files each component.
MODEL_NAMES = {
    "dit": "dualcamctrl_dit",
    "text_encoder": "wan_video_text_encoder",
    "vae": "wan_video_vae",
    "image_encoder": "wan_video_image_encoder",
}


def official_model_configs(
    checkpoint_dir: str | os.PathLike = "checkpoints", dit_path: str | os.PathLike | None = None, **offload: Any
) -> list[ModelConfig]:
    """``ModelConfig``s of the official setup: the DiT (``dit_path``, else the official one from ``checkpoint_dir``,
    converted from the released ``.pt`` if needed) and the umT5 / VAE / CLIP files of ``BASE_MODEL_ID``.
    ``offload`` goes to every ``ModelConfig`` (``offload_device``, ``offload_dtype``, ...)."""
    from ..models.checkpoints import official_dit_path

    dit_path = official_dit_path(checkpoint_dir) if dit_path is None else dit_path
    register_checkpoint(dit_path)
    configs = [ModelConfig(path=str(dit_path), **offload)]
    for file_name in BASE_MODEL_FILES.values():
        configs.append(ModelConfig(model_id=BASE_MODEL_ID, origin_file_pattern=file_name, **offload))
    return configs


def locate_model_files(config: ModelConfig) -> str | None:
    """Set ``config.path`` to its local file(s), downloading them if DiffSynth's downloader is to; None when they
    exist, else what is missing and where it was looked for."""
    config.download_if_necessary()
    paths = config.path if isinstance(config.path, list) else [config.path]
    if paths and all(os.path.exists(path) for path in paths):
        return None
    if config.model_id is None:
        missing = [path for path in paths if not os.path.exists(path)]
        return str(missing[0]) if missing else "ModelConfig(path=[]) (no file named)"
    pattern = config.origin_file_pattern
    label = BASE_MODEL_LABELS.get(pattern, "model file") if isinstance(pattern, str) else "model files"
    folder = os.path.join(config.local_model_path, config.model_id)
    return f"{label} {pattern!r} of {config.model_id} (looked for in {folder})"


def missing_files_error(missing: list[tuple[ModelConfig, str]]) -> FileNotFoundError:
    """The error listing the files ``locate_model_files`` did not find, with how to get them."""
    message = "model files not found: " + "; ".join(description for _, description in missing)
    hub_configs = [config for config, _ in missing if config.model_id is not None]
    if any(config.parse_skip_download() for config in hub_configs):
        message += (
            ". DIFFSYNTH_SKIP_DOWNLOAD=true turns the download off: unset it to download them (from ModelScope, or "
            "Hugging Face with DIFFSYNTH_DOWNLOAD_SOURCE=huggingface), or put them there yourself "
            "(DIFFSYNTH_MODEL_BASE_PATH names the folder holding <model id>/, default ./models)"
        )
    elif hub_configs:
        message += ". The download found no file matching these names in the model repository"
    return FileNotFoundError(message)


def model_fn_dualcamctrl(
    dit: DualCamCtrlDiT,
    latents: torch.Tensor,
    depth_latents: torch.Tensor,
    timestep: torch.Tensor,
    context: torch.Tensor,
    clip_feature: torch.Tensor,
    y: torch.Tensor,
    depth_y: torch.Tensor,
    camera_embedding: torch.Tensor,
    use_gradient_checkpointing: bool = False,
    use_gradient_checkpointing_offload: bool = False,
    step_cache: StepCache | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DiT call: velocities (RGB, depth) of the context's batch (2 with merged CFG; inputs of batch 1 are
    shared by both halves, so the DiT runs their batch-independent part once)."""
    return dit(
        latents, depth_latents, timestep, context, clip_feature=clip_feature, y=y, depth_y=depth_y,
        camera_embedding=camera_embedding, use_gradient_checkpointing=use_gradient_checkpointing,
        use_gradient_checkpointing_offload=use_gradient_checkpointing_offload, step_cache=step_cache,
    )


def absolute_paths(path: str | list[str]) -> str | list[str]:
    """A model path (or the list of a sharded model's paths) made absolute, for ``params.json``."""
    return [os.path.abspath(item) for item in path] if isinstance(path, list) else os.path.abspath(path)


def signed_call(arguments_class: type[GenerationArguments]) -> Callable[..., DualCamCtrlOutput]:
    """A pipeline ``__call__`` whose signature and docstring are those of ``arguments_class``'s fields."""

    def __call__(self: DualCamCtrlPipeline, *args: Any, **kwargs: Any) -> DualCamCtrlOutput:
        return self.generate(self.arguments_class.from_call(*args, **kwargs))

    signature = arguments_class.signature()
    self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    __call__.__signature__ = signature.replace(parameters=[self_parameter, *signature.parameters.values()],
                                               return_annotation="DualCamCtrlOutput")
    __call__.__doc__ = ("Generate a clip and its depth video; the arguments are the fields of "
                        f"``{arguments_class.__name__}``, positional in that order or by keyword.\n\n"
                        + inspect.cleandoc(arguments_class.__doc__ or ""))
    return __call__


class DualCamCtrlPipeline(BasePipeline):
    """DualCamCtrl sampling on DiffSynth's pipeline machinery: Wan's VAE, umT5, CLIP and flow-matching scheduler
    around the dual-branch DiT. ``depth_estimator`` (image -> 8-bit disparity image) fills in a missing depth map.

    ``arguments_class`` declares the call's arguments (``GenerationArguments``); a subclass naming another one gets a
    call with that signature (see docs/arguments.md).
    """

    arguments_class: type[GenerationArguments] = GenerationArguments

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "arguments_class" in vars(cls) and "__call__" not in vars(cls):
            cls.__call__ = signed_call(cls.arguments_class)

    def __init__(self, device: str | torch.device = DEFAULT_DEVICE, torch_dtype: torch.dtype = torch.bfloat16):
        super().__init__(
            device=device, torch_dtype=torch_dtype, height_division_factor=16, width_division_factor=16,
            time_division_factor=4, time_division_remainder=1,
        )
        self.scheduler = FlowMatchScheduler("Wan")
        self.tokenizer: HuggingfaceTokenizer | None = None
        self.text_encoder: torch.nn.Module | None = None
        self.image_encoder: torch.nn.Module | None = None
        self.vae: torch.nn.Module | None = None
        self.dit: DualCamCtrlDiT | None = None
        self.depth_estimator: Callable[[Image.Image], Image.Image] | None = None
        #: What ``params.json`` records as the models: the files per component (set by ``from_pretrained``) or a
        #: description of where they came from.
        self.model_source: str | dict[str, Any] = DIRECT_MODEL_SOURCE
        self.in_iteration_models = ("dit",)
        self.units = [
            units.DualCamUnit_InputChecker(),
            units.DualCamUnit_CameraPacker(),
            units.DualCamUnit_DepthEstimator(),
            units.DualCamUnit_NoiseInitializer(),
            units.DualCamUnit_PromptEmbedder(),
            units.DualCamUnit_ImageEmbedderCLIP(),
            units.DualCamUnit_ImageEmbedderVAE(),
            units.DualCamUnit_CameraEmbedder(),
            units.DualCamUnit_StepCache(),
            units.DualCamUnit_CfgMerger(),
        ]
        self.model_fn = model_fn_dualcamctrl
        self.compilable_models = ["dit"]

    @staticmethod
    def from_pretrained(
        model_configs: list[ModelConfig] | None = None,
        tokenizer_config: ModelConfig | None = None,
        device: str | torch.device = DEFAULT_DEVICE,
        torch_dtype: torch.dtype = torch.bfloat16,
        vram_limit: float | None = None,
        checkpoint_dir: str | os.PathLike = "checkpoints",
    ) -> DualCamCtrlPipeline:
        """Load the models through DiffSynth's downloader and model detection.

        ``model_configs=None`` is the official setup (see ``official_model_configs``); DiT files other than the
        official layout must be registered first (``diffsynth_dualcam.register_checkpoint``). ``ModelConfig(path=...)``
        entries are used as they are, offline; ``model_id`` entries are downloaded unless
        ``DIFFSYNTH_SKIP_DOWNLOAD=true``. Every file is located (downloaded) before any is loaded, and a missing one
        is named with the folder it was looked for in. Offloading follows each ``ModelConfig``'s offload fields and
        ``vram_limit`` (GB); the DiT's depth branch and fusion modules are offloaded with it. ``pipe.model_source``
        records the file of each component for ``params.json``.
        """
        model_configs = official_model_configs(checkpoint_dir) if model_configs is None else model_configs
        if tokenizer_config is None:
            tokenizer_config = ModelConfig(model_id=BASE_MODEL_ID, origin_file_pattern=TOKENIZER_FILES)
        missing = [(config, description) for config in (*model_configs, tokenizer_config)
                   if (description := locate_model_files(config)) is not None]
        if missing:
            raise missing_files_error(missing)
        pipe = DualCamCtrlPipeline(device=device, torch_dtype=torch_dtype)
        model_pool = pipe.download_and_load_models(model_configs, vram_limit)
        model_source = {}
        for attribute, model_name in MODEL_NAMES.items():
            model = model_pool.fetch_model(model_name)
            if model is None:
                raise ValueError(
                    f"no {model_name} among the model files {[config.path for config in model_configs]}: the "
                    f"pipeline needs a DiT, text encoder, VAE and image encoder"
                )
            setattr(pipe, attribute, model)
            model_source[attribute] = absolute_paths(model_pool.model_path[model_pool.model_name.index(model_name)])
        from ..models.checkpoints import check_finite_weights

        check_finite_weights(pipe.dit.state_dict().items(), f"the DiT {model_source['dit']}")
        pipe.tokenizer = HuggingfaceTokenizer(name=tokenizer_config.path, seq_len=TOKENIZER_LENGTH, clean="whitespace")
        model_source["tokenizer"] = absolute_paths(tokenizer_config.path)
        pipe.model_source = model_source
        pipe.vram_management_enabled = pipe.check_vram_management_state()
        return pipe

    __call__ = signed_call(GenerationArguments)

    @torch.no_grad()
    def generate(self, arguments: GenerationArguments) -> DualCamCtrlOutput:
        """Generate a clip and its depth video from ``arguments`` (checked by the first unit before any model runs)."""
        inputs_shared, inputs_posi, inputs_nega = arguments.pipeline_inputs()
        for unit in self.units:
            inputs_shared, inputs_posi, inputs_nega = self.unit_runner(unit, self, inputs_shared, inputs_posi,
                                                                       inputs_nega)
        checked = self.arguments_class.from_inputs(inputs_shared, inputs_posi, inputs_nega)

        self.scheduler.set_timesteps(checked.num_inference_steps, shift=checked.sigma_shift)
        self.load_models_to_device(self.in_iteration_models)
        models = {name: getattr(self, name) for name in self.in_iteration_models}
        for progress_id, timestep in enumerate(checked.progress_bar_cmd(self.scheduler.timesteps)):
            timestep = timestep.unsqueeze(0).to(dtype=self.torch_dtype, device=self.device)
            velocity, depth_velocity = self.guided_velocity(models, checked.cfg_scale, checked.cfg_merge, timestep,
                                                            inputs_shared, inputs_posi, inputs_nega)
            step_timestep = self.scheduler.timesteps[progress_id]
            inputs_shared["latents"] = self.scheduler.step(velocity, step_timestep, inputs_shared["latents"])
            inputs_shared["depth_latents"] = self.scheduler.step(depth_velocity, step_timestep,
                                                                 inputs_shared["depth_latents"])

        self.load_models_to_device(["vae"])
        decode = {"device": self.device, "tiled": checked.tiled, "tile_size": checked.tile_size,
                  "tile_stride": checked.tile_stride}
        video = self.vae_output_to_video(self.vae.decode(inputs_shared["latents"], **decode))
        depth_video = self.depth_output_to_video(self.vae.decode(inputs_shared["depth_latents"], **decode))
        self.load_models_to_device([])
        trajectory = inputs_shared["trajectory"]
        camera_tensor = None if trajectory is not None else inputs_shared["camera_latents"].detach().cpu()
        # The images as given (their digests identify the inputs), the other values as checked, the seed as drawn.
        recorded = dataclasses.replace(checked, input_image=arguments.input_image, input_depth=arguments.input_depth)
        params = {
            **recorded.record(),
            "depth_estimated": not checked.t2v and arguments.input_depth is None,
            "camera": self.camera_description(arguments.camera, trajectory, camera_tensor),
            "step_cache": self.step_cache_summary(inputs_posi, inputs_nega),
            "models": copy.deepcopy(self.model_source), "dit_config": getattr(self.dit, "config", None),
            "torch_dtype": str(self.torch_dtype).replace("torch.", ""),
        }
        return DualCamCtrlOutput(
            video=video, depth_video=depth_video, latents=inputs_shared["latents"].cpu(),
            depth_latents=inputs_shared["depth_latents"].cpu(), params=params, trajectory=trajectory,
            input_image=inputs_shared["input_image"], input_depth=inputs_shared["input_depth"],
            camera_tensor=camera_tensor,
        )

    def guided_velocity(
        self,
        models: dict[str, torch.nn.Module],
        cfg_scale: float,
        cfg_merge: bool,
        timestep: torch.Tensor,
        inputs_shared: dict,
        inputs_posi: dict,
        inputs_nega: dict,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Guided (RGB, depth) velocities: ``nega + cfg_scale * (posi - nega)`` on each branch.

        Evaluated as ``posi + (cfg_scale - 1) * (posi - nega)``, the reference's form, so that float rounding
        matches it too.
        """
        posi = self.model_fn(**models, **inputs_shared, **inputs_posi, timestep=timestep)
        if cfg_scale == 1.0:
            return posi
        if cfg_merge:
            pairs = [velocity.chunk(2, dim=0) for velocity in posi]
        else:
            nega = self.model_fn(**models, **inputs_shared, **inputs_nega, timestep=timestep)
            pairs = list(zip(posi, nega))
        rgb, depth = (p + (cfg_scale - 1.0) * (p - n) for p, n in pairs)
        return rgb, depth

    @staticmethod
    def step_cache_summary(inputs_posi: dict, inputs_nega: dict) -> dict[str, Any] | None:
        """Threshold and skip counts of the step cache of the positive (or merged) stream, with the negative
        stream's under ``negative`` when it ran separately; None without a cache."""
        cache, negative_cache = inputs_posi.get("step_cache"), inputs_nega.get("step_cache")
        if cache is None:
            return None
        summary = cache.summary()
        if negative_cache is not None and negative_cache is not cache and negative_cache.computed:
            summary["negative"] = negative_cache.summary()
        return summary

    def depth_output_to_video(self, vae_output: torch.Tensor) -> list[Image.Image]:
        """Decoded depth [1, 3, F, H, W] in [-1, 1] -> single-channel PIL frames (mean over the RGB channels)."""
        depth = ((vae_output[0].float().mean(dim=0) + 1) * 127.5).clip(0, 255).round()
        return [Image.fromarray(frame) for frame in depth.to(torch.uint8).cpu().numpy()]

    @staticmethod
    def camera_description(
        camera: CameraTrajectory | torch.Tensor, trajectory: CameraTrajectory | None,
        camera_tensor: torch.Tensor | None,
    ) -> dict[str, Any]:
        """The camera input for ``params.json``: the generated trajectory's RealEstate10K rows, or shape, dtype and
        SHA-256 (of the float32 values) of the packed tensor as the DiT received it (saved as a file by ``save``)."""
        if trajectory is not None:
            return {
                "type": "trajectory", "input_frames": len(camera), "input_source_size": camera.source_size,
                "source_size": trajectory.source_size,
                "realestate10k": np.round(trajectory.to_realestate10k(), 10).tolist(),
            }
        data = camera_tensor.float().contiguous().numpy()
        digest = hashlib.sha256(data.tobytes()).hexdigest()
        return {"type": "plucker_tensor", "shape": list(data.shape),
                "dtype": str(camera_tensor.dtype).replace("torch.", ""), "sha256": digest}
