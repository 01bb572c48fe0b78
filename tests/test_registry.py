"""Registration with DiffSynth: layout hashes, ModelPool auto-detection, offloaded loading."""
import json

import pytest
import torch
from diffsynth.configs import MODEL_CONFIGS, VRAM_MANAGEMENT_MODULE_MAPS
from diffsynth.core.loader.file import hash_model_file
from diffsynth.models.model_loader import ModelPool
from safetensors.torch import save_file

import diffsynth_dualcam
from diffsynth_dualcam import DualCamCtrlDiT, register_checkpoint
from diffsynth_dualcam.models import OFFICIAL_CONFIG, TINY_CONFIG
from diffsynth_dualcam.models.checkpoints import save_dit
from diffsynth_dualcam.models.registry import (
    CONFIG_METADATA_KEY,
    MODEL_CLASS,
    MODEL_NAME,
    OFFICIAL_HASH,
    config_hash,
    config_shapes,
)

SAFETENSORS_DTYPES = {"F32": 4, "BF16": 2}
FLOAT32_ON_CPU = {f"{stage}_{kind}": value for stage in ("onload", "preparing", "computation")
                  for kind, value in (("dtype", torch.float32), ("device", "cpu"))}


def entries_for(model_hash: str) -> list[dict]:
    return [entry for entry in MODEL_CONFIGS if entry["model_hash"] == model_hash]


def write_sparse_safetensors(path, shapes: dict[str, list[int]], dtype: str = "BF16") -> None:
    """A valid safetensors file of zeros whose data is a hole in the file system (the header is all that is read)."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = SAFETENSORS_DTYPES[dtype] * int(torch.tensor(shape).prod()) if shape else SAFETENSORS_DTYPES[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as file:
        file.write(len(encoded).to_bytes(8, "little") + encoded)
        file.truncate(8 + len(encoded) + offset)


def random_tiny_dit(**overrides) -> DualCamCtrlDiT:
    torch.manual_seed(0)
    dit = DualCamCtrlDiT(**{**TINY_CONFIG, **overrides}).eval()
    with torch.no_grad():
        for name, parameter in dit.named_parameters():
            if "zero_inits" in name:
                parameter.normal_(std=0.1)
    return dit


def tiny_inputs() -> dict:
    torch.manual_seed(1)
    latent = (1, 16, 2, 4, 4)
    return {"x": torch.randn(latent), "depth_latents": torch.randn(latent), "timestep": torch.tensor([700.0]),
            "context": torch.randn(1, 5, TINY_CONFIG["text_dim"]), "clip_feature": torch.randn(1, 257, 1280),
            "y": torch.randn(latent), "depth_y": torch.randn(latent), "camera_latents": torch.randn(1, 24, 2, 32, 32)}


def test_importing_the_package_registers_the_official_layout():
    assert diffsynth_dualcam.OFFICIAL_CONFIG is OFFICIAL_CONFIG
    (entry,) = entries_for(OFFICIAL_HASH)
    assert entry["model_name"] == MODEL_NAME == "dualcamctrl_dit"
    assert entry["model_class"] == MODEL_CLASS and entry["extra_kwargs"] == OFFICIAL_CONFIG
    module_map = VRAM_MANAGEMENT_MODULE_MAPS[MODEL_CLASS]
    for covered in ("torch.nn.Linear", "torch.nn.Conv3d", "torch.nn.Conv2d", "torch.nn.LayerNorm",
                    "diffsynth.models.wan_video_dit.RMSNorm", "diffsynth.models.wan_video_dit.DiTBlock"):
        assert covered in module_map
    # the three-argument Linear fusion is wrapped whole, so it must match before torch.nn.Linear
    assert list(module_map).index("diffsynth_dualcam.models.fusion.LinearFusion") < list(module_map).index(
        "torch.nn.Linear")


def test_official_layout_file_is_detected_by_its_hash(tmp_path):
    """A zero-filled sparse file with the official names and shapes (6.5 GB in bf16, nothing on disk)."""
    shapes = config_shapes(OFFICIAL_CONFIG)
    block_keys = [k for k in shapes if k.startswith("blocks.0.")]
    assert len([k for k in shapes if k.startswith("control_blocks.")]) == 30 * len(block_keys)
    assert len([k for k in shapes if k.startswith("rgb_zero_inits.")]) == 5 * 9
    assert len([k for k in shapes if k.startswith("control_zero_inits.")]) == 10 * 9
    path = tmp_path / "official.safetensors"
    write_sparse_safetensors(path, shapes)
    assert hash_model_file(str(path)) == OFFICIAL_HASH
    wan_camera_hash = "ac6a5aa74f4a0aab6f64eb9a72f19901"  # DiffSynth's Wan2.1-Fun-V1.1-1.3B-Control-Camera entry
    wan_only = {k: v for k, v in shapes.items() if not k.startswith(("control_blocks", "rgb_zero", "control_zero"))}
    write_sparse_safetensors(path, wan_only)
    assert hash_model_file(str(path)) == wan_camera_hash


def test_registered_checkpoint_loads_through_model_pool(tmp_path):
    dit = random_tiny_dit()
    path = save_dit(dit, tmp_path / "dit.safetensors")
    model_hash = register_checkpoint(path)
    assert model_hash == config_hash(TINY_CONFIG) == hash_model_file(str(path))
    assert len(entries_for(model_hash)) == 1
    register_checkpoint(path)  # registering again replaces, never duplicates
    assert len(entries_for(model_hash)) == 1
    pool = ModelPool()
    pool.auto_load_model(str(path), vram_config={**pool.default_vram_config(), **FLOAT32_ON_CPU})
    loaded = pool.fetch_model("dualcamctrl_dit")
    assert isinstance(loaded, DualCamCtrlDiT) and loaded.config == dit.config
    for name, value in dit.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


@pytest.mark.parametrize("offload_device, use_gate_3d_linear", [("cpu", True), ("disk", True), ("disk", False)])
def test_offloaded_load_computes_the_same_velocities(tmp_path, offload_device, use_gate_3d_linear):
    dit = random_tiny_dit(use_gate_3d_linear=use_gate_3d_linear)
    path = save_dit(dit, tmp_path / "dit.safetensors")
    register_checkpoint(path)
    offload_dtype = "disk" if offload_device == "disk" else torch.float32
    pool = ModelPool()
    pool.auto_load_model(str(path), vram_config={
        "offload_dtype": offload_dtype, "offload_device": offload_device, **FLOAT32_ON_CPU})
    managed = pool.fetch_model("dualcamctrl_dit")
    assert managed.vram_management_enabled
    wrapped = [module for module in managed.modules() if hasattr(module, "onload")]
    assert any(type(module).__name__ == "AutoWrappedNonRecurseModule" for module in wrapped)  # the DiT blocks
    for module in wrapped:
        module.onload()
    inputs = tiny_inputs()
    with torch.no_grad():
        expected, got = dit(**inputs), managed(**inputs)
    for a, b in zip(expected, got):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_plain_safetensors_needs_a_config(tmp_path):
    dit = random_tiny_dit()
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in dit.state_dict().items()}, str(path))
    with pytest.raises(ValueError, match="no DualCamCtrl config metadata"):
        register_checkpoint(path)
    assert register_checkpoint(path, config=TINY_CONFIG) == config_hash(TINY_CONFIG)


def test_a_damaged_safetensors_file_is_named_in_the_error(tmp_path):
    dit = random_tiny_dit()
    path = tmp_path / "dit.safetensors"
    save_file({k: v.contiguous() for k, v in dit.state_dict().items()}, str(path))
    path.write_bytes(path.read_bytes()[:5])
    with pytest.raises(ValueError, match=r"dit.safetensors: not a readable safetensors file, truncated or corrupt"):
        register_checkpoint(path)
    save_file({"weight": torch.zeros(1)}, str(path), metadata={CONFIG_METADATA_KEY: "[1, 2]"})
    with pytest.raises(ValueError, match="metadata is not a JSON object"):
        register_checkpoint(path)


def test_config_that_does_not_fit_the_file_is_refused(tmp_path):
    dit = random_tiny_dit()
    path = tmp_path / "plain.safetensors"
    state_dict = {k: v.contiguous() for k, v in dit.state_dict().items() if not k.startswith("rgb_zero_inits.1.")}
    save_file(state_dict, str(path))
    with pytest.raises(ValueError, match=r"missing keys: rgb_zero_inits\.1\.control_embed\.weight"):
        register_checkpoint(path, config=TINY_CONFIG)
    saved = save_dit(dit, tmp_path / "with_metadata.safetensors")
    with pytest.raises(ValueError, match="differs from the config stored"):
        register_checkpoint(saved, config={**TINY_CONFIG, "num_layers": 5, "control_block_index": [0]})
    with pytest.raises(FileNotFoundError):
        register_checkpoint(tmp_path / "absent.safetensors", config=TINY_CONFIG)


def test_refused_registration_leaves_the_registry_unchanged(tmp_path):
    dit = random_tiny_dit()
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in dit.state_dict().items()}, str(path))
    before = [dict(entry) for entry in MODEL_CONFIGS]
    other = {**TINY_CONFIG, "num_layers": 5}
    with pytest.raises(ValueError, match="does not have the layout"):
        register_checkpoint(path, config=other)
    assert MODEL_CONFIGS == before


def test_config_argument_may_leave_out_defaults(tmp_path):
    dit = random_tiny_dit()
    path = save_dit(dit, tmp_path / "dit.safetensors")
    spelled_short = {key: value for key, value in TINY_CONFIG.items() if key not in ("update", "text_len")}
    assert register_checkpoint(path, config=spelled_short) == config_hash(TINY_CONFIG)
    with pytest.raises(ValueError, match="differs from the config stored"):
        register_checkpoint(path, config={**spelled_short, "update": True})


def test_same_layout_other_fusion_blocks_warns_and_the_latest_registration_loads(tmp_path):
    first = random_tiny_dit(rgb_inject_blocks=[0, 1], depth_inject_blocks=[1, 2])
    second = random_tiny_dit(rgb_inject_blocks=[2, 3], depth_inject_blocks=[0, 3])
    path_first = save_dit(first, tmp_path / "first.safetensors")
    path_second = save_dit(second, tmp_path / "second.safetensors")
    assert register_checkpoint(path_first) == register_checkpoint(path_first)  # the same config: no warning
    with pytest.warns(diffsynth_dualcam.models.registry.LayoutCollisionWarning, match=r"rgb_inject_blocks.*\[2, 3\]"):
        register_checkpoint(path_second)
    with pytest.warns(diffsynth_dualcam.models.registry.LayoutCollisionWarning, match=r"\[0, 1\]"):
        register_checkpoint(path_first)
    pool = ModelPool()
    pool.auto_load_model(str(path_first), vram_config={**pool.default_vram_config(), **FLOAT32_ON_CPU})
    loaded = pool.fetch_model("dualcamctrl_dit")
    assert loaded.rgb_inject_blocks == [0, 1] and loaded.depth_inject_blocks == [1, 2]
