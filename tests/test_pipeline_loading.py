"""DualCamCtrlPipeline.from_pretrained on tiny model files: local paths, offloading, the torch.cpu workaround."""
from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np
import pytest
import torch
from diffsynth.core import ModelConfig
from diffsynth.core.vram.layers import AutoTorchModule, AutoWrappedNonRecurseModule
from PIL import Image
from safetensors.torch import load_file

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.pipeline import DualCamCtrlPipeline, compat
from diffsynth_dualcam.pipeline.dualcam import BASE_MODEL_FILES, BASE_MODEL_ID, BASE_MODEL_LABELS, TOKENIZER_FILES
from diffsynth_dualcam.pipeline.tiny import register_tiny_model_file, tiny_pipeline, write_tiny_model_files


def quiet(iterable):
    return iterable


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return write_tiny_model_files(tmp_path_factory.mktemp("tiny-models"), seed=3)


def generate(pipe: DualCamCtrlPipeline):
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    depth = Image.fromarray(rng.integers(0, 256, (64, 96), dtype=np.uint8))
    camera = CameraTrajectory(np.tile(np.eye(4), (5, 1, 1)), np.tile([0.7, 1.0, 0.5, 0.5], (5, 1)))
    camera.c2w[1, :3, 3] = [0.2, 0.0, 0.1]
    return pipe("a quiet street", "noise", input_image=image, input_depth=depth, camera=camera, height=64, width=96,
                num_frames=5, num_inference_steps=2, seed=11, progress_bar_cmd=quiet)


@pytest.fixture(scope="module")
def plain_output(model_files):
    configs, tokenizer_config = model_files
    pipe = DualCamCtrlPipeline.from_pretrained(
        [dataclasses.replace(config) for config in configs], dataclasses.replace(tokenizer_config), device="cpu",
        torch_dtype=torch.float32,
    )
    assert not pipe.vram_management_enabled
    return generate(pipe)


def test_local_files_load_the_same_models_as_in_memory(plain_output):
    in_memory = generate(tiny_pipeline(seed=3))
    assert torch.equal(in_memory.latents, plain_output.latents)
    assert torch.equal(in_memory.depth_latents, plain_output.depth_latents)


def test_offloaded_pipeline_equals_plain(model_files, plain_output):
    configs, tokenizer_config = model_files
    offload = {"offload_device": "cpu", "offload_dtype": torch.float32, "onload_device": "cpu",
               "onload_dtype": torch.float32}
    pipe = DualCamCtrlPipeline.from_pretrained(
        [dataclasses.replace(config, **offload) for config in configs], dataclasses.replace(tokenizer_config),
        device="cpu", torch_dtype=torch.float32, vram_limit=1024.0,
    )
    assert pipe.vram_management_enabled
    # The depth branch and the fusion modules are managed with the rest of the DiT.
    assert isinstance(pipe.dit.control_blocks[0], AutoWrappedNonRecurseModule)
    assert any(isinstance(module, AutoTorchModule) for module in pipe.dit.rgb_zero_inits.modules())
    assert any(isinstance(module, AutoTorchModule) for module in pipe.dit.control_zero_inits.modules())
    assert any(isinstance(module, AutoTorchModule) for module in pipe.vae.modules())
    offloaded = generate(pipe)
    torch.testing.assert_close(offloaded.latents, plain_output.latents, rtol=0, atol=1e-6)
    torch.testing.assert_close(offloaded.depth_latents, plain_output.depth_latents, rtol=0, atol=1e-6)


def test_default_official_setup_loads_offline(tmp_path, monkeypatch, plain_output):
    """``from_pretrained()`` with no arguments: the DiT from checkpoints/, the rest by model id from local files."""
    files, tokenizer_config = write_tiny_model_files(tmp_path / "tiny", seed=3)
    checkpoint_dir = tmp_path / "checkpoints"
    checkpoint_dir.mkdir()
    shutil.copy(files[0].path, checkpoint_dir / "dualcamctrl_dit.safetensors")
    base_dir = tmp_path / "models" / BASE_MODEL_ID
    shutil.copytree(tokenizer_config.path, base_dir / TOKENIZER_FILES)
    for component, file_name in BASE_MODEL_FILES.items():
        state_dict = load_file(str(tmp_path / "tiny" / f"tiny_{component}.safetensors"))
        torch.save(state_dict, base_dir / file_name)  # the released files are torch pickles of plain tensors
        register_tiny_model_file(base_dir / file_name, component)
    monkeypatch.setenv("DIFFSYNTH_SKIP_DOWNLOAD", "true")
    monkeypatch.setenv("DIFFSYNTH_MODEL_BASE_PATH", str(tmp_path / "models"))
    pipe = DualCamCtrlPipeline.from_pretrained(device="cpu", torch_dtype=torch.float32, checkpoint_dir=checkpoint_dir)
    output = generate(pipe)
    assert torch.equal(output.latents, plain_output.latents)
    expected = {component: os.path.abspath(base_dir / file_name) for component, file_name in BASE_MODEL_FILES.items()}
    expected["dit"] = os.path.abspath(checkpoint_dir / "dualcamctrl_dit.safetensors")
    expected["tokenizer"] = os.path.abspath(base_dir / TOKENIZER_FILES)
    assert output.params["models"] == expected
    assert output.params["dit_config"] == pipe.dit.config


@pytest.mark.parametrize("missing", [*BASE_MODEL_FILES.values(), TOKENIZER_FILES])
def test_missing_base_model_file_is_named_before_anything_loads(tmp_path, monkeypatch, model_files, missing):
    """Offline with the DiT present: the absent umT5 / VAE / CLIP / tokenizer file is named with its folder."""
    checkpoint_dir = tmp_path / "checkpoints"
    checkpoint_dir.mkdir()
    shutil.copy(model_files[0][0].path, checkpoint_dir / "dualcamctrl_dit.safetensors")
    base_dir = tmp_path / "models" / BASE_MODEL_ID
    (base_dir / TOKENIZER_FILES).mkdir(parents=True)
    (base_dir / TOKENIZER_FILES / "tokenizer.json").write_text("{}")
    for file_name in BASE_MODEL_FILES.values():
        (base_dir / file_name).write_bytes(b"weights")  # never read: the check comes before any loading
    if missing == TOKENIZER_FILES:
        shutil.rmtree(base_dir / missing)
    else:
        (base_dir / missing).unlink()
    monkeypatch.setenv("DIFFSYNTH_SKIP_DOWNLOAD", "true")
    monkeypatch.setenv("DIFFSYNTH_MODEL_BASE_PATH", str(tmp_path / "models"))

    def forbidden(*args, **kwargs):
        raise AssertionError("models were loaded before every file was found")

    monkeypatch.setattr(DualCamCtrlPipeline, "download_and_load_models", forbidden)
    with pytest.raises(FileNotFoundError) as error:
        DualCamCtrlPipeline.from_pretrained(device="cpu", checkpoint_dir=checkpoint_dir)
    message = str(error.value)
    assert message.startswith(f"model files not found: {BASE_MODEL_LABELS[missing]} {missing!r} of {BASE_MODEL_ID} "
                              f"(looked for in {base_dir}). DIFFSYNTH_SKIP_DOWNLOAD=true turns the download off")
    assert "DIFFSYNTH_MODEL_BASE_PATH" in message and message.count("not found") == 1


def test_every_missing_base_model_file_is_listed(tmp_path, monkeypatch, model_files):
    checkpoint_dir = tmp_path / "checkpoints"
    checkpoint_dir.mkdir()
    shutil.copy(model_files[0][0].path, checkpoint_dir / "dualcamctrl_dit.safetensors")
    monkeypatch.setenv("DIFFSYNTH_SKIP_DOWNLOAD", "true")
    monkeypatch.setenv("DIFFSYNTH_MODEL_BASE_PATH", str(tmp_path / "models"))
    with pytest.raises(FileNotFoundError) as error:
        DualCamCtrlPipeline.from_pretrained(device="cpu", checkpoint_dir=checkpoint_dir)
    for name in (*BASE_MODEL_FILES.values(), TOKENIZER_FILES):
        assert f"{BASE_MODEL_LABELS[name]} {name!r}" in str(error.value)


def test_missing_local_model_file_is_named(model_files, tmp_path):
    configs, tokenizer_config = model_files
    absent = str(tmp_path / "absent_vae.safetensors")
    with pytest.raises(FileNotFoundError, match=f"model files not found: {absent}$"):
        DualCamCtrlPipeline.from_pretrained(
            [dataclasses.replace(configs[0]), ModelConfig(path=absent)], dataclasses.replace(tokenizer_config),
            device="cpu", torch_dtype=torch.float32,
        )


def test_default_setup_without_weights_says_where_they_go(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSYNTH_SKIP_DOWNLOAD", "true")
    monkeypatch.setenv("DIFFSYNTH_MODEL_BASE_PATH", str(tmp_path / "models"))
    with pytest.raises(FileNotFoundError, match="the official DiT is neither at"):
        DualCamCtrlPipeline.from_pretrained(device="cpu", checkpoint_dir=tmp_path / "checkpoints")


def test_missing_component_is_named(model_files):
    configs, tokenizer_config = model_files
    with pytest.raises(ValueError, match="no wan_video_vae among the model files"):
        DualCamCtrlPipeline.from_pretrained(
            [dataclasses.replace(config) for config in configs if "vae" not in config.path],
            dataclasses.replace(tokenizer_config), device="cpu", torch_dtype=torch.float32,
        )


def test_torch_cpu_gets_the_functions_diffsynth_calls(monkeypatch):
    monkeypatch.delattr(torch.cpu, "empty_cache", raising=False)
    monkeypatch.delattr(torch.cpu, "mem_get_info", raising=False)
    assert compat.patch_torch_cpu() == ["empty_cache", "mem_get_info"]
    assert compat.patch_torch_cpu() == []
    assert torch.cpu.empty_cache() is None
    free, total = torch.cpu.mem_get_info("cpu")
    assert 0 < free <= total


def test_offload_switching_runs_on_cpu():
    """``BasePipeline.load_models_to_device`` calls ``torch.<device>.empty_cache()`` whenever it offloads."""
    pipe = tiny_pipeline()
    pipe.vram_management_enabled = True
    pipe.load_models_to_device(["dit"])
    pipe.load_models_to_device([])


def test_dit_weights_holding_nan_are_refused_at_load(model_files, tmp_path):
    from diffsynth_dualcam.models.checkpoints import load_dit, save_dit
    from diffsynth_dualcam.models.registry import register_checkpoint

    configs, tokenizer_config = model_files
    dit = load_dit(configs[0].path)
    with torch.no_grad():
        dit.patch_embedding.weight.view(-1)[:2] = float("nan")
    path = save_dit(dit, tmp_path / "diverged.safetensors")
    register_checkpoint(path)
    with pytest.raises(ValueError, match=r"diverged.safetensors: weight 'patch_embedding.weight' holds 2 NaN"):
        DualCamCtrlPipeline.from_pretrained(
            [ModelConfig(path=str(path)), *(dataclasses.replace(config) for config in configs[1:])],
            dataclasses.replace(tokenizer_config), device="cpu", torch_dtype=torch.float32,
        )
