"""The DualCamCtrl training module (a DiffSynth ``DiffusionTrainingModule``) and the two stages' DiT set-up.

Stage ``decoupled``: the DiT has no fusion modules; the depth blocks start as copies of the RGB blocks and both
branches learn their own video. Stage ``fusion``: fusion modules are added with zero output projections (the
network starts exactly where stage 1 ended) and everything chosen by ``trainable`` learns.

Noise: by default one Gaussian draw noises both branches (``share_noise``), as in sampling, where one seeded draw
initialises both; ``share_noise=False`` draws the depth noise independently. Both branches always share the
timestep, and the loss carries DiffSynth's Wan timestep weighting. ``noise_seed`` makes every call draw the same
timestep and noise (a fixed objective: fitting one repeated clip must then lower the loss).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from diffsynth.diffusion.training_module import DiffusionTrainingModule
from PIL import Image

from ..models.dit import DualCamCtrlDiT, empty_dit
from ..pipeline import DualCamCtrlPipeline
from ..pipeline import units as pipeline_units
from .losses import dual_flow_matching_loss

FUSION_PREFIXES = ("rgb_zero_inits.", "control_zero_inits.")
BRANCH_PREFIXES = {"rgb": ("blocks.",), "depth": ("control_blocks.",), "both": ("blocks.", "control_blocks.")}
#: What ``trainable="blocks"`` trains, as the reference training did: the transformer blocks of both branches and
#: the fusion modules; the patch, text, time and image embeddings, the head and the camera adapter stay frozen.
BLOCKS_PREFIXES = BRANCH_PREFIXES["both"] + FUSION_PREFIXES


def dit_for_stage(dit: DualCamCtrlDiT, stage: str, rgb_inject_blocks: Sequence[int] = (),
                  depth_inject_blocks: Sequence[int] = ()) -> DualCamCtrlDiT:
    """The DiT a stage trains: without fusion modules (``decoupled``) or with the given ones (``fusion``).

    Weights the two layouts share are kept; fusion modules that ``dit`` lacks are added fresh (zero ``proj_out``),
    and a ``fusion`` DiT that already has exactly this layout is returned unchanged (resuming stage 2).
    """
    if stage == "decoupled":
        layout = {"rgb_inject_blocks": [], "depth_inject_blocks": []}
    elif stage == "fusion":
        if not rgb_inject_blocks and not depth_inject_blocks:
            raise ValueError("stage 'fusion' needs rgb_inject_blocks or depth_inject_blocks")
        layout = {"rgb_inject_blocks": list(rgb_inject_blocks), "depth_inject_blocks": list(depth_inject_blocks)}
    else:
        raise ValueError(f"stage must be 'decoupled' or 'fusion', got {stage!r}")
    if all(dit.config[key] == value for key, value in layout.items()):
        return dit
    parameter = next(dit.parameters())
    staged = empty_dit({**dit.config, **layout})
    kept = {key: value for key, value in dit.state_dict().items() if not key.startswith(FUSION_PREFIXES)}
    missing, unexpected = staged.load_state_dict(kept, strict=False, assign=True)
    if unexpected or any(not key.startswith(FUSION_PREFIXES) for key in missing):
        raise ValueError(f"cannot re-stage the DiT: missing {missing}, unexpected {unexpected}")
    staged.reset_fusion()
    return staged.to(device=parameter.device, dtype=parameter.dtype)


def lora_target_names(dit: torch.nn.Module, branch: str, target_modules: str) -> list[str]:
    """Full names of the Linear layers of ``branch`` (rgb / depth / both) whose names end with a target."""
    suffixes = tuple("." + target.strip() for target in target_modules.split(",") if target.strip())
    if not suffixes:
        raise ValueError("lora_target_modules is empty")
    prefixes = BRANCH_PREFIXES[branch]
    names = [name for name, module in dit.named_modules()
             if isinstance(module, torch.nn.Linear) and name.startswith(prefixes) and name.endswith(suffixes)]
    if not names:
        raise ValueError(f"no Linear layer of the {branch} branch ends with any of {list(suffixes)}")
    return names


def frame_to_image(frame: torch.Tensor) -> Image.Image:
    """A [3, H, W] frame in [-1, 1] as an RGB PIL image."""
    pixels = ((frame.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return Image.fromarray(pixels.permute(1, 2, 0).numpy())


class DualCamTrainingModule(DiffusionTrainingModule):
    """Flow-matching training of both DiT branches on items of a ``CameraClipDataset``.

    ``trainable``: ``full`` (the whole DiT), ``blocks`` (the blocks of both branches and the fusion modules, the
    reference's choice), ``lora`` (LoRA adapters on ``lora_branch`` blocks, the base frozen, plus the fusion
    modules when ``train_fusion_with_lora``) or ``fusion`` (the fusion modules only).
    """

    def __init__(
        self,
        pipe: DualCamCtrlPipeline,
        trainable: str = "full",
        lora_branch: str = "both",
        lora_rank: int = 32,
        lora_target_modules: str = "q,k,v,o,ffn.0,ffn.2",
        train_fusion_with_lora: bool = True,
        drop_loss_topk: int = 0,
        share_noise: bool = True,
        min_timestep_boundary: float = 0.0,
        max_timestep_boundary: float = 1.0,
        use_gradient_checkpointing: bool = True,
        use_gradient_checkpointing_offload: bool = False,
        noise_seed: int | None = None,
    ):
        super().__init__()
        self.pipe = pipe
        self.pipe.scheduler.set_timesteps(1000, training=True)
        self.pipe.freeze_except([])
        dit = self.pipe.dit
        has_fusion = bool(len(dit.rgb_zero_inits) + len(dit.control_zero_inits))
        if trainable == "full":
            dit.requires_grad_(True)
        elif trainable == "blocks":
            for name, parameter in dit.named_parameters():
                parameter.requires_grad_(name.startswith(BLOCKS_PREFIXES))
        elif trainable == "lora":
            targets = lora_target_names(dit, lora_branch, lora_target_modules)
            dit = self.add_lora_to_model(dit, targets, lora_rank, upcast_dtype=next(dit.parameters()).dtype)
            self.pipe.dit = dit
            if train_fusion_with_lora:
                self.fusion_parameters(dit).requires_grad_(True)
        elif trainable == "fusion":
            if not has_fusion:
                raise ValueError("trainable='fusion' but the DiT has no fusion modules (stage 'decoupled')")
            self.fusion_parameters(dit).requires_grad_(True)
        else:
            raise ValueError(f"trainable must be 'full', 'blocks', 'lora' or 'fusion', got {trainable!r}")
        dit.train()
        self.drop_loss_topk = drop_loss_topk
        self.share_noise = share_noise
        self.min_timestep_boundary = min_timestep_boundary
        self.max_timestep_boundary = max_timestep_boundary
        self.use_gradient_checkpointing = use_gradient_checkpointing
        self.use_gradient_checkpointing_offload = use_gradient_checkpointing_offload
        self.noise_seed = noise_seed
        self.last_loss_terms: dict[str, float] = {}

    @staticmethod
    def fusion_parameters(dit: DualCamCtrlDiT) -> torch.nn.ModuleList:
        """Both directions' fusion modules as one module list."""
        return torch.nn.ModuleList([*dit.rgb_zero_inits, *dit.control_zero_inits])

    @torch.no_grad()
    def encode(self, data: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Latents and conditioning of one item: everything the DiT needs except the noise and the timestep.

        ``y`` / ``depth_y`` hold the first latent frame of each clip and zeros elsewhere: the Wan VAE is causal,
        so that frame is exactly the encoding of the first image alone, as the pipeline computes it.
        """
        pipe = self.pipe
        frames = [data["video"].to(device=pipe.device, dtype=pipe.torch_dtype),
                  data["depth"].to(device=pipe.device, dtype=pipe.torch_dtype)]
        latents = pipe.vae.encode(frames, device=pipe.device).to(device=pipe.device, dtype=pipe.torch_dtype)
        first = torch.zeros_like(latents)
        first[:, :, :1] = latents[:, :, :1]
        height, width = data["video"].shape[-2:]
        context = pipeline_units.DualCamUnit_PromptEmbedder().process(pipe, data["prompt"])["context"]
        clip_feature = pipeline_units.DualCamUnit_ImageEmbedderCLIP().process(
            pipe, input_image=frame_to_image(data["video"][:, 0]), width=width, height=height)["clip_feature"]
        return {
            "rgb_latents": latents[0:1], "depth_latents": latents[1:2], "y": first[0:1], "depth_y": first[1:2],
            "context": context, "clip_feature": clip_feature,
            "camera_latents": data["plucker"].to(device=pipe.device, dtype=pipe.torch_dtype).unsqueeze(0),
        }

    def sample_timestep(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A training timestep [1] drawn uniformly from the scheduler's 1000 within the boundaries."""
        count = len(self.pipe.scheduler.timesteps)
        low, high = int(self.min_timestep_boundary * count), int(self.max_timestep_boundary * count)
        index = torch.randint(low, high, (1,), generator=generator)
        return self.pipe.scheduler.timesteps[index].to(device=self.pipe.device, dtype=torch.float32)

    @staticmethod
    def noise_like(latents: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Gaussian noise shaped like ``latents``: from the global generator, or from ``generator`` (on the CPU)."""
        if generator is None:
            return torch.randn_like(latents)
        return torch.randn(latents.shape, generator=generator, dtype=latents.dtype).to(latents.device)

    def forward(self, data: dict[str, Any]) -> torch.Tensor:
        """Weighted flow-matching loss of both branches for one dataset item, at a random timestep."""
        return self.loss(self.encode(data))

    def loss(self, inputs: dict[str, torch.Tensor], timestep: torch.Tensor | None = None) -> torch.Tensor:
        """Weighted flow-matching loss of encoded ``inputs`` (see ``encode``), at ``timestep`` or a random one."""
        scheduler = self.pipe.scheduler
        generator = None if self.noise_seed is None else torch.Generator().manual_seed(self.noise_seed)
        timestep = self.sample_timestep(generator) if timestep is None else timestep
        rgb_noise = self.noise_like(inputs["rgb_latents"], generator)
        depth_noise = rgb_noise if self.share_noise else self.noise_like(inputs["depth_latents"], generator)
        rgb_velocity, depth_velocity = self.pipe.dit(
            scheduler.add_noise(inputs["rgb_latents"], rgb_noise, timestep),
            scheduler.add_noise(inputs["depth_latents"], depth_noise, timestep),
            timestep, inputs["context"], clip_feature=inputs["clip_feature"], y=inputs["y"],
            depth_y=inputs["depth_y"], camera_latents=inputs["camera_latents"],
            use_gradient_checkpointing=self.use_gradient_checkpointing,
            use_gradient_checkpointing_offload=self.use_gradient_checkpointing_offload,
        )
        loss, self.last_loss_terms = dual_flow_matching_loss(
            rgb_velocity, depth_velocity,
            scheduler.training_target(inputs["rgb_latents"], rgb_noise, timestep),
            scheduler.training_target(inputs["depth_latents"], depth_noise, timestep),
            scheduler.training_weight(timestep).to(rgb_velocity.device), self.drop_loss_topk,
        )
        return loss

    def trainable_parameter_count(self) -> int:
        """Number of parameters that receive gradients."""
        return sum(parameter.numel() for parameter in self.parameters() if parameter.requires_grad)


def merged_dit(dit: torch.nn.Module) -> DualCamCtrlDiT:
    """The plain ``DualCamCtrlDiT`` of a (possibly LoRA-wrapped) training DiT, LoRA deltas merged into the weights.

    The training DiT is left untouched; without LoRA it is returned as it is.
    """
    from peft.tuners.lora import LoraLayer

    lora_layers = {name: module for name, module in dit.named_modules() if isinstance(module, LoraLayer)}
    if not lora_layers:
        return dit
    state_dict = {}
    for key, value in dit.state_dict().items():
        if ".lora_" in key:
            continue
        state_dict[key.replace(".base_layer.", ".")] = value.detach()
    for name, module in lora_layers.items():
        weight = state_dict[f"{name}.weight"]
        delta = sum(module.get_delta_weight(adapter) for adapter in module.active_adapters)
        state_dict[f"{name}.weight"] = weight + delta.to(weight.dtype)
    plain = empty_dit(dit.config)
    plain.load_state_dict(state_dict, strict=True, assign=True)
    return plain

