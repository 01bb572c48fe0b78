"""The tiny models of diffsynth_dualcam.pipeline.tiny: real architectures at toy size, deterministic, loadable."""
from __future__ import annotations

import torch
from diffsynth.configs import MODEL_CONFIGS
from diffsynth.core.loader.file import hash_model_file

from diffsynth_dualcam.pipeline.dualcam import TOKENIZER_LENGTH
from diffsynth_dualcam.pipeline.tiny import (
    CLIP_FEATURE_DIM,
    TinyImageEncoder,
    TinyWanVideoVAE,
    tiny_dit_config,
    tiny_models,
    tiny_tokenizer,
    write_tiny_model_files,
)


def test_tiny_models_are_small_and_seeded():
    state = torch.random.get_rng_state()
    first, again, other = tiny_models(seed=0), tiny_models(seed=0), tiny_models(seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    for name, model in first.items():
        assert sum(parameter.numel() for parameter in model.parameters()) < 3_000_000, name
        for (key, value), value_again in zip(model.state_dict().items(), again[name].state_dict().values()):
            assert torch.equal(value, value_again), key
    differing = [key for key, value in first["dit"].state_dict().items()
                 if not torch.equal(value, other["dit"].state_dict()[key])]
    assert differing
    assert first["dit"].config == tiny_dit_config()


def test_fusion_output_projections_are_not_zero():
    dit = tiny_models()["dit"]
    for fusion in list(dit.rgb_zero_inits) + list(dit.control_zero_inits):
        assert fusion.proj_out.weight.abs().sum() > 0


def test_tiny_vae_compresses_like_wan():
    vae = TinyWanVideoVAE()
    assert vae.model.dim == 8 and vae.z_dim == 16 and vae.upsampling_factor == 8
    video = torch.rand(3, 9, 32, 48) * 2 - 1
    latents = vae.encode([video], device="cpu")
    assert latents.shape == (1, 16, 3, 4, 6)
    decoded = vae.decode(latents, device="cpu")
    assert decoded.shape == (1, 3, 9, 32, 48)
    assert decoded.abs().max() <= 1


def test_tiny_image_encoder_keeps_the_clip_contract():
    encoder = TinyImageEncoder()
    features = encoder.encode_image([torch.rand(1, 3, 64, 96) * 2 - 1])
    tokens = (encoder.model.image_size // encoder.model.patch_size) ** 2 + 1
    assert features.shape == (1, tokens, CLIP_FEATURE_DIM)


def test_tiny_tokenizer_is_byte_level_with_eos_and_padding():
    tokenizer = tiny_tokenizer()
    text = "café ✓ 42"
    ids, mask = tokenizer(text, return_mask=True, add_special_tokens=True)
    length = len(text.encode("utf-8"))
    assert ids.shape == mask.shape == (1, TOKENIZER_LENGTH)
    assert mask[0, : length + 1].all() and not mask[0, length + 1:].any()
    assert ids[0, length].item() == tokenizer.tokenizer.eos_token_id
    assert tokenizer.tokenizer.decode(ids[0], skip_special_tokens=True) == text


def test_written_model_files_are_registered(tmp_path):
    configs, tokenizer_config = write_tiny_model_files(tmp_path)
    names = {}
    for config in configs:
        model_hash = hash_model_file(config.path)
        names[config.path.rsplit("/", 1)[-1]] = {entry["model_name"] for entry in MODEL_CONFIGS
                                                 if entry["model_hash"] == model_hash}
    assert names == {
        "tiny_dit.safetensors": {"dualcamctrl_dit"}, "tiny_vae.safetensors": {"wan_video_vae"},
        "tiny_text_encoder.safetensors": {"wan_video_text_encoder"},
        "tiny_image_encoder.safetensors": {"wan_video_image_encoder"},
    }
    assert (tmp_path / "tokenizer" / "tokenizer.json").is_file()
