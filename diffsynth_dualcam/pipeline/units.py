"""Pipeline units of ``DualCamCtrlPipeline``, in the order they run (DiffSynth ``PipelineUnit`` protocol).

The first two units check every argument and build the camera maps without touching a model, so a bad argument
fails before anything runs; the others encode text, image, depth and camera once per generation.
"""
from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import torch
from diffsynth.diffusion.base_pipeline import PipelineUnit
from PIL import Image

from ..camera import CameraTrajectory
from ..models.step_cache import StepCache
from .inputs import (
    check_camera_latents,
    check_first_frame,
    check_image,
    latent_frames,
    prepare_depth,
    prepare_image,
    prepare_trajectory,
    trajectory_to_camera_latents,
)

if TYPE_CHECKING:
    from .arguments import GenerationArguments
    from .dualcam import DualCamCtrlPipeline


class DualCamUnit_InputChecker(PipelineUnit):
    """Validates all arguments, resizes image and depth to the output size and fixes the seed.

    Every argument of ``pipe.arguments_class`` (``GenerationArguments``) gets its field's check; then the image,
    depth and camera inputs are checked together here (text-to-video or not, the depth estimator, aspect ratios).
    """

    def __init__(self) -> None:
        # Takes over the runner: the prompts live in the positive / negative inputs, everything else in the shared.
        super().__init__(take_over=True)

    def process(
        self, pipe: DualCamCtrlPipeline, inputs_shared: dict, inputs_posi: dict, inputs_nega: dict
    ) -> tuple[dict, dict, dict]:
        arguments = pipe.arguments_class.from_inputs(inputs_shared, inputs_posi, inputs_nega).checked()
        shared, posi, nega = arguments.pipeline_inputs()
        inputs_shared.update(shared)
        inputs_posi.update(posi)
        inputs_nega.update(nega)
        inputs_shared.update(self.check(pipe, arguments))
        return inputs_shared, inputs_posi, inputs_nega

    def check(self, pipe: DualCamCtrlPipeline, arguments: GenerationArguments) -> dict:
        """The inputs that change once the (field-checked) ``arguments`` are checked together: resized images, the
        source size for the camera crop, the seed."""
        input_image, input_depth, width, height = (arguments.input_image, arguments.input_depth, arguments.width,
                                                   arguments.height)
        check_first_frame(t2v=arguments.t2v, input_image=input_image, input_depth=input_depth,
                          can_estimate_depth=pipe.depth_estimator is not None, width=width, height=height)
        source_size = None
        if not arguments.t2v:
            source_size = input_image.size
            input_image = prepare_image(input_image, width=width, height=height)
            if input_depth is not None:
                input_depth = prepare_depth(input_depth, width=width, height=height)
        seed = secrets.randbelow(2**31) if arguments.seed is None else arguments.seed
        return {"input_image": input_image, "input_depth": input_depth, "source_size": source_size, "seed": seed}


class DualCamUnit_CameraPacker(PipelineUnit):
    """Trajectory -> relative, resampled, cover-cropped -> packed Plücker maps [1, 24, T, H, W]
    (docs/model.md, Camera conditioning)."""

    def __init__(self) -> None:
        super().__init__(
            input_params=("camera", "num_frames", "width", "height", "source_size", "resample_camera"),
            output_params=("camera_latents", "trajectory"),
        )

    def process(
        self, pipe: DualCamCtrlPipeline, *, camera: CameraTrajectory | torch.Tensor, num_frames: int, width: int,
        height: int, source_size: tuple[int, int] | None, resample_camera: bool,
    ) -> dict:
        if isinstance(camera, torch.Tensor):
            camera_latents = check_camera_latents(camera, num_frames, width=width, height=height)
            trajectory = None
        else:
            trajectory = prepare_trajectory(camera, num_frames, width=width, height=height, image_size=source_size,
                                            resample=resample_camera)
            camera_latents = trajectory_to_camera_latents(trajectory, width=width, height=height, device=pipe.device)
        return {
            "camera_latents": camera_latents.to(dtype=pipe.torch_dtype, device=pipe.device),
            "trajectory": trajectory,
        }


class DualCamUnit_DepthEstimator(PipelineUnit):
    """Estimates the first-frame depth map with ``pipe.depth_estimator`` when none was given (image-to-video)."""

    def __init__(self) -> None:
        super().__init__(
            input_params=("input_image", "input_depth", "t2v", "width", "height"),
            output_params=("input_depth",),
        )

    def process(
        self, pipe: DualCamCtrlPipeline, *, input_image: Image.Image | None, input_depth: Image.Image | None,
        t2v: bool, width: int, height: int,
    ) -> dict:
        if t2v or input_depth is not None:
            return {}
        estimated = pipe.depth_estimator(input_image)
        if not isinstance(estimated, Image.Image):
            raise TypeError(f"pipe.depth_estimator must return a PIL image (8-bit disparity, near = bright), got "
                            f"{type(estimated).__name__}")
        check_image("the depth map of pipe.depth_estimator", estimated)
        return {"input_depth": prepare_depth(estimated, width=width, height=height)}


class DualCamUnit_NoiseInitializer(PipelineUnit):
    """One seeded Gaussian draw initialises both the RGB and the depth latents (docs/model.md, Sampler and guidance)."""

    def __init__(self) -> None:
        super().__init__(
            input_params=("width", "height", "num_frames", "seed"),
            output_params=("latents", "depth_latents"),
        )

    def process(self, pipe: DualCamCtrlPipeline, *, width: int, height: int, num_frames: int, seed: int) -> dict:
        factor = pipe.vae.upsampling_factor
        shape = (1, pipe.vae.z_dim, latent_frames(num_frames), height // factor, width // factor)
        noise = pipe.generate_noise(shape, seed=seed, rand_device="cpu")
        return {"latents": noise, "depth_latents": noise.clone()}


class DualCamUnit_PromptEmbedder(PipelineUnit):
    """umT5 embedding of the prompt (positive side) and of the negative prompt; padding positions zeroed."""

    def __init__(self) -> None:
        super().__init__(
            seperate_cfg=True,
            input_params_posi={"prompt": "prompt"},
            input_params_nega={"prompt": "negative_prompt"},
            output_params=("context",),
            onload_model_names=("text_encoder",),
        )

    def process(self, pipe: DualCamCtrlPipeline, prompt: str) -> dict:
        pipe.load_models_to_device(self.onload_model_names)
        ids, mask = pipe.tokenizer(prompt, return_mask=True, add_special_tokens=True)
        ids, mask = ids.to(pipe.device), mask.to(pipe.device)
        context = pipe.text_encoder(ids, mask)
        context = context * mask.unsqueeze(-1).to(context.dtype)
        return {"context": context.to(dtype=pipe.torch_dtype)}


class DualCamUnit_ImageEmbedderCLIP(PipelineUnit):
    """CLIP tokens of the input image, or of a black image for text-to-video."""

    def __init__(self) -> None:
        super().__init__(
            input_params=("input_image", "width", "height"),
            output_params=("clip_feature",),
            onload_model_names=("image_encoder",),
        )

    def process(self, pipe: DualCamCtrlPipeline, *, input_image: Image.Image | None, width: int, height: int) -> dict:
        pipe.load_models_to_device(self.onload_model_names)
        image = input_image if input_image is not None else Image.new("RGB", (width, height))
        clip_feature = pipe.image_encoder.encode_image([pipe.preprocess_image(image)])
        return {"clip_feature": clip_feature.to(dtype=pipe.torch_dtype, device=pipe.device)}


class DualCamUnit_ImageEmbedderVAE(PipelineUnit):
    """Conditioning ``y`` / ``depth_y``: VAE latents of the image / depth map at frame 0, zeros elsewhere."""

    def __init__(self) -> None:
        super().__init__(
            input_params=("input_image", "input_depth", "latents"),
            output_params=("y", "depth_y"),
            onload_model_names=("vae",),
        )

    def process(
        self, pipe: DualCamCtrlPipeline, input_image: Image.Image | None, input_depth: Image.Image | None,
        latents: torch.Tensor,
    ) -> dict:
        y = torch.zeros_like(latents)
        depth_y = torch.zeros_like(latents)
        if input_image is not None:
            pipe.load_models_to_device(self.onload_model_names)
            frames = [pipe.preprocess_image(image).transpose(0, 1) for image in (input_image, input_depth)]  # [3,1,H,W]
            # One frame is small: encoded whole, like DiffSynth's Wan camera-control unit does.
            first = pipe.vae.encode(frames, device=pipe.device).to(dtype=latents.dtype, device=latents.device)
            y[:, :, :1] = first[0:1]
            depth_y[:, :, :1] = first[1:2]
        return {"y": y, "depth_y": depth_y}


class DualCamUnit_CameraEmbedder(PipelineUnit):
    """Camera-adapter tokens, computed once and reused at every denoising step."""

    def __init__(self) -> None:
        super().__init__(
            input_params=("camera_latents",),
            output_params=("camera_embedding",),
            onload_model_names=("dit",),
        )

    def process(self, pipe: DualCamCtrlPipeline, camera_latents: torch.Tensor) -> dict:
        pipe.load_models_to_device(self.onload_model_names)
        return {"camera_embedding": pipe.dit.embed_camera(camera_latents)}


class DualCamUnit_StepCache(PipelineUnit):
    """A fresh ``StepCache`` per guidance stream (positive and negative, or one merged batch) given a threshold."""

    def __init__(self) -> None:
        super().__init__(
            seperate_cfg=True,
            input_params=("num_inference_steps", "step_cache_threshold"),
            input_params_posi={},
            input_params_nega={},
            output_params=("step_cache",),
        )

    def process(
        self, pipe: DualCamCtrlPipeline, num_inference_steps: int, step_cache_threshold: float | None
    ) -> dict:
        if step_cache_threshold is None:
            return {}
        return {"step_cache": StepCache(num_inference_steps, step_cache_threshold)}


class DualCamUnit_CfgMerger(PipelineUnit):
    """With ``cfg_merge``, stacks the positive and negative conditioning so that guidance takes one DiT call.

    Only what differs between the two is stacked; the shared inputs keep batch 1, and the DiT computes what depends
    on them alone once for both halves.
    """

    concat_tensor_names = ("context", "clip_feature", "y", "depth_y")

    def __init__(self) -> None:
        super().__init__(take_over=True)

    def process(
        self, pipe: DualCamCtrlPipeline, inputs_shared: dict, inputs_posi: dict, inputs_nega: dict
    ) -> tuple[dict, dict, dict]:
        if not inputs_shared["cfg_merge"] or inputs_shared["cfg_scale"] == 1:
            return inputs_shared, inputs_posi, inputs_nega
        for name in self.concat_tensor_names:
            if name in inputs_posi:
                inputs_shared[name] = torch.cat([inputs_posi.pop(name), inputs_nega.pop(name)], dim=0)
        return inputs_shared, inputs_posi, inputs_nega
