"""The DualCamCtrl DiT: Wan's camera-controlled DiT plus a depth branch fused with it by SIGMA layers
(docs/model.md, Forward pass)."""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from diffsynth.core.gradient import gradient_checkpoint_forward
from diffsynth.models.wan_video_dit import (
    CrossAttention,
    DiTBlock,
    WanModel,
    flash_attention,
    sinusoidal_embedding_1d,
)
from torch import nn

from .config import DiTConfig, normalize_config
from .fusion import Grid, LinearFusion, SigmaFusion, StackFusion, volume_to_tokens

if TYPE_CHECKING:
    from .step_cache import StepCache


def _check_block_list(
    name: str, blocks: Sequence[int] | None, allowed: Sequence[int], allowed_name: str
) -> list[int]:
    blocks = [int(block) for block in blocks or ()]  # the reference accepts None for "no blocks"
    if len(set(blocks)) != len(blocks):
        raise ValueError(f"{name} has repeated entries: {blocks}")
    outside = [block for block in blocks if block not in allowed]
    if outside:
        raise ValueError(f"{name} entries {outside} are not in {allowed_name} {list(allowed)}")
    return blocks


def _common_batch(inputs: dict[str, torch.Tensor | None]) -> int:
    """The batch B of a DiT call: every given input has batch B or 1 (shared by all samples)."""
    sizes = {name: value.shape[0] for name, value in inputs.items() if value is not None and value.ndim > 0}
    batch = max(sizes.values())
    mismatched = {name: size for name, size in sizes.items() if size not in (1, batch)}
    if mismatched:
        raise ValueError(
            f"DiT inputs must have batch {batch} or 1 (1: shared by every sample), got {mismatched} "
            f"(all batches: {sizes})"
        )
    return batch


#: Leading tokens of a cross-attention context that are CLIP image tokens (the rest are text tokens).
CLIP_TOKENS = 257


class ContiguousCrossAttention(CrossAttention):
    """Wan's cross-attention with the CLIP and text parts of the context made contiguous before projecting.

    Upstream slices the context ``[B, 257 + L, C]`` into views; for B > 1 they are non-contiguous and their
    key/value projections fall back from ``addmm`` to a slower ``bmm``, which made batched guidance slower than two
    calls on the CPU. Same parameters and names as ``CrossAttention``; no state of its own.
    """

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Attend from tokens ``x`` [B or 1, N, C] to the context ``y`` [B, (257 +) L, C]."""
        if self.has_image_input:
            image_context, text_context = y[:, :CLIP_TOKENS].contiguous(), y[:, CLIP_TOKENS:].contiguous()
        else:
            image_context, text_context = None, y
        q = self.norm_q(self.q(x))
        if q.shape[0] != y.shape[0]:
            # Tokens shared by a guidance batch (see DualCamCtrlDiT.forward); attention kernels get a real batch.
            q = q.expand(y.shape[0], -1, -1).contiguous()
        out = self.attn(q, self.norm_k(self.k(text_context)), self.v(text_context))
        if image_context is not None:
            image_k = self.norm_k_img(self.k_img(image_context))
            out = out + flash_attention(q, image_k, self.v_img(image_context), num_heads=self.num_heads)
        return self.o(out)


def use_contiguous_cross_attention(block: DiTBlock) -> None:
    """Make ``block.cross_attn`` a ``ContiguousCrossAttention`` in place (its parameters are kept as they are)."""
    if type(block.cross_attn) is not CrossAttention:
        raise TypeError(f"expected Wan's CrossAttention, got {type(block.cross_attn).__name__}")
    block.cross_attn.__class__ = ContiguousCrossAttention


class DualCamCtrlDiT(WanModel):
    """Wan DiT with a second stack of ``DiTBlock``s for depth and SIGMA fusion between the two streams.

    ``control_blocks[k]`` is the depth block running beside RGB block ``control_block_index[k]``;
    ``rgb_zero_inits[j]`` fuses RGB into depth before depth block ``rgb_inject_blocks[j]``;
    ``control_zero_inits[j]`` fuses depth into RGB after depth block ``depth_inject_blocks[j]``.
    The fusion kind follows ``use_gate_3d_linear`` / ``update`` (see ``diffsynth_dualcam.models.fusion``).
    ``text_len``, the reference config's text context length, is only recorded in ``config``: any context length works.
    """

    def __init__(self, **config: Any) -> None:
        # The signature (set below from DiTConfig) lists the keys; a call with others fails as a written-out one.
        fields = DiTConfig.from_keywords(**config)
        dim, num_heads, num_layers, text_len = fields.dim, fields.num_heads, fields.num_layers, fields.text_len
        if isinstance(text_len, bool) or not isinstance(text_len, int) or text_len < 1:
            raise ValueError(f"text_len must be a positive int (the text context length), got {text_len!r}")
        control_block_index = _check_block_list(
            "control_block_index", fields.control_block_index, range(num_layers), f"range(num_layers={num_layers})"
        )
        rgb_inject_blocks = _check_block_list(
            "rgb_inject_blocks", fields.rgb_inject_blocks, control_block_index, "control_block_index"
        )
        depth_inject_blocks = _check_block_list(
            "depth_inject_blocks", fields.depth_inject_blocks, control_block_index, "control_block_index"
        )
        super().__init__(
            dim=dim, in_dim=fields.in_dim, ffn_dim=fields.ffn_dim, out_dim=fields.out_dim, text_dim=fields.text_dim,
            freq_dim=fields.freq_dim, eps=fields.eps, patch_size=tuple(fields.patch_size), num_heads=num_heads,
            num_layers=num_layers, has_image_input=fields.has_image_input,
            add_control_adapter=fields.add_control_adapter, in_dim_control_adapter=fields.in_dim_control_adapter,
        )
        head_dim = dim // num_heads
        if dim % num_heads or head_dim % 2 or sum(part.shape[1] for part in self.freqs) != head_dim // 2:
            raise ValueError(
                f"dim / num_heads = {dim} / {num_heads} does not give a head size that Wan's 3D RoPE splits over "
                "(frame, height, width); use e.g. 128 (Wan 1.3B), 24 or 12"
            )
        self.config: dict[str, Any] = normalize_config({
            **{item.name: getattr(fields, item.name) for item in dataclasses.fields(fields)},
            "rgb_inject_blocks": rgb_inject_blocks, "depth_inject_blocks": depth_inject_blocks,
            "control_block_index": control_block_index,
        })
        self.control_block_index = control_block_index
        self.rgb_inject_blocks = rgb_inject_blocks
        self.depth_inject_blocks = depth_inject_blocks
        self.use_gate_3d_linear = fields.use_gate_3d_linear
        self.update = fields.update
        self.control_blocks = nn.ModuleList(
            DiTBlock(fields.has_image_input, dim, num_heads, fields.ffn_dim, fields.eps) for _ in control_block_index
        )
        for block in (*self.blocks, *self.control_blocks):
            use_contiguous_cross_attention(block)
        self.rgb_zero_inits = nn.ModuleList(self._new_fusion(reads_depth=False) for _ in rgb_inject_blocks)
        self.control_zero_inits = nn.ModuleList(self._new_fusion(reads_depth=True) for _ in depth_inject_blocks)

    def _new_fusion(self, reads_depth: bool) -> nn.Module:
        # The reference's choice: update only matters for the 3D fusion; the Linear kind ignores it.
        if self.use_gate_3d_linear:
            return StackFusion(self.dim) if self.update else SigmaFusion(self.dim)
        return LinearFusion(self.dim, reads_depth=reads_depth)

    def patchify(
        self,
        x: torch.Tensor,
        control_camera_latents_input: torch.Tensor | None = None,
        enable_wantodance_global: bool = False,
    ) -> torch.Tensor:
        """Patch-embed [B, in_dim, T, H, W] to [B, dim, f, h, w], adding the camera adapter's output if given.

        Upstream ``WanModel.patchify`` keeps only the first sample when a camera is given; this keeps the batch.
        """
        if enable_wantodance_global:
            raise ValueError("DualCamCtrlDiT has no WanToDance global patch embedding")
        volume = self.patch_embedding(x)
        if self.control_adapter is not None and control_camera_latents_input is not None:
            volume = volume + self.control_adapter(control_camera_latents_input)
        return volume

    def embed_camera(self, camera_latents: torch.Tensor) -> torch.Tensor:
        """Camera-adapter tokens [B, f*h*w, dim] of packed Plücker latents [B, in_dim_control_adapter, T, H, W].

        The result depends on the camera only: compute it once per generation and pass ``camera_embedding=``.
        """
        if self.control_adapter is None:
            raise ValueError("camera given, but this DiT has no camera adapter (add_control_adapter=False)")
        channels = self.config["in_dim_control_adapter"]
        if camera_latents.ndim != 5 or camera_latents.shape[1] != channels:
            raise ValueError(
                f"camera_latents must be [B, {channels}, T, H, W] packed Plücker maps, got {list(camera_latents.shape)}"
            )
        return volume_to_tokens(self.control_adapter(camera_latents))

    def rope_frequencies(self, grid: Grid, device: torch.device) -> torch.Tensor:
        """Wan's 3D RoPE frequencies [f*h*w, 1, head_dim // 2] for a token grid (f, h, w)."""
        f, h, w = grid
        return torch.cat([
            self.freqs[0][:f].view(f, 1, 1, -1).expand(f, h, w, -1),
            self.freqs[1][:h].view(1, h, 1, -1).expand(f, h, w, -1),
            self.freqs[2][:w].view(1, 1, w, -1).expand(f, h, w, -1),
        ], dim=-1).reshape(f * h * w, 1, -1).to(device)

    def _tokens(self, latents: torch.Tensor, condition: torch.Tensor | None, name: str) -> tuple[torch.Tensor, Grid]:
        if condition is None:
            inputs = latents
        else:
            batch = max(latents.shape[0], condition.shape[0])
            inputs = torch.cat([latents.expand(batch, *latents.shape[1:]),
                                condition.expand(batch, *condition.shape[1:])], dim=1)
        if inputs.ndim != 5 or inputs.shape[1] != self.in_dim:
            raise ValueError(
                f"{name} (with its conditioning latents) must be [B, {self.in_dim}, T, H, W] together, "
                f"got {list(inputs.shape)}"
            )
        volume = self.patchify(inputs)
        return volume_to_tokens(volume), tuple(volume.shape[2:])

    def forward(
        self,
        x: torch.Tensor,
        depth_latents: torch.Tensor,
        timestep: torch.Tensor,
        context: torch.Tensor,
        clip_feature: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        depth_y: torch.Tensor | None = None,
        camera_latents: torch.Tensor | None = None,
        camera_embedding: torch.Tensor | None = None,
        use_gradient_checkpointing: bool = False,
        use_gradient_checkpointing_offload: bool = False,
        step_cache: StepCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Velocities (RGB, depth), each [B, out_dim, T, H, W], for noisy RGB ``x`` and noisy ``depth_latents``.

        ``y`` / ``depth_y`` are the first-frame conditioning latents of each branch, ``camera_latents`` packed
        Plücker maps, or ``camera_embedding`` their cached ``embed_camera`` tokens. ``step_cache`` may replace
        the block stack of both branches by its cached residuals (``diffsynth_dualcam.models.step_cache``).

        Every input has batch B or 1; batch 1 is shared by all B samples. Guidance in one call gives the
        latents, conditioning and timestep once and only the contexts twice: what precedes the first
        cross-attention of each branch (embeddings, fusion, the first self-attention) then runs once, not B times.
        """
        if (y is None) != (depth_y is None):
            raise ValueError("give both y and depth_y (the RGB and depth conditioning latents) or neither")
        batch = _common_batch({
            "x": x, "depth_latents": depth_latents, "timestep": timestep, "context": context,
            "clip_feature": clip_feature, "y": y, "depth_y": depth_y, "camera_latents": camera_latents,
            "camera_embedding": camera_embedding,
        })
        t_emb = self.time_embedding(sinusoidal_embedding_1d(self.freq_dim, timestep).to(x.dtype))
        t_mod = self.time_projection(t_emb).unflatten(1, (6, self.dim))
        ctx = self.text_embedding(context)
        if self.has_image_input:
            if clip_feature is None:
                raise ValueError("clip_feature [B, 257, 1280] is required: this DiT was built with has_image_input")
            image_ctx = self.img_emb(clip_feature)
            ctx = torch.cat([image_ctx.expand(batch, -1, -1), ctx.expand(batch, -1, -1)], dim=1)
        else:
            ctx = ctx.expand(batch, -1, -1)

        rgb, grid = self._tokens(x, y, "x")
        depth, depth_grid = self._tokens(depth_latents, depth_y, "depth_latents")
        if depth_grid != grid:
            raise ValueError(f"depth_latents give a token grid {depth_grid}, the RGB latents {grid}")
        if camera_embedding is None and camera_latents is not None:
            camera_embedding = self.embed_camera(camera_latents)
        if camera_embedding is not None:
            if camera_embedding.shape[1:] != rgb.shape[1:]:
                raise ValueError(
                    f"camera embedding has {list(camera_embedding.shape[1:])} tokens x channels, the latents "
                    f"{list(rgb.shape[1:])}: the camera maps must be 8x the latent size"
                )
            rgb = rgb + camera_embedding
            depth = depth + camera_embedding
        freqs = self.rope_frequencies(grid, rgb.device)

        def run(module: nn.Module, *args: Any) -> torch.Tensor:
            return gradient_checkpoint_forward(
                module, use_gradient_checkpointing, use_gradient_checkpointing_offload, *args
            )

        def fuse(fusion: nn.Module, rgb: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
            shared = max(rgb.shape[0], depth.shape[0])
            return run(fusion, rgb.expand(shared, -1, -1), depth.expand(shared, -1, -1), grid)

        def run_blocks(rgb: torch.Tensor, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # A stream of batch 1 becomes batch B at its first cross-attention (DiTBlock broadcasts the residual).
            for index, block in enumerate(self.blocks):
                if index in self.control_block_index:
                    if index in self.rgb_inject_blocks:
                        fusion = self.rgb_zero_inits[self.rgb_inject_blocks.index(index)]
                        depth = depth + fuse(fusion, rgb, depth)
                    depth_block = self.control_blocks[self.control_block_index.index(index)]
                    depth = run(depth_block, depth, ctx, t_mod, freqs)
                    if index in self.depth_inject_blocks:
                        fusion = self.control_zero_inits[self.depth_inject_blocks.index(index)]
                        rgb = rgb + fuse(fusion, rgb, depth)
                rgb = run(block, rgb, ctx, t_mod, freqs)
            return rgb, depth

        if step_cache is None:
            rgb, depth = run_blocks(rgb, depth)
        else:
            rgb, depth = step_cache(self, rgb, depth, t_mod, run_blocks)
        rgb, depth = rgb.expand(batch, -1, -1), depth.expand(batch, -1, -1)
        return self.unpatchify(self.head(rgb, t_emb), grid), self.unpatchify(self.head(depth, t_emb), grid)

    def copy_rgb_blocks_to_depth(self) -> None:
        """Initialise each depth block with a copy of the weights of the RGB block it runs beside."""
        for depth_block, index in zip(self.control_blocks, self.control_block_index):
            weights = {name: value.detach().clone() for name, value in self.blocks[index].state_dict().items()}
            depth_block.load_state_dict(weights, assign=True)

    def reset_fusion(self) -> None:
        """Replace every fusion module with a freshly initialised one (zero output projection: adds nothing)."""
        device, dtype = self.patch_embedding.weight.device, self.patch_embedding.weight.dtype
        if device.type == "meta":
            device = torch.device("cpu")
        for modules, reads_depth in ((self.rgb_zero_inits, False), (self.control_zero_inits, True)):
            for index in range(len(modules)):
                modules[index] = self._new_fusion(reads_depth).to(device=device, dtype=dtype)


# The constructor's signature for introspection (help, inspect): DiTConfig's fields as keywords.
DualCamCtrlDiT.__init__.__signature__ = inspect.Signature(
    [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *DiTConfig.signature().parameters.values()],
    return_annotation=None,
)


def empty_dit(config: Mapping[str, Any]) -> DualCamCtrlDiT:
    """A ``DualCamCtrlDiT(**config)`` whose parameters are on the meta device (no memory, no initialisation): its
    layout, or a model to load weights into with ``load_state_dict(..., assign=True)``."""
    from diffsynth.core.vram.initialization import skip_model_initialization

    with skip_model_initialization():
        return DualCamCtrlDiT(**config)
