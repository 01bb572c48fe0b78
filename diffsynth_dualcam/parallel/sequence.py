"""Sequence-parallel inference of ``DualCamCtrlDiT`` over ``torch.distributed`` (Ulysses, DiffSynth's USP pattern).

Each rank holds a contiguous range of latent frames of both streams (RGB and depth tokens of the same frames).
``enable_sequence_parallel`` rebinds methods of one DiT instance, as DiffSynth's ``enable_usp`` does, and leaves
its ``forward`` (the block order of docs/model.md, Forward pass) untouched:

- ``patchify`` / ``embed_camera`` embed only the rank's frames, so every token stream in ``forward`` is a shard;
- ``rope_frequencies`` returns the RoPE rows of the shard's frames;
- self-attention of every RGB and depth block swaps the sequence split for a head split with one all-to-all
  (Ulysses), attends over all tokens with DiffSynth's attention kernel, and swaps back;
- the 3D fusion modules convolve across frames, so before the chain of their frame-mixing layers the shard
  receives a halo of frames from each neighbour and drops it after. The halo is the chain's summed temporal
  kernel radius: 3 frames for ``SigmaFusion`` (three depthwise 3x3x3 convolutions), 4 for ``StackFusion`` (four
  frame-gated blocks, each one 3x3x3 convolution; their per-frame spatial mean needs no exchange, as a shard holds
  whole frames). Every other fusion op is per token, and ``LinearFusion`` is per token entirely;
- ``unpatchify`` gathers the per-token head outputs of all ranks before folding them into the video.

Cross-attention, modulation, the FFN and the heads are per token and run on the shard unchanged. The result equals
the single-process forward up to float rounding. When xfuser is installed and the processes talk over NCCL (the
DiT computes on GPUs), attention goes through ``xFuserLongContextAttention`` as in DiffSynth (its Ulysses/ring
kernels need equal shards, so it is used only when the frames split evenly). Inference only: the collectives carry
no gradients.
"""
from __future__ import annotations

import importlib.util
import os
import types
from dataclasses import dataclass

import torch
import torch.distributed as dist
from diffsynth.core.vram.layers import AutoWrappedModule
from diffsynth.models.wan_video_dit import SelfAttention, flash_attention, rope_apply
from einops import rearrange
from torch import nn
from torch.distributed import ProcessGroup

from ..models import DualCamCtrlDiT, LinearFusion, SigmaFusion, StackFusion
from ..models.fusion import Grid
from .comm import FrameShards, exchange_halo, gather_tokens, heads_to_sequence, sequence_to_heads


@dataclass
class SequenceParallelState:
    """The process group of a sequence-parallel DiT and the frame split of its current forward call."""

    group: ProcessGroup | None
    rank: int
    world_size: int
    halo: int
    use_xfuser: bool
    shards: FrameShards | None = None
    tokens_per_frame: int = 0

    def split(self, frames: int) -> FrameShards:
        """Set and return the frame split of ``frames``; checks every shard is wide enough for the halo."""
        shards = FrameShards(frames, self.world_size)
        if self.world_size > 1 and min(shards.counts) < self.halo:
            raise ValueError(
                f"sequence parallel over {self.world_size} ranks needs at least {self.halo} latent frames per rank "
                f"for the fusion halo; got {frames} latent frames (split {shards.counts}): use fewer ranks"
            )
        self.shards = shards
        return shards

    def token_counts(self) -> list[int]:
        """Tokens held by each rank in the current split."""
        if self.shards is None:
            raise RuntimeError("no frame split yet: the DiT's patchify sets it at the start of forward")
        return [count * self.tokens_per_frame for count in self.shards.counts]


def init_distributed(device: str | torch.device | None = None) -> tuple[int, int]:
    """Join the ``torchrun`` process group for a DiT computing on ``device`` (default: CUDA when available): NCCL
    for CUDA, gloo for the CPU. Returns ``(rank, world_size)``.

    With NCCL each process takes the GPU of its ``LOCAL_RANK``, and xfuser's Ulysses group spanning all ranks is
    set up when xfuser is installed (as DiffSynth's ``initialize_usp`` does).
    """
    if not dist.is_initialized():
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            raise ValueError("no RANK/WORLD_SIZE in the environment: launch with torchrun --nproc_per_node N")
        device = torch.device(device if device is not None else "cuda" if torch.cuda.is_available() else "cpu")
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    if dist.get_backend() == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
        if xfuser_available():
            from xfuser.core.distributed import init_distributed_environment, initialize_model_parallel

            init_distributed_environment(rank=rank, world_size=world_size)
            initialize_model_parallel(
                sequence_parallel_degree=world_size, ring_degree=1, ulysses_degree=world_size
            )
    return rank, world_size


def local_device(device: str) -> str:
    """``device`` for this ``torchrun`` process: a bare ``cuda`` becomes ``cuda:LOCAL_RANK``, anything else stays."""
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def _fusion_modules(dit: DualCamCtrlDiT) -> list[nn.Module]:
    return [*dit.rgb_zero_inits, *dit.control_zero_inits]


def _frame_mixing_chain(fusion: nn.Module) -> nn.ModuleList | None:
    """The layers of a fusion module that mix frames, run one after the other (None: the module is per token)."""
    if isinstance(fusion, AutoWrappedModule):  # offloaded whole by DiffSynth's VRAM management
        fusion = fusion.module
    if isinstance(fusion, SigmaFusion):
        return fusion.fuse_temporal
    if isinstance(fusion, StackFusion):
        return fusion.blocks
    if isinstance(fusion, LinearFusion):
        return None
    raise TypeError(f"sequence parallel does not know the frame layout of the fusion module {type(fusion).__name__}")


def _temporal_radius(conv: nn.Conv3d) -> int:
    """Frames each side a 3D convolution reads; it must keep the frame count (stride 1, 'same' zero padding)."""
    radius = conv.dilation[0] * (conv.kernel_size[0] - 1) // 2
    if conv.stride[0] != 1 or conv.padding[0] != radius or conv.padding_mode != "zeros":
        raise ValueError(
            f"a fusion Conv3d with temporal kernel {conv.kernel_size[0]}, stride {conv.stride[0]}, padding "
            f"{conv.padding[0]} ({conv.padding_mode}) does not keep the frame count: cannot shard it by frames"
        )
    return radius


def fusion_halo(fusion: nn.Module) -> int:
    """Frames each side that ``fusion`` reads past a frame shard: the summed temporal radii of the 3D convolutions
    of its frame-mixing chain (each layer widens the dependence by its radius). Raises ValueError when a 3D
    convolution outside the chain mixes frames."""
    chain = _frame_mixing_chain(fusion)
    inside = {id(module) for module in chain.modules()} if chain is not None else set()
    outside = [name for name, module in fusion.named_modules()
               if isinstance(module, nn.Conv3d) and id(module) not in inside and module.kernel_size[0] > 1]
    if outside:
        raise ValueError(f"{type(fusion).__name__} mixes frames outside its frame-mixing chain ({outside})")
    if chain is None:
        return 0
    return sum(_temporal_radius(module) for module in chain.modules() if isinstance(module, nn.Conv3d))


def xfuser_available() -> bool:
    """Whether xfuser (and its yunchang dependency) can be imported."""
    return importlib.util.find_spec("xfuser") is not None and importlib.util.find_spec("yunchang") is not None


def enable_sequence_parallel(
    dit: DualCamCtrlDiT, group: ProcessGroup | None = None, use_xfuser: bool | None = None
) -> DualCamCtrlDiT:
    """Make ``dit.forward`` run sequence-parallel over ``group`` (default: the whole initialised process group).

    ``use_xfuser=None`` picks xfuser's attention when it is installed, the group is the whole world and the
    processes talk over NCCL, as ``init_distributed`` sets up for a DiT computing on GPUs (offloaded or not); that
    is when it has set up xfuser's parallel state.
    """
    if not dist.is_initialized():
        raise ValueError("torch.distributed is not initialised: call init_distributed() under torchrun first")
    if getattr(dit, "sequence_parallel", None) is not None:
        raise ValueError("sequence parallel is already enabled on this DiT")
    world_size = dist.get_world_size(group)
    num_heads = dit.blocks[0].self_attn.num_heads
    if num_heads % world_size:
        raise ValueError(f"the DiT's {num_heads} attention heads cannot be split over {world_size} ranks")
    if use_xfuser is None:
        use_xfuser = group is None and xfuser_available() and dist.get_backend() == "nccl"
    halos = {id(fusion): fusion_halo(fusion) for fusion in _fusion_modules(dit)}
    state = SequenceParallelState(
        group=group, rank=dist.get_rank(group), world_size=world_size, halo=max(halos.values(), default=0),
        use_xfuser=use_xfuser,
    )
    dit.sequence_parallel = state
    for name in ("patchify", "embed_camera", "rope_frequencies", "unpatchify"):
        original = getattr(dit, name)
        setattr(dit, name, types.MethodType(_SHARDED_METHODS[name](original, state), dit))
    for module in dit.modules():
        if isinstance(module, SelfAttention):
            module.forward = types.MethodType(_ulysses_self_attention(state), module)
    if world_size > 1:
        for fusion in _fusion_modules(dit):
            if halos[id(fusion)]:
                _add_fusion_halo(_frame_mixing_chain(fusion), halos[id(fusion)], state)
    return dit


def _frame_slice(volume: torch.Tensor, shards: FrameShards, rank: int, frames_per_token: int) -> torch.Tensor:
    start, stop = shards.bounds(rank)
    return volume[:, :, start * frames_per_token:stop * frames_per_token]


def _sharded_patchify(original, state: SequenceParallelState):
    def patchify(self, x: torch.Tensor, control_camera_latents_input: torch.Tensor | None = None,
                 enable_wantodance_global: bool = False) -> torch.Tensor:
        frames_per_token = self.patch_size[0]
        shards = state.split(x.shape[2] // frames_per_token)
        camera = control_camera_latents_input
        if camera is not None:
            camera = _frame_slice(camera, shards, state.rank, frames_per_token)
        volume = original(_frame_slice(x, shards, state.rank, frames_per_token), camera, enable_wantodance_global)
        state.tokens_per_frame = volume.shape[3] * volume.shape[4]
        return volume
    return patchify


def _sharded_embed_camera(original, state: SequenceParallelState):
    def embed_camera(self, camera_latents: torch.Tensor) -> torch.Tensor:
        shards = FrameShards(camera_latents.shape[2] // self.patch_size[0], state.world_size)
        return original(_frame_slice(camera_latents, shards, state.rank, self.patch_size[0]))
    return embed_camera


def _sharded_rope_frequencies(original, state: SequenceParallelState):
    def rope_frequencies(self, grid: Grid, device: torch.device) -> torch.Tensor:
        _, h, w = grid
        start, stop = state.shards.bounds(state.rank)
        return original((state.shards.frames, h, w), device)[start * h * w:stop * h * w]
    return rope_frequencies


def _gathering_unpatchify(original, state: SequenceParallelState):
    def unpatchify(self, x: torch.Tensor, grid_size: Grid) -> torch.Tensor:
        _, h, w = grid_size
        return original(gather_tokens(x, state.token_counts(), state.group), (state.shards.frames, h, w))
    return unpatchify


_SHARDED_METHODS = {
    "patchify": _sharded_patchify,
    "embed_camera": _sharded_embed_camera,
    "rope_frequencies": _sharded_rope_frequencies,
    "unpatchify": _gathering_unpatchify,
}


def _ulysses_self_attention(state: SequenceParallelState):
    def forward(self: SelfAttention, x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
        q = rope_apply(self.norm_q(self.q(x)), freqs, self.num_heads)
        k = rope_apply(self.norm_k(self.k(x)), freqs, self.num_heads)
        v = self.v(x)
        counts = state.token_counts()
        if state.use_xfuser and len(set(counts)) == 1:
            out = _xfuser_attention(q, k, v, self.num_heads)
        else:
            local_heads = self.num_heads // state.world_size
            q, k, v = (sequence_to_heads(t, counts, state.group) for t in (q, k, v))
            out = heads_to_sequence(flash_attention(q, k, v, num_heads=local_heads), counts, state.group)
        return self.o(out)
    return forward


def _xfuser_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int) -> torch.Tensor:
    from xfuser.core.long_ctx_attention import xFuserLongContextAttention
    from yunchang.kernels import AttnType

    q, k, v = (rearrange(t, "b s (n d) -> b s n d", n=num_heads) for t in (q, k, v))
    out = xFuserLongContextAttention(attn_type=AttnType.FA, ring_impl_type="basic")(None, query=q, key=k, value=v)
    return out.flatten(2)


def _add_fusion_halo(chain: nn.ModuleList, halo: int, state: SequenceParallelState) -> None:
    """Wrap a frame-mixing chain: its first layer reads the shard plus ``halo`` frames of each neighbour, its last
    drops them. Inside the chain the frames next to the halo's outer edge go wrong by one layer's radius per layer,
    never reaching the shard's own frames."""
    first, last = chain[0], chain[len(chain) - 1]
    first_forward, last_forward = first.forward, last.forward
    before = halo if state.rank > 0 else 0
    after = halo if state.rank < state.world_size - 1 else 0

    def drop_halo(volume: torch.Tensor) -> torch.Tensor:
        return volume[:, :, before:volume.shape[2] - after]

    def forward_first(volume: torch.Tensor) -> torch.Tensor:
        out = first_forward(exchange_halo(volume, halo, state.group))
        return drop_halo(out) if first is last else out

    first.forward = forward_first
    if first is not last:
        last.forward = lambda volume: drop_halo(last_forward(volume))
