"""Checkpoints: safetensors round trips, official .pt conversion, refusals, the Wan start point, finding the DiT."""
from pathlib import Path

import pytest
import torch
from diffsynth.models.wan_video_dit import WanModel
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from diffsynth_dualcam import cli
from diffsynth_dualcam.models import TINY_CONFIG, DualCamCtrlDiT
from diffsynth_dualcam.models.checkpoints import (
    DIT_FILE_NAME,
    OFFICIAL_FILE_NAME,
    OFFICIAL_REPO_ID,
    convert_official_checkpoint,
    dit_from_wan_camera,
    load_dit,
    official_dit_path,
    save_dit,
    write_safetensors,
)
from diffsynth_dualcam.models.registry import read_config_metadata

WAN_CONFIG = {k: v for k, v in TINY_CONFIG.items()
              if k not in ("rgb_inject_blocks", "depth_inject_blocks", "control_block_index", "use_gate_3d_linear",
                           "update", "text_len")}


def random_dit(seed: int = 0) -> DualCamCtrlDiT:
    torch.manual_seed(seed)
    dit = DualCamCtrlDiT(**TINY_CONFIG).eval()
    with torch.no_grad():
        for name, parameter in dit.named_parameters():
            if "zero_inits" in name:
                parameter.normal_(std=0.1)
    return dit


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        assert torch.equal(state_a[name], state_b[name]), name


def training_module_checkpoint(dit: DualCamCtrlDiT, path: Path, prefix: str = "pipe.dit.") -> dict:
    extras = {"pipe.vae.model.conv.weight": torch.randn(4, 3), "pipe.text_encoder.token_embedding.weight":
              torch.randn(10, 4).to(torch.bfloat16), "pipe.image_encoder.proj": torch.randn(2)}
    torch.save({**{prefix + k: v for k, v in dit.state_dict().items()}, **extras}, path)
    return extras


class RunsCode:
    """Unpickling this object calls ``Path.touch(marker)``: a stand-in for any code a pickle can run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_write_safetensors_is_read_back_by_safetensors(tmp_path):
    tensors = {"f32": torch.randn(3, 4), "bf16": torch.randn(5).to(torch.bfloat16), "f16": torch.randn(2, 2).half(),
               "i64": torch.arange(6).reshape(2, 3), "bool": torch.tensor([True, False, True]),
               "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3), "strided": torch.randn(4, 6)[:, ::2]}
    path = write_safetensors(tmp_path / "t.safetensors", tensors.items(), {"note": "x"})
    loaded = load_file(str(path))
    assert loaded.keys() == tensors.keys()
    for name, value in tensors.items():
        assert loaded[name].dtype == value.dtype and torch.equal(loaded[name], value), name
    with safe_open(str(path), framework="pt") as file:
        assert file.metadata() == {"note": "x"}
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]  # no temporary file left


def test_failed_write_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="complex64"):
        write_safetensors(tmp_path / "bad.safetensors", [("c", torch.zeros(2, dtype=torch.complex64))])
    assert list(tmp_path.iterdir()) == []


def test_save_and_load_dit_round_trip(tmp_path):
    dit = random_dit()
    path = save_dit(dit, tmp_path / "dit.safetensors")
    assert read_config_metadata(path) == dit.config
    loaded = load_dit(path)
    assert isinstance(loaded, DualCamCtrlDiT) and loaded.config == dit.config and not loaded.training
    assert_same_weights(dit, loaded)
    assert load_dit(path, torch_dtype=torch.bfloat16).patch_embedding.weight.dtype == torch.bfloat16


@pytest.mark.parametrize("prefix", ["pipe.dit.", "module.pipe.dit.", "dit."])
def test_official_checkpoint_converts_to_safetensors(tmp_path, prefix):
    dit = random_dit()
    source = tmp_path / OFFICIAL_FILE_NAME
    extras = training_module_checkpoint(dit, source, prefix)
    written = convert_official_checkpoint(source, tmp_path / "out", config=TINY_CONFIG)
    assert written["dit"] == tmp_path / "out" / DIT_FILE_NAME
    assert sorted(written) == ["dit", "image_encoder", "text_encoder", "vae"]
    assert_same_weights(dit, load_dit(written["dit"]))
    for key, value in extras.items():
        component, name = key[len("pipe."):].split(".", 1)
        stored = load_file(str(written[component]))
        assert torch.equal(stored[name], value) and stored[name].dtype == value.dtype


def test_conversion_through_the_command_line(tmp_path, capsys):
    dit = random_dit()
    source = tmp_path / "in.pt"
    torch.save({"pipe.dit." + k: v for k, v in dit.state_dict().items()}, source)
    # the official layout is too big for a test: the command line converts with the official config,
    # so a tiny checkpoint must fail with a key report and exit code 2, and write nothing
    assert cli.main(["convert-checkpoint", str(source), str(tmp_path / "b")]) == 2
    error = capsys.readouterr().err
    assert "does not match the DualCamCtrl DiT layout" in error and "missing keys" in error
    assert not (tmp_path / "b").exists()


def test_malicious_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"
    source = tmp_path / "evil.pt"
    torch.save({"pipe.dit.patch_embedding.weight": torch.zeros(1), "payload": RunsCode(marker)}, source)
    with pytest.raises(ValueError, match="needs full unpickling.*refused") as refusal:
        convert_official_checkpoint(source, tmp_path / "out", config=TINY_CONFIG)
    assert "Unsupported global" in str(refusal.value)  # what the file holds
    assert "weights_only" not in str(refusal.value)  # never the advice to load it with full unpickling
    assert not marker.exists()
    assert not (tmp_path / "out").exists()
    # the file really is dangerous: full unpickling runs the payload
    torch.load(source, weights_only=False)
    assert marker.exists()


def test_truncated_checkpoint_gives_a_clear_error(tmp_path):
    source = tmp_path / OFFICIAL_FILE_NAME
    training_module_checkpoint(random_dit(), source)
    data = source.read_bytes()
    source.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        convert_official_checkpoint(source, tmp_path / "out", config=TINY_CONFIG)
    assert not (tmp_path / "out").exists()


def test_missing_keys_are_named_and_nothing_is_written(tmp_path):
    state_dict = random_dit().state_dict()
    dropped = ["control_zero_inits.1.gate_conv.weight", "blocks.2.ffn.0.bias"]
    source = tmp_path / "partial.pt"
    torch.save({"pipe.dit." + k: v for k, v in state_dict.items() if k not in dropped}, source)
    with pytest.raises(ValueError, match="missing keys: blocks.2.ffn.0.bias, control_zero_inits.1.gate_conv.weight"):
        convert_official_checkpoint(source, tmp_path / "out", config=TINY_CONFIG)
    assert not (tmp_path / "out").exists()


def test_nested_weights_are_unwrapped_and_counters_left_out(tmp_path):
    dit = random_dit()
    source = tmp_path / "lightning.pt"
    torch.save({"state_dict": {"pipe.dit." + k: v for k, v in dit.state_dict().items()}, "global_step": 3}, source)
    written = convert_official_checkpoint(source, tmp_path / "out", config=TINY_CONFIG)
    assert sorted(written) == ["dit"]
    assert_same_weights(dit, load_dit(written["dit"]))
    torch.save({"global_step": 3}, source)
    with pytest.raises(ValueError, match="holds no tensors"):
        convert_official_checkpoint(source, tmp_path / "out", config=TINY_CONFIG)
    with pytest.raises(FileNotFoundError):
        convert_official_checkpoint(tmp_path / "absent.pt", tmp_path, config=TINY_CONFIG)


def test_dit_from_wan_camera_is_the_training_start_point(tmp_path):
    torch.manual_seed(3)
    wan = WanModel(**WAN_CONFIG).eval()
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file({k: v.contiguous() for k, v in wan.state_dict().items()}, str(path))
    dit = dit_from_wan_camera(path, config=TINY_CONFIG)
    for index, depth_block in zip(dit.control_block_index, dit.control_blocks):
        assert_same_weights(depth_block, wan.blocks[index])
        assert depth_block.self_attn.q.weight.data_ptr() != dit.blocks[index].self_attn.q.weight.data_ptr()
    for fusion in [*dit.rgb_zero_inits, *dit.control_zero_inits]:
        assert torch.count_nonzero(fusion.proj_out.weight) == 0 and torch.count_nonzero(fusion.gate_conv.weight) > 0
    assert_same_weights(_wan_part(dit), wan)
    from_state_dict = dit_from_wan_camera({"module." + k: v for k, v in wan.state_dict().items()}, config=TINY_CONFIG)
    assert_same_weights(_wan_part(from_state_dict), wan)


def _wan_part(dit: DualCamCtrlDiT) -> WanModel:
    wan = WanModel(**WAN_CONFIG)
    wan.load_state_dict({k: v for k, v in dit.state_dict().items() if k in wan.state_dict()}, strict=True)
    return wan


def test_dit_from_wan_camera_names_missing_keys():
    state_dict = WanModel(**WAN_CONFIG).state_dict()
    del state_dict["control_adapter.conv.weight"]
    with pytest.raises(ValueError, match=r"missing keys: control_adapter\.conv\.weight"):
        dit_from_wan_camera(state_dict, config=TINY_CONFIG)


def test_official_dit_path_prefers_converted_then_local_pt(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSYNTH_SKIP_DOWNLOAD", "true")
    checkpoint_dir = tmp_path / "checkpoints"
    checkpoint_dir.mkdir()
    with pytest.raises(FileNotFoundError, match=r"\(downloads skipped: DIFFSYNTH_SKIP_DOWNLOAD=true\); see"):
        official_dit_path(checkpoint_dir, local_model_path=str(tmp_path / "models"))
    monkeypatch.setenv("DIFFSYNTH_SKIP_DOWNLOAD", "false")  # a download that finds nothing does not claim a skip
    monkeypatch.setattr("diffsynth.core.loader.config.ModelConfig.download_if_necessary", lambda self, *a, **k: None)
    with pytest.raises(FileNotFoundError, match=r"was not found under \S+; see checkpoints/README.md"):
        official_dit_path(checkpoint_dir, local_model_path=str(tmp_path / "models"))
    monkeypatch.setenv("DIFFSYNTH_SKIP_DOWNLOAD", "true")
    converted = save_dit(random_dit(), checkpoint_dir / DIT_FILE_NAME)
    assert official_dit_path(checkpoint_dir) == converted


def test_official_dit_path_converts_a_found_pt(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSYNTH_SKIP_DOWNLOAD", "true")
    monkeypatch.delenv("DIFFSYNTH_MODEL_BASE_PATH", raising=False)
    dit = random_dit()
    downloaded = tmp_path / "models" / OFFICIAL_REPO_ID / OFFICIAL_FILE_NAME
    downloaded.parent.mkdir(parents=True)
    training_module_checkpoint(dit, downloaded)
    path = official_dit_path(tmp_path / "checkpoints", local_model_path=str(tmp_path / "models"), config=TINY_CONFIG)
    assert path == tmp_path / "checkpoints" / DIT_FILE_NAME
    assert_same_weights(dit, load_dit(path))


def test_weights_holding_nan_are_refused_at_load(tmp_path):
    dit = DualCamCtrlDiT(**TINY_CONFIG)
    path = save_dit(dit, tmp_path / "good.safetensors")
    assert isinstance(load_dit(path), DualCamCtrlDiT)
    with torch.no_grad():
        dit.blocks[0].self_attn.q.weight[0, :3] = float("nan")
        dit.head.head.bias[0] = float("inf")
    path = save_dit(dit, tmp_path / "nan.safetensors")
    with pytest.raises(ValueError, match=r"nan.safetensors: weight 'blocks.0.self_attn.q.weight' holds 3 NaN"):
        load_dit(path)
    source = tmp_path / "official.pt"
    torch.save({f"pipe.dit.{key}": value for key, value in dit.state_dict().items()}, source)
    with pytest.raises(ValueError, match="official.pt: weight 'pipe.dit.blocks.0.self_attn.q.weight' holds 3 NaN"):
        convert_official_checkpoint(source, tmp_path / "out", config=TINY_CONFIG)
    assert not (tmp_path / "out").exists()
