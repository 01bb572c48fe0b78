"""SIGMA fusion between the RGB and depth token streams (docs/model.md, Fusion maths).

Three kinds, chosen by the DiT config as in the reference: ``SigmaFusion`` (``use_gate_3d_linear=True``,
``update=False``: the released checkpoint), ``StackFusion`` (``use_gate_3d_linear=True``, ``update=True``) and
``LinearFusion`` (``use_gate_3d_linear=False``). All share one call signature, ``fusion(rgb, depth, grid) ->
residual``: ``rgb`` and ``depth`` are token tensors [B, f*h*w, C] laid out as (f h w), ``grid`` is (f, h, w), and
the returned residual has the shape of the tokens. The caller adds it to the stream being updated.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

Grid = tuple[int, int, int]


def tokens_to_volume(tokens: torch.Tensor, grid: Grid) -> torch.Tensor:
    """[B, f*h*w, C] tokens in (f h w) order -> [B, C, f, h, w] volume."""
    f, h, w = grid
    return rearrange(tokens, "b (f h w) c -> b c f h w", f=f, h=h, w=w)


def volume_to_tokens(volume: torch.Tensor) -> torch.Tensor:
    """[B, C, f, h, w] volume -> contiguous [B, f*h*w, C] tokens in (f h w) order.

    A channels-first volume would otherwise give a transposed view, and the residual stream of every block after it
    would inherit that layout: strided elementwise ops and a copy before each layer norm.
    """
    return rearrange(volume, "b c f h w -> b (f h w) c").contiguous()


class PointwiseConv3d(nn.Conv3d):
    """A 1x1x1 ``Conv3d`` (same parameters and names) evaluated as a ``Linear`` over the channels.

    ``tokens_to_volume`` gives a channels-last view of the tokens; a convolution reads it through a slow strided
    path, while the ``Linear`` reads it in place and keeps the output channels-last, so the whole fusion runs
    without a layout copy (about 4x faster on the CPU).
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1, bias=bias)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        """[B, C_in, f, h, w] -> [B, C_out, f, h, w], channels-last in memory."""
        channels_last = volume.permute(0, 2, 3, 4, 1)
        return F.linear(channels_last, self.weight.flatten(1), self.bias).permute(0, 4, 1, 2, 3)


def _pointwise(in_channels: int, out_channels: int) -> PointwiseConv3d:
    return PointwiseConv3d(in_channels, out_channels)


def _embed_and_merge(
    fusion: nn.Module, rgb: torch.Tensor, depth: torch.Tensor, grid: Grid
) -> tuple[torch.Tensor, torch.Tensor]:
    """The RGB volume, and both streams embedded (``main_embed``, ``control_embed``) and merged by ``fuse_pw1``."""
    x = tokens_to_volume(rgb, grid)
    r = tokens_to_volume(depth, grid)
    return x, F.silu(fusion.fuse_pw1(torch.cat([fusion.main_embed(x), fusion.control_embed(r)], dim=1)))


class SigmaFusion(nn.Module):
    """Gated 3D-convolution fusion of the RGB tokens with the other stream's tokens.

    ``v = proj_out(x + z * sigmoid(gate_conv(z)))`` where ``x`` is the RGB volume and ``z`` a depthwise-3D
    convolved embedding of both streams. ``proj_out`` starts at zero, so a fresh module adds nothing.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        mid = max(8, dim // 4)
        self.main_embed = _pointwise(dim, mid)
        self.control_embed = _pointwise(dim, mid)
        self.fuse_pw1 = _pointwise(2 * mid, mid)
        self.fuse_temporal = nn.ModuleList(
            nn.Conv3d(mid, mid, kernel_size=3, padding=1, groups=mid, bias=False) for _ in range(3)
        )
        self.fuse_pw2 = _pointwise(mid, dim)
        self.gate_conv = _pointwise(dim, dim)
        self.proj_out = _pointwise(dim, dim)
        for conv in (self.main_embed, self.control_embed, self.fuse_pw1, self.fuse_pw2, self.gate_conv):
            nn.init.xavier_uniform_(conv.weight)
        nn.init.zeros_(self.proj_out.weight)

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Residual tokens [B, f*h*w, C] computed from the RGB tokens and the depth tokens."""
        x, z = _embed_and_merge(self, rgb, depth, grid)
        for conv in self.fuse_temporal:
            z = conv(z)
        z = self.fuse_pw2(F.silu(z))
        return volume_to_tokens(self.proj_out(x + z * torch.sigmoid(self.gate_conv(z))))


class FrameGatedBlock(nn.Module):
    """Residual depthwise-3D block of ``StackFusion`` whose update is gated per frame and channel.

    ``z = pw(silu(dw(v)))``; ``v + z * sigmoid(frame_conv(spatial mean of z))``. ``frame_conv`` starts at zero, so
    a fresh block passes half its update.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.dw = nn.Conv3d(channels, channels, kernel_size=3, padding=1, groups=channels, bias=False)
        self.pw = _pointwise(channels, channels)
        self.frame_conv = PointwiseConv3d(channels, channels, bias=True)
        nn.init.xavier_uniform_(self.dw.weight)
        nn.init.xavier_uniform_(self.pw.weight)
        nn.init.zeros_(self.frame_conv.weight)
        nn.init.zeros_(self.frame_conv.bias)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        """[B, C, f, h, w] -> [B, C, f, h, w]."""
        update = self.pw(F.silu(self.dw(volume)))
        gate = torch.sigmoid(self.frame_conv(update.mean(dim=(3, 4), keepdim=True)))
        return volume + update * gate


class StackFusion(nn.Module):
    """The reference's ``update=True`` fusion: four frame-gated residual blocks instead of the gated temporal stack.

    ``z = silu(blocks(silu(fuse_pw1(cat(main_embed(x), control_embed(r))))))``, ``v = proj_out(x + fuse_pw2(z))``
    with ``x`` the RGB volume and m = max(4, C // 4) middle channels. ``proj_out`` starts at zero.
    """

    num_blocks = 4

    def __init__(self, dim: int) -> None:
        super().__init__()
        mid = max(4, dim // 4)
        self.main_embed = _pointwise(dim, mid)
        self.control_embed = _pointwise(dim, mid)
        self.fuse_pw1 = _pointwise(2 * mid, mid)
        self.blocks = nn.ModuleList(FrameGatedBlock(mid) for _ in range(self.num_blocks))
        self.fuse_pw2 = _pointwise(mid, dim)
        self.proj_out = _pointwise(dim, dim)
        for conv in (self.main_embed, self.control_embed, self.fuse_pw1, self.fuse_pw2):
            nn.init.xavier_uniform_(conv.weight)
        nn.init.zeros_(self.proj_out.weight)

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Residual tokens [B, f*h*w, C] computed from the RGB tokens and the depth tokens."""
        x, z = _embed_and_merge(self, rgb, depth, grid)
        for block in self.blocks:
            z = block(z)
        return volume_to_tokens(self.proj_out(x + self.fuse_pw2(F.silu(z))))


class LinearFusion(nn.Linear):
    """Zero-initialised bias-free Linear on one stream: the reference's ``use_gate_3d_linear=False`` fusion.

    RGB -> depth modules read the RGB tokens, depth -> RGB modules read the depth tokens. The only key is
    ``weight`` [C, C], so the state-dict names are ``rgb_zero_inits.{j}.weight`` and
    ``control_zero_inits.{j}.weight``.
    """

    def __init__(self, dim: int, reads_depth: bool) -> None:
        super().__init__(dim, dim, bias=False)
        self.reads_depth = reads_depth
        nn.init.zeros_(self.weight)

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Residual tokens: ``weight`` applied to the depth tokens or to the RGB tokens."""
        return super().forward(depth if self.reads_depth else rgb)
