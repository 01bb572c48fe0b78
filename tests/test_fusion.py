"""Fusion modules: the shapes of docs/model.md (State-dict names), the maths against independent F.conv3d formulas,
and the token layout."""
import pytest
import torch
import torch.nn.functional as F

from diffsynth_dualcam.models import LinearFusion, SigmaFusion, StackFusion, tokens_to_volume, volume_to_tokens
from diffsynth_dualcam.models.fusion import PointwiseConv3d


def randomize(module: torch.nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)


def reference_sigma(weights: dict[str, torch.Tensor], rgb, other, f, h, w):
    """docs/model.md, Fusion maths, written out with F.conv3d on weights looked up by their state-dict names."""
    batch, _, channels = rgb.shape
    x = rgb.reshape(batch, f, h, w, channels).permute(0, 4, 1, 2, 3)
    r = other.reshape(batch, f, h, w, channels).permute(0, 4, 1, 2, 3)
    mid = weights["main_embed.weight"].shape[0]
    z = torch.cat([F.conv3d(x, weights["main_embed.weight"]), F.conv3d(r, weights["control_embed.weight"])], dim=1)
    z = F.silu(F.conv3d(z, weights["fuse_pw1.weight"]))
    for k in range(3):
        z = F.conv3d(z, weights[f"fuse_temporal.{k}.weight"], padding=1, groups=mid)
    z = F.conv3d(F.silu(z), weights["fuse_pw2.weight"])
    gate = torch.sigmoid(F.conv3d(z, weights["gate_conv.weight"]))
    v = F.conv3d(x + z * gate, weights["proj_out.weight"])
    return v.permute(0, 2, 3, 4, 1).reshape(batch, f * h * w, channels)


def reference_stack(weights: dict[str, torch.Tensor], rgb, other, f, h, w):
    """The reference's update=True fusion written out with F.conv3d on weights looked up by their names."""
    batch, _, channels = rgb.shape
    x = rgb.reshape(batch, f, h, w, channels).permute(0, 4, 1, 2, 3)
    r = other.reshape(batch, f, h, w, channels).permute(0, 4, 1, 2, 3)
    mid = weights["main_embed.weight"].shape[0]
    z = torch.cat([F.conv3d(x, weights["main_embed.weight"]), F.conv3d(r, weights["control_embed.weight"])], dim=1)
    z = F.silu(F.conv3d(z, weights["fuse_pw1.weight"]))
    for k in range(4):
        update = F.conv3d(F.silu(F.conv3d(z, weights[f"blocks.{k}.dw.weight"], padding=1, groups=mid)),
                          weights[f"blocks.{k}.pw.weight"])
        frame_mean = update.mean(dim=(3, 4), keepdim=True)  # one value per (sample, channel, frame)
        gate = torch.sigmoid(F.conv3d(frame_mean, weights[f"blocks.{k}.frame_conv.weight"],
                                      weights[f"blocks.{k}.frame_conv.bias"]))
        z = z + update * gate
    z = F.conv3d(F.silu(z), weights["fuse_pw2.weight"])
    v = F.conv3d(x + z, weights["proj_out.weight"])
    return v.permute(0, 2, 3, 4, 1).reshape(batch, f * h * w, channels)


@pytest.mark.parametrize("dim, mid", [(48, 12), (16, 8), (1536, 384)])
def test_sigma_fusion_parameter_shapes_follow_the_spec_table(dim, mid):
    with torch.device("meta"):
        fusion = SigmaFusion(dim)
    shapes = {name: list(value.shape) for name, value in fusion.state_dict().items()}
    assert shapes == {
        "main_embed.weight": [mid, dim, 1, 1, 1],
        "control_embed.weight": [mid, dim, 1, 1, 1],
        "fuse_pw1.weight": [mid, 2 * mid, 1, 1, 1],
        "fuse_temporal.0.weight": [mid, 1, 3, 3, 3],
        "fuse_temporal.1.weight": [mid, 1, 3, 3, 3],
        "fuse_temporal.2.weight": [mid, 1, 3, 3, 3],
        "fuse_pw2.weight": [dim, mid, 1, 1, 1],
        "gate_conv.weight": [dim, dim, 1, 1, 1],
        "proj_out.weight": [dim, dim, 1, 1, 1],
    }


def test_sigma_fusion_matches_the_hand_written_formula():
    fusion = SigmaFusion(16)
    randomize(fusion)
    f, h, w = 3, 4, 5
    rgb, other = torch.randn(2, f * h * w, 16), torch.randn(2, f * h * w, 16)
    expected = reference_sigma(fusion.state_dict(), rgb, other, f, h, w)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(fusion(rgb, other, (f, h, w)), expected, rtol=1e-5, atol=1e-5)


def test_sigma_fusion_mixes_neighbouring_frames_and_pixels():
    fusion = SigmaFusion(16)
    randomize(fusion, seed=1)
    f, h, w = 3, 4, 4
    rgb, other = torch.randn(1, f * h * w, 16), torch.randn(1, f * h * w, 16)
    changed = other.clone()
    changed[0, 0] += 1.0  # token (frame 0, row 0, column 0)
    difference = (fusion(rgb, changed, (f, h, w)) - fusion(rgb, other, (f, h, w))).abs().sum(-1)[0]
    difference = difference.reshape(f, h, w)
    # the three 3x3x3 depthwise convolutions reach 3 tokens in every direction
    assert difference[1, 1, 1] > 0 and difference[2, 3, 3] > 0


def test_fresh_sigma_fusion_adds_nothing():
    fusion = SigmaFusion(16)
    assert torch.count_nonzero(fusion.proj_out.weight) == 0
    assert torch.count_nonzero(fusion.gate_conv.weight) > 0
    out = fusion(torch.randn(1, 24, 16), torch.randn(1, 24, 16), (2, 3, 4))
    assert torch.equal(out, torch.zeros_like(out))


def test_tokens_are_laid_out_frame_then_row_then_column():
    f, h, w, c = 2, 3, 4, 5
    tokens = torch.randn(2, f * h * w, c)
    volume = tokens_to_volume(tokens, (f, h, w))
    assert volume.shape == (2, c, f, h, w)
    assert torch.equal(volume[1, :, 1, 2, 3], tokens[1, 1 * h * w + 2 * w + 3])
    assert torch.equal(volume_to_tokens(volume), tokens)


def test_linear_fusion_reads_the_stream_of_its_direction_and_starts_at_zero():
    rgb, depth = torch.randn(2, 6, 8), torch.randn(2, 6, 8)
    rgb_to_depth, depth_to_rgb = LinearFusion(8, reads_depth=False), LinearFusion(8, reads_depth=True)
    assert list(rgb_to_depth.state_dict()) == ["weight"] and rgb_to_depth.bias is None
    assert torch.equal(rgb_to_depth(rgb, depth, (1, 2, 3)), torch.zeros(2, 6, 8))
    weight = torch.randn(8, 8)
    for fusion in (rgb_to_depth, depth_to_rgb):
        fusion.weight.data.copy_(weight)
    torch.testing.assert_close(rgb_to_depth(rgb, depth, (1, 2, 3)), rgb @ weight.T)
    torch.testing.assert_close(depth_to_rgb(rgb, depth, (1, 2, 3)), depth @ weight.T)


@pytest.mark.parametrize("dim, mid", [(48, 12), (8, 4), (1536, 384)])
def test_stack_fusion_parameter_shapes(dim, mid):
    with torch.device("meta"):
        fusion = StackFusion(dim)
    shapes = {name: list(value.shape) for name, value in fusion.state_dict().items()}
    expected = {
        "main_embed.weight": [mid, dim, 1, 1, 1],
        "control_embed.weight": [mid, dim, 1, 1, 1],
        "fuse_pw1.weight": [mid, 2 * mid, 1, 1, 1],
        "fuse_pw2.weight": [dim, mid, 1, 1, 1],
        "proj_out.weight": [dim, dim, 1, 1, 1],
    }
    for k in range(4):
        expected.update({
            f"blocks.{k}.dw.weight": [mid, 1, 3, 3, 3],
            f"blocks.{k}.pw.weight": [mid, mid, 1, 1, 1],
            f"blocks.{k}.frame_conv.weight": [mid, mid, 1, 1, 1],
            f"blocks.{k}.frame_conv.bias": [mid],
        })
    assert shapes == expected


def test_stack_fusion_matches_the_hand_written_formula():
    fusion = StackFusion(16)
    randomize(fusion, seed=2)
    f, h, w = 3, 4, 5
    rgb, other = torch.randn(2, f * h * w, 16), torch.randn(2, f * h * w, 16)
    expected = reference_stack(fusion.state_dict(), rgb, other, f, h, w)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(fusion(rgb, other, (f, h, w)), expected, rtol=1e-5, atol=1e-5)


def test_fresh_stack_fusion_adds_nothing_and_its_frame_gates_start_at_one_half():
    fusion = StackFusion(16)
    assert torch.count_nonzero(fusion.proj_out.weight) == 0
    for block in fusion.blocks:
        assert torch.count_nonzero(block.frame_conv.weight) == 0 and torch.count_nonzero(block.frame_conv.bias) == 0
    volume = torch.randn(1, 4, 2, 3, 3)
    block = fusion.blocks[0]
    half_update = 0.5 * block.pw(F.silu(block.dw(volume)))
    torch.testing.assert_close(block(volume), volume + half_update)
    out = fusion(torch.randn(1, 18, 16), torch.randn(1, 18, 16), (2, 3, 3))
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("bias", [False, True])
def test_pointwise_convolution_equals_conv3d_and_keeps_tokens_channels_last(bias):
    torch.manual_seed(3)
    conv = PointwiseConv3d(8, 5, bias=bias)
    assert isinstance(conv, torch.nn.Conv3d) and conv.weight.shape == (5, 8, 1, 1, 1)
    tokens = torch.randn(2, 3 * 4 * 5, 8)
    volume = tokens_to_volume(tokens, (3, 4, 5))
    for layout in (volume, volume.contiguous()):
        out = conv(layout)
        torch.testing.assert_close(out, F.conv3d(layout, conv.weight, conv.bias), rtol=1e-5, atol=1e-6)
    assert conv(volume).is_contiguous(memory_format=torch.channels_last_3d)
    assert volume_to_tokens(conv(volume)).is_contiguous()
