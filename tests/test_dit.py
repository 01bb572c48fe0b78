"""DualCamCtrlDiT: docs/model.md's forward, block order, batching, equivalence with plain Wan, layout, errors."""
import pytest
import torch
from diffsynth.models.wan_video_dit import (
    CrossAttention,
    WanModel,
    precompute_freqs_cis_3d,
    sinusoidal_embedding_1d,
)
from diffsynth.pipelines.wan_video import model_fn_wan_video

from diffsynth_dualcam.models import (
    OFFICIAL_CONFIG,
    TINY_CONFIG,
    DualCamCtrlDiT,
    LinearFusion,
    SigmaFusion,
    StackFusion,
)
from diffsynth_dualcam.models.dit import ContiguousCrossAttention
from diffsynth_dualcam.models.registry import OFFICIAL_HASH, config_hash

DUAL_KEYS = ("rgb_inject_blocks", "depth_inject_blocks", "control_block_index", "use_gate_3d_linear", "update",
             "text_len")
BASE_CONFIG = {key: value for key, value in TINY_CONFIG.items() if key not in DUAL_KEYS}
FRAMES, HEIGHT, WIDTH = 3, 4, 6  # latent grid: 3 x 2 x 3 tokens


def make_dit(seed: int = 0, **overrides) -> DualCamCtrlDiT:
    """A tiny DiT with every weight random, fusion output projections included."""
    torch.manual_seed(seed)
    dit = DualCamCtrlDiT(**{**TINY_CONFIG, **overrides}).eval()
    with torch.no_grad():
        for name, parameter in dit.named_parameters():
            if "zero_inits" in name:
                parameter.copy_(torch.randn_like(parameter) * 0.2)
    return dit


def make_inputs(batch: int = 1, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    latent = (batch, 16, FRAMES, HEIGHT, WIDTH)
    return {
        "x": randn(*latent), "depth_latents": randn(*latent),
        "timestep": torch.rand(batch, generator=generator) * 1000,
        "context": randn(batch, 7, TINY_CONFIG["text_dim"]), "clip_feature": randn(batch, 257, 1280),
        "y": randn(*latent), "depth_y": randn(*latent),
        "camera_latents": randn(batch, 24, FRAMES, 8 * HEIGHT, 8 * WIDTH),
    }


def take(inputs: dict, index: int) -> dict:
    return {name: value[index:index + 1] for name, value in inputs.items()}


def module_fuse(dit: DualCamCtrlDiT, group: str, index: int, rgb, depth, grid):
    """Residual of fusion module ``index`` of ``group`` (RGB first in both directions)."""
    return getattr(dit, group)[index](rgb, depth, grid)


def linear_fuse(dit: DualCamCtrlDiT, group: str, index: int, rgb, depth, grid):
    """The reference's Linear fusion from its weight: RGB -> depth reads RGB, depth -> RGB reads depth."""
    weight = dit.state_dict()[f"{group}.{index}.weight"]
    return (rgb if group == "rgb_zero_inits" else depth) @ weight.T


def spec_forward(dit: DualCamCtrlDiT, x, depth_latents, timestep, context, clip_feature, y, depth_y, camera_latents,
                 fuse=module_fuse):
    """docs/model.md, Forward pass, written out independently, calling only the DiT's submodules (and ``fuse`` for
    the fusion)."""
    batch, dim = x.shape[0], dit.dim
    t_emb = dit.time_embedding(sinusoidal_embedding_1d(dit.freq_dim, timestep))
    t_mod = dit.time_projection(t_emb).reshape(batch, 6, dim)
    ctx = torch.cat([dit.img_emb(clip_feature), dit.text_embedding(context)], dim=1)
    weight, bias = dit.patch_embedding.weight, dit.patch_embedding.bias
    f, h, w = FRAMES, HEIGHT // 2, WIDTH // 2

    def patchify(latents, condition):
        volume = torch.nn.functional.conv3d(torch.cat([latents, condition], 1), weight, bias, stride=(1, 2, 2))
        return volume.flatten(2).transpose(1, 2)

    camera = dit.control_adapter(camera_latents).flatten(2).transpose(1, 2)
    rgb, depth = patchify(x, y) + camera, patchify(depth_latents, depth_y) + camera
    f_freqs, h_freqs, w_freqs = precompute_freqs_cis_3d(dim // dit.blocks[0].num_heads)
    freqs = torch.cat([
        f_freqs[:f, None, None].expand(f, h, w, -1),
        h_freqs[None, :h, None].expand(f, h, w, -1),
        w_freqs[None, None, :w].expand(f, h, w, -1),
    ], dim=-1).reshape(f * h * w, 1, -1)
    for i, block in enumerate(dit.blocks):
        if i in dit.control_block_index:
            if i in dit.rgb_inject_blocks:
                depth = depth + fuse(dit, "rgb_zero_inits", dit.rgb_inject_blocks.index(i), rgb, depth, (f, h, w))
            depth = dit.control_blocks[dit.control_block_index.index(i)](depth, ctx, t_mod, freqs)
            if i in dit.depth_inject_blocks:
                rgb = rgb + fuse(dit, "control_zero_inits", dit.depth_inject_blocks.index(i), rgb, depth, (f, h, w))
        rgb = block(rgb, ctx, t_mod, freqs)

    def unpatchify(tokens):
        out = dit.head(tokens, t_emb).reshape(batch, f, h, w, 1, 2, 2, 16)
        return out.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(batch, 16, f, 2 * h, 2 * w)

    return unpatchify(rgb), unpatchify(depth)


@torch.no_grad()
def test_forward_equals_the_spec_formula():
    dit, inputs = make_dit(), make_inputs(batch=2)
    rgb, depth = dit(**inputs)
    assert rgb.shape == depth.shape == (2, 16, FRAMES, HEIGHT, WIDTH)
    expected_rgb, expected_depth = spec_forward(dit, **inputs)
    torch.testing.assert_close(rgb, expected_rgb, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(depth, expected_depth, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_linear_variant_forward_equals_the_reference_formula():
    dit, inputs = make_dit(use_gate_3d_linear=False), make_inputs(batch=2, seed=7)
    rgb, depth = dit(**inputs)
    expected_rgb, expected_depth = spec_forward(dit, **inputs, fuse=linear_fuse)
    assert (depth - spec_forward(dit, **inputs, fuse=lambda *_: 0)[1]).abs().max() > 1e-3
    torch.testing.assert_close(rgb, expected_rgb, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(depth, expected_depth, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("use_gate_3d_linear, update, kind", [
    (True, False, SigmaFusion), (True, True, StackFusion), (False, False, LinearFusion), (False, True, LinearFusion),
])
def test_fusion_kind_follows_the_reference_flags(use_gate_3d_linear, update, kind):
    with torch.device("meta"):
        dit = DualCamCtrlDiT(**{**TINY_CONFIG, "use_gate_3d_linear": use_gate_3d_linear, "update": update})
    modules = [*dit.rgb_zero_inits, *dit.control_zero_inits]
    assert len(modules) == 4 and all(type(module) is kind for module in modules)
    assert dit.config["update"] is update


@torch.no_grad()
def test_stack_fusion_variant_forward_equals_the_spec_formula():
    dit, inputs = make_dit(update=True), make_inputs(seed=8)
    rgb, depth = dit(**inputs)
    expected_rgb, expected_depth = spec_forward(dit, **inputs)
    torch.testing.assert_close(rgb, expected_rgb, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(depth, expected_depth, rtol=1e-5, atol=1e-5)
    dit.reset_fusion()
    assert all(type(module) is StackFusion for module in [*dit.rgb_zero_inits, *dit.control_zero_inits])
    plain_rgb, _ = dit(**inputs)
    assert (rgb - plain_rgb).abs().max() > 1e-3


@torch.no_grad()
def test_fusion_changes_both_branches():
    dit, inputs = make_dit(), make_inputs()
    rgb, depth = dit(**inputs)
    dit.reset_fusion()
    plain_rgb, plain_depth = dit(**inputs)
    assert (rgb - plain_rgb).abs().max() > 1e-3 and (depth - plain_depth).abs().max() > 1e-3


@torch.no_grad()
def test_blocks_and_fusions_run_in_spec_order():
    dit = make_dit(control_block_index=[1, 2, 3], rgb_inject_blocks=[1, 3], depth_inject_blocks=[2, 3])
    calls = []
    for group in ("blocks", "control_blocks", "rgb_zero_inits", "control_zero_inits"):
        for index, module in enumerate(getattr(dit, group)):
            module.register_forward_pre_hook(lambda *_, name=f"{group}.{index}": calls.append(name))
    dit(**make_inputs())
    assert calls == [
        "blocks.0",
        "rgb_zero_inits.0", "control_blocks.0", "blocks.1",
        "control_blocks.1", "control_zero_inits.0", "blocks.2",
        "rgb_zero_inits.1", "control_blocks.2", "control_zero_inits.1", "blocks.3",
    ]


@torch.no_grad()
def test_fusion_receives_rgb_first_in_both_directions():
    dit = make_dit()  # rgb_inject_blocks [0, 1], depth_inject_blocks [1, 2]
    record = {}

    def keep(name):
        return lambda _, args, output=None: record.setdefault(name, args if output is None else output)

    dit.rgb_zero_inits[0].register_forward_pre_hook(keep("rgb_to_depth"))
    dit.control_zero_inits[0].register_forward_pre_hook(keep("depth_to_rgb"))
    dit.blocks[0].register_forward_pre_hook(keep("rgb_into_block_0"))
    dit.blocks[0].register_forward_hook(keep("rgb_out_of_block_0"))
    dit.control_blocks[0].register_forward_pre_hook(keep("depth_into_block_0"))
    dit.control_blocks[1].register_forward_hook(keep("depth_out_of_block_1"))
    dit(**make_inputs())
    assert torch.equal(record["rgb_to_depth"][0], record["rgb_into_block_0"][0])
    assert not torch.equal(record["rgb_to_depth"][1], record["depth_into_block_0"][0])  # fused before depth block 0
    assert torch.equal(record["depth_to_rgb"][0], record["rgb_out_of_block_0"])
    assert torch.equal(record["depth_to_rgb"][1], record["depth_out_of_block_1"])


@torch.no_grad()
def test_batch_of_two_equals_two_single_calls():
    dit, inputs = make_dit(), make_inputs(batch=2, seed=3)
    rgb, depth = dit(**inputs)
    for index in range(2):
        single_rgb, single_depth = dit(**take(inputs, index))
        torch.testing.assert_close(rgb[index:index + 1], single_rgb, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(depth[index:index + 1], single_depth, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_shared_timestep_and_cached_camera_broadcast_over_the_batch():
    dit, inputs = make_dit(), make_inputs(batch=2, seed=4)
    inputs["timestep"] = torch.tensor([321.0, 321.0])
    inputs["camera_latents"] = inputs["camera_latents"][:1].expand(2, -1, -1, -1, -1)
    rgb, depth = dit(**inputs)
    camera_embedding = dit.embed_camera(inputs.pop("camera_latents")[:1])
    assert camera_embedding.shape == (1, FRAMES * (HEIGHT // 2) * (WIDTH // 2), dit.dim)
    inputs["timestep"] = torch.tensor([321.0])
    cached_rgb, cached_depth = dit(**inputs, camera_embedding=camera_embedding)
    torch.testing.assert_close(cached_rgb, rgb, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cached_depth, depth, rtol=1e-5, atol=1e-5)


SHARED_INPUTS = ("x", "depth_latents", "timestep", "clip_feature", "y", "depth_y", "camera_latents")


@pytest.mark.parametrize("overrides", [
    {},
    {"use_gate_3d_linear": True, "update": True},
    {"use_gate_3d_linear": False},
    {"control_block_index": [2, 3], "rgb_inject_blocks": [2], "depth_inject_blocks": [3]},
    {"has_image_input": False, "in_dim": 16},
], ids=["sigma", "stack", "linear", "depth-from-block-2", "no-image"])
@torch.no_grad()
def test_inputs_of_batch_one_are_shared_by_every_context(overrides):
    dit, inputs = make_dit(**overrides), make_inputs(batch=1, seed=6)
    if not dit.has_image_input:
        inputs.pop("clip_feature")
        inputs.update(y=None, depth_y=None)
    contexts = torch.cat([inputs["context"], torch.randn(2, *inputs["context"].shape[1:])])
    repeated = {name: None if value is None else value.repeat(3, *[1] * (value.ndim - 1))
                for name, value in inputs.items()}
    expected = dit(**{**repeated, "context": contexts})
    shared = dit(**{**inputs, "context": contexts})
    for ours, reference in zip(shared, expected):
        assert ours.shape == reference.shape == (3, 16, FRAMES, HEIGHT, WIDTH)
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_shared_inputs_run_everything_before_the_first_cross_attention_once():
    dit, inputs = make_dit(), make_inputs(batch=1, seed=7)
    batches: dict[str, list[int]] = {}

    def record(name):
        return lambda module, args: batches.setdefault(name, []).append(args[0].shape[0])

    hooks = [dit.patch_embedding.register_forward_pre_hook(record("patch_embedding")),
             dit.rgb_zero_inits[0].register_forward_pre_hook(record("first_fusion"))]
    for branch, blocks in (("rgb", dit.blocks), ("depth", dit.control_blocks)):
        for index, block in enumerate(blocks):
            hooks.append(block.self_attn.register_forward_pre_hook(record(f"{branch}_self_attn_{index}")))
    dit(**{**inputs, "context": inputs["context"].repeat(2, 1, 1)})
    for hook in hooks:
        hook.remove()
    assert batches["patch_embedding"] == [1, 1] and batches["first_fusion"] == [1]
    assert batches["rgb_self_attn_0"] == batches["depth_self_attn_0"] == [1]
    assert batches["rgb_self_attn_1"] == batches["depth_self_attn_1"] == [2]


@pytest.mark.parametrize("camera", ["camera_latents", "camera_embedding", None])
def test_every_block_of_both_branches_gets_a_contiguous_residual_stream(camera):
    dit, inputs = make_dit(), make_inputs(batch=2, seed=3)
    if camera == "camera_embedding":
        inputs["camera_embedding"] = dit.embed_camera(inputs.pop("camera_latents"))
    elif camera is None:
        inputs.pop("camera_latents")
    contiguous: dict[str, bool] = {}
    hooks = [block.register_forward_pre_hook(
        lambda module, args, name=f"{branch}_{index}": contiguous.__setitem__(name, args[0].is_contiguous()))
        for branch, blocks in (("rgb", dit.blocks), ("depth", dit.control_blocks))
        for index, block in enumerate(blocks)]
    with torch.no_grad():
        dit(**inputs)
    for hook in hooks:
        hook.remove()
    assert len(contiguous) == len(dit.blocks) + len(dit.control_blocks)
    assert all(contiguous.values()), contiguous


def test_inputs_of_other_batches_are_refused():
    inputs = make_inputs(batch=2)
    inputs["context"] = torch.randn(3, *inputs["context"].shape[1:])
    with pytest.raises(ValueError, match=r"batch 3 or 1 .*'x': 2"):
        make_dit()(**inputs)


@torch.no_grad()
def test_upstream_patchify_drops_the_batch_and_the_subclass_keeps_it():
    dit = make_dit()
    wan = WanModel(**BASE_CONFIG).eval()
    wan.load_state_dict({k: v for k, v in dit.state_dict().items() if k in wan.state_dict()})
    inputs = make_inputs(batch=2)
    latents = torch.cat([inputs["x"], inputs["y"]], dim=1)
    assert wan.patchify(latents, inputs["camera_latents"]).shape[0] == 1, "upstream WanModel.patchify was fixed"
    ours = dit.patchify(latents, inputs["camera_latents"])
    assert ours.shape[0] == 2
    for index in range(2):
        single = wan.patchify(latents[index:index + 1], inputs["camera_latents"][index:index + 1])
        torch.testing.assert_close(ours[index:index + 1], single)


@torch.no_grad()
def test_zero_fusion_leaves_each_branch_equal_to_plain_wan():
    dit, inputs = make_dit(), make_inputs(seed=5)
    dit.copy_rgb_blocks_to_depth()
    dit.reset_fusion()
    rgb, depth = dit(**inputs)
    wan = WanModel(**BASE_CONFIG).eval()
    wan.load_state_dict({k: v for k, v in dit.state_dict().items() if k in wan.state_dict()}, strict=True)
    common = {"dit": wan, "timestep": inputs["timestep"], "context": inputs["context"],
              "clip_feature": inputs["clip_feature"], "control_camera_latents_input": inputs["camera_latents"]}
    wan_rgb = model_fn_wan_video(latents=inputs["x"], y=inputs["y"], **common)
    wan_depth = model_fn_wan_video(latents=inputs["depth_latents"], y=inputs["depth_y"], **common)
    torch.testing.assert_close(rgb, wan_rgb, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(depth, wan_depth, rtol=1e-5, atol=1e-5)


def test_gradient_checkpointing_recomputes_and_gives_the_same_gradients():
    inputs = make_inputs(seed=6)
    results = []
    for checkpointing in (False, True):
        dit = make_dit().train()
        runs = []
        for module in (dit.blocks[0], dit.control_blocks[0], dit.rgb_zero_inits[0]):
            module.register_forward_pre_hook(lambda module, _, runs=runs: runs.append(module))
        rgb, depth = dit(**inputs, use_gradient_checkpointing=checkpointing)
        (rgb.square().mean() + depth.square().mean()).backward()
        results.append((len(runs), {name: p.grad for name, p in dit.named_parameters()}))
    (plain_runs, plain_grads), (checkpointed_runs, checkpointed_grads) = results
    assert plain_runs == 3 and checkpointed_runs == 6  # each checkpointed module runs again in backward
    for name, grad in plain_grads.items():
        torch.testing.assert_close(checkpointed_grads[name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_reference_layout_state_dict_loads_strictly():
    """Key names and shapes built from docs/model.md (State-dict names), independently of the DiT class."""
    with torch.device("meta"):
        wan_shapes = {k: v.shape for k, v in WanModel(**BASE_CONFIG).state_dict().items()}
    block_shapes = {k[len("blocks.0."):]: v for k, v in wan_shapes.items() if k.startswith("blocks.0.")}
    c, m = TINY_CONFIG["dim"], max(8, TINY_CONFIG["dim"] // 4)
    fusion_shapes = {"main_embed.weight": (m, c, 1, 1, 1), "control_embed.weight": (m, c, 1, 1, 1),
                     "fuse_pw1.weight": (m, 2 * m, 1, 1, 1), "fuse_pw2.weight": (c, m, 1, 1, 1),
                     "gate_conv.weight": (c, c, 1, 1, 1), "proj_out.weight": (c, c, 1, 1, 1),
                     **{f"fuse_temporal.{k}.weight": (m, 1, 3, 3, 3) for k in range(3)}}
    shapes = dict(wan_shapes)
    for k in range(len(TINY_CONFIG["control_block_index"])):
        shapes.update({f"control_blocks.{k}.{name}": shape for name, shape in block_shapes.items()})
    for group, blocks in (("rgb_zero_inits", "rgb_inject_blocks"), ("control_zero_inits", "depth_inject_blocks")):
        for j in range(len(TINY_CONFIG[blocks])):
            shapes.update({f"{group}.{j}.{name}": shape for name, shape in fusion_shapes.items()})
    state_dict = {name: torch.randn(shape) for name, shape in shapes.items()}
    dit = DualCamCtrlDiT(**TINY_CONFIG)
    dit.load_state_dict(state_dict, strict=True)
    name = "control_zero_inits.1.fuse_temporal.2.weight"
    assert torch.equal(dit.control_zero_inits[1].fuse_temporal[2].weight, state_dict[name])


def test_linear_fusion_variant_has_one_weight_per_module():
    dit = DualCamCtrlDiT(**{**TINY_CONFIG, "use_gate_3d_linear": False})
    fusion_keys = {k: list(v.shape) for k, v in dit.state_dict().items() if "zero_inits" in k}
    c = TINY_CONFIG["dim"]
    assert fusion_keys == {"rgb_zero_inits.0.weight": [c, c], "rgb_zero_inits.1.weight": [c, c],
                           "control_zero_inits.0.weight": [c, c], "control_zero_inits.1.weight": [c, c]}
    with torch.no_grad():
        rgb, depth = dit(**make_inputs())
    assert torch.isfinite(rgb).all() and torch.isfinite(depth).all()


def test_none_means_no_blocks_as_in_the_reference():
    dit = DualCamCtrlDiT(**{**TINY_CONFIG, "control_block_index": [0], "rgb_inject_blocks": None,
                            "depth_inject_blocks": None})
    assert dit.rgb_inject_blocks == dit.depth_inject_blocks == [] and len(dit.control_blocks) == 1


def test_reference_yaml_dit_section_builds_the_official_layout():
    """The reference's model_config YAML ``dit:`` section (with its ``text_len``) builds our official model."""
    section = {
        "dim": 1536, "in_dim": 32, "ffn_dim": 8960, "out_dim": 16, "text_dim": 4096, "freq_dim": 256, "eps": 1.0e-06,
        "patch_size": [1, 2, 2], "num_heads": 12, "num_layers": 30, "has_image_input": True, "text_len": 512,
        "in_dim_control_adapter": 24, "rgb_inject_blocks": [0, 1, 2, 3, 4],
        "depth_inject_blocks": [5, 6, 7, 8, 9, 10, 11, 12, 13, 14], "use_gate_3d_linear": True, "update": False,
        "control_block_index": list(range(30)), "add_control_adapter": True,
    }
    with torch.device("meta"):
        dit = DualCamCtrlDiT(**section)
    assert dit.config == OFFICIAL_CONFIG
    assert config_hash(section) == OFFICIAL_HASH


@pytest.mark.parametrize("overrides, message", [
    ({"text_len": 0}, "text_len must be a positive int"),
    ({"rgb_inject_blocks": [0, 5]}, "rgb_inject_blocks entries [5]"),
    ({"control_block_index": [0, 1], "depth_inject_blocks": [2]}, "depth_inject_blocks entries [2]"),
    ({"control_block_index": [0, 0]}, "repeated"),
    ({"dim": 32}, "head size"),
    ({"bogus": 1}, "bogus"),
])
def test_invalid_configs_are_refused(overrides, message):
    with pytest.raises((ValueError, TypeError), match=message.replace("[", r"\[").replace("]", r"\]")):
        DualCamCtrlDiT(**{**TINY_CONFIG, **overrides})


@pytest.mark.parametrize("change, message", [
    ({"clip_feature": None}, "clip_feature"),
    ({"depth_y": None}, "depth_y"),
    ({"y": torch.zeros(1, 8, FRAMES, HEIGHT, WIDTH)}, "in_dim|32"),
    ({"camera_latents": torch.zeros(1, 6, FRAMES, 8 * HEIGHT, 8 * WIDTH)}, "packed Plücker"),
    ({"camera_latents": torch.zeros(1, 24, FRAMES, 4 * HEIGHT, 4 * WIDTH)}, "8x the latent size"),
])
def test_bad_inputs_give_clear_errors(change, message):
    dit = make_dit()
    with pytest.raises(ValueError, match=message):
        dit(**{**make_inputs(), **change})


def test_camera_without_adapter_is_refused():
    dit = DualCamCtrlDiT(**{**TINY_CONFIG, "add_control_adapter": False})
    with pytest.raises(ValueError, match="no camera adapter"):
        dit(**make_inputs())


@torch.no_grad()
def test_timestep_sinusoid_is_cosines_then_sines_in_float64():
    dit, inputs = make_dit(), make_inputs(batch=2, seed=9)
    inputs["timestep"] = torch.tensor([999.0, 3.5])
    seen = []
    dit.time_embedding.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    dit(**inputs)
    half = TINY_CONFIG["freq_dim"] // 2
    angles = inputs["timestep"].double()[:, None] * 10000.0 ** (-torch.arange(half, dtype=torch.float64) / half)
    expected = torch.cat([angles.cos(), angles.sin()], dim=1).float()
    assert seen[0].dtype == torch.float32
    torch.testing.assert_close(seen[0], expected, rtol=0, atol=1e-7)


def test_rope_frequencies_split_the_head_over_frame_height_and_width():
    dit = make_dit()
    head_pairs = TINY_CONFIG["dim"] // TINY_CONFIG["num_heads"] // 2  # 12 complex pairs: 4 frame, 4 height, 4 width
    grid = (3, 2, 5)
    freqs = dit.rope_frequencies(grid, torch.device("cpu"))
    assert freqs.shape == (30, 1, head_pairs) and freqs.dtype == torch.complex128
    rates = 10000.0 ** (-torch.arange(0, 8, 2, dtype=torch.float64) / 8)  # each axis has 8 of the 24 dims
    for token, (f, h, w) in enumerate((f, h, w) for f in range(3) for h in range(2) for w in range(5)):
        angles = torch.cat([f * rates, h * rates, w * rates])
        torch.testing.assert_close(freqs[token, 0], torch.polar(torch.ones_like(angles), angles))


def projection_input_contiguity(attention: torch.nn.Module, x: torch.Tensor, context: torch.Tensor) -> dict:
    """Whether each key/value projection of a cross-attention call got a contiguous input."""
    seen = {}
    hooks = [getattr(attention, name).register_forward_hook(
        lambda module, inputs, output, name=name: seen.__setitem__(name, inputs[0].is_contiguous()))
        for name in ("k", "v", "k_img", "v_img")]
    attention(x, context)
    for hook in hooks:
        hook.remove()
    return seen


@pytest.mark.parametrize("has_image_input", [True, False])
def test_contiguous_cross_attention_equals_upstream(has_image_input):
    torch.manual_seed(0)
    upstream = CrossAttention(24, 2, has_image_input=has_image_input)
    ours = ContiguousCrossAttention(24, 2, has_image_input=has_image_input)
    ours.load_state_dict(upstream.state_dict(), strict=True)
    x, context = torch.randn(2, 6, 24), torch.randn(2, 257 * has_image_input + 5, 24)
    torch.testing.assert_close(ours(x, context), upstream(x, context), rtol=1e-6, atol=1e-6)


def test_upstream_cross_attention_projects_non_contiguous_slices_and_the_subclass_does_not():
    # Batch 2 (merged guidance): upstream's y[:, :257] / y[:, 257:] are non-contiguous views, which send the
    # key/value Linear layers to a slower bmm path on the CPU. If upstream stops slicing, this subclass can go.
    torch.manual_seed(0)
    upstream = CrossAttention(24, 2, has_image_input=True)
    ours = ContiguousCrossAttention(24, 2, has_image_input=True)
    x, context = torch.randn(2, 6, 24), torch.randn(2, 257 + 5, 24)
    assert projection_input_contiguity(upstream, x, context) == {"k": False, "v": False, "k_img": False,
                                                                   "v_img": False}
    assert projection_input_contiguity(ours, x, context) == {"k": True, "v": True, "k_img": True, "v_img": True}


def test_every_rgb_and_depth_block_uses_the_contiguous_cross_attention():
    dit = make_dit()
    assert all(type(block.cross_attn) is ContiguousCrossAttention for block in (*dit.blocks, *dit.control_blocks))
    assert len(dit.control_blocks) > 0
