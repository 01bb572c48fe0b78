"""Collectives of the sequence-parallel DiT: frame shards, Ulysses all-to-all, halo exchange, gather.

Every function takes the rank's local tensors and a ``ProcessGroup`` (``None`` = the default group). They use
only ``all_to_all_single`` and ``all_gather``, which both NCCL and gloo support with uneven splits, so the same
code runs on GPUs and in CPU tests.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed import ProcessGroup


@dataclass(frozen=True)
class FrameShards:
    """Contiguous split of ``frames`` latent frames over ``world_size`` ranks, the first ranks taking the extra."""

    frames: int
    world_size: int

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {self.world_size}")
        if self.frames < self.world_size:
            raise ValueError(
                f"cannot split {self.frames} latent frames over {self.world_size} ranks: each rank needs a frame"
            )

    @property
    def counts(self) -> list[int]:
        """Frames held by each rank."""
        base, extra = divmod(self.frames, self.world_size)
        return [base + (1 if rank < extra else 0) for rank in range(self.world_size)]

    def bounds(self, rank: int) -> tuple[int, int]:
        """``(start, stop)`` frame range of ``rank``."""
        counts = self.counts
        start = sum(counts[:rank])
        return start, start + counts[rank]


def _rank_and_size(group: ProcessGroup | None) -> tuple[int, int]:
    return dist.get_rank(group), dist.get_world_size(group)


def sequence_to_heads(tokens: torch.Tensor, token_counts: list[int], group: ProcessGroup | None) -> torch.Tensor:
    """Ulysses scatter: local tokens of all heads [B, L_rank, H*d] -> all tokens of local heads [B, L, H/P*d].

    ``token_counts[i]`` is the token count of rank i. Heads are split in equal contiguous groups.
    """
    world_size = dist.get_world_size(group)
    batch, local_tokens, channels = tokens.shape
    if channels % world_size:
        raise ValueError(f"{channels} channels cannot be split evenly over {world_size} ranks")
    group_channels = channels // world_size
    send = tokens.reshape(batch, local_tokens, world_size, group_channels).permute(2, 0, 1, 3).contiguous()
    receive = tokens.new_empty(batch * sum(token_counts) * group_channels)
    dist.all_to_all_single(
        receive, send.flatten(),
        output_split_sizes=[batch * count * group_channels for count in token_counts],
        input_split_sizes=[batch * local_tokens * group_channels] * world_size,
        group=group,
    )
    pieces = receive.split([batch * count * group_channels for count in token_counts])
    return torch.cat([piece.view(batch, count, group_channels) for piece, count in zip(pieces, token_counts)], dim=1)


def heads_to_sequence(tokens: torch.Tensor, token_counts: list[int], group: ProcessGroup | None) -> torch.Tensor:
    """Ulysses gather, the inverse of ``sequence_to_heads``: [B, L, H/P*d] -> [B, L_rank, H*d]."""
    rank, world_size = _rank_and_size(group)
    batch, _, group_channels = tokens.shape
    local_tokens = token_counts[rank]
    send = torch.cat([piece.flatten() for piece in tokens.split(token_counts, dim=1)])
    receive = tokens.new_empty(world_size * batch * local_tokens * group_channels)
    dist.all_to_all_single(
        receive, send,
        output_split_sizes=[batch * local_tokens * group_channels] * world_size,
        input_split_sizes=[batch * count * group_channels for count in token_counts],
        group=group,
    )
    heads = receive.view(world_size, batch, local_tokens, group_channels).permute(1, 2, 0, 3)
    return heads.reshape(batch, local_tokens, world_size * group_channels)


def exchange_halo(volume: torch.Tensor, halo: int, group: ProcessGroup | None) -> torch.Tensor:
    """Extend a frame shard [B, C, f, h, w] by ``halo`` frames of each neighbouring rank.

    The first and last ranks get no frames past the ends of the video, so a zero-padded convolution over the
    result equals the one over the whole video on the shard's frames. Every rank must hold ``halo`` frames.
    """
    rank, world_size = _rank_and_size(group)
    if volume.shape[2] < halo:
        raise ValueError(f"rank {rank} holds {volume.shape[2]} frames, fewer than the halo of {halo} frames")
    slab = volume[:, :, :halo].numel()
    before = halo if rank > 0 else 0
    after = halo if rank < world_size - 1 else 0
    splits = [0] * world_size
    sends = []
    if before:
        splits[rank - 1] = slab
        sends.append(volume[:, :, :halo].contiguous().flatten())
    if after:
        splits[rank + 1] = slab
        sends.append(volume[:, :, -halo:].contiguous().flatten())
    receive = volume.new_empty(sum(splits))
    send = torch.cat(sends) if sends else volume.new_empty(0)
    dist.all_to_all_single(receive, send, output_split_sizes=splits, input_split_sizes=splits, group=group)
    slab_shape = (volume.shape[0], volume.shape[1], halo, *volume.shape[3:])
    parts = []
    if before:
        parts.append(receive[:slab].view(slab_shape))
    parts.append(volume)
    if after:
        parts.append(receive[-slab:].view(slab_shape))
    return torch.cat(parts, dim=2)


def gather_tokens(tokens: torch.Tensor, token_counts: list[int], group: ProcessGroup | None) -> torch.Tensor:
    """All ranks' token shards [B, L_rank, C] concatenated in rank order -> [B, L, C] on every rank."""
    longest = max(token_counts)
    padded = torch.nn.functional.pad(tokens, (0, 0, 0, longest - tokens.shape[1])).contiguous()
    gathered = [torch.empty_like(padded) for _ in token_counts]
    dist.all_gather(gathered, padded, group=group)
    return torch.cat([piece[:, :count] for piece, count in zip(gathered, token_counts)], dim=1)
