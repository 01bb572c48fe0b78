"""Tiny random models with the real architectures, for tests and for running the demo without the official weights.

Every model is a DiffSynth class (or a thin subclass) at toy width: a DualCamCtrl DiT, a Wan video VAE
(``VideoVAE_`` with a small base width), a umT5 encoder (``WanTextEncoder``), an open-clip ViT
(``WanImageEncoder`` widened to the 1280-d features the DiT expects) and a byte-level tokenizer built offline.
A 3-step, 9-frame 64x96 generation with them takes seconds on a CPU.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from diffsynth.configs import MODEL_CONFIGS, VRAM_MANAGEMENT_MODULE_MAPS
from diffsynth.core import ModelConfig
from diffsynth.core.loader.file import hash_model_file
from diffsynth.core.vram.initialization import skip_model_initialization
from diffsynth.models.wan_video_image_encoder import WanImageEncoder, clip_xlm_roberta_vit_h_14
from diffsynth.models.wan_video_text_encoder import HuggingfaceTokenizer, WanTextEncoder
from diffsynth.models.wan_video_vae import VideoVAE_, WanVideoVAE
from safetensors.torch import save_file

from ..models import TINY_CONFIG, DualCamCtrlDiT
from ..models.checkpoints import save_dit
from ..models.depth_estimator import DepthEstimator
from ..models.registry import register_checkpoint
from . import DualCamCtrlPipeline
from .dualcam import TOKENIZER_LENGTH

CLIP_FEATURE_DIM = 1280
TINY_TEXT_CONFIG: dict[str, Any] = {
    "vocab": 259, "dim": TINY_CONFIG["text_dim"], "dim_attn": TINY_CONFIG["text_dim"], "dim_ffn": 64, "num_heads": 2,
    "num_layers": 2, "num_buckets": 8,
}
TINY_VAE_CONFIG: dict[str, Any] = {"dim": 8, "z_dim": 16}
TINY_IMAGE_ENCODER_CONFIG: dict[str, Any] = {
    "image_size": 28, "patch_size": 14, "vision_dim": 32, "vision_heads": 2, "vision_layers": 2,
}


def tiny_dit_config() -> dict[str, Any]:
    """The 4-layer DualCamCtrl DiT config (head size 24, fusion in both directions, one block doing both)."""
    return dict(TINY_CONFIG)


class TinyWanVideoVAE(WanVideoVAE):
    """``WanVideoVAE`` (same latent normalisation, tiling and 4x/8x compression) around a narrow ``VideoVAE_``."""

    def __init__(self, dim: int = 8, z_dim: int = 16) -> None:
        # The parent builds a full-width VideoVAE_; building it on the meta device costs nothing before it is replaced.
        with skip_model_initialization():
            super().__init__(z_dim=z_dim)
        self.model = VideoVAE_(dim=dim, z_dim=z_dim).eval().requires_grad_(False)


class TinyImageEncoder(WanImageEncoder):
    """``WanImageEncoder`` with a narrow ViT whose tokens are widened to the 1280-d CLIP features of the real one.

    ``encode_image`` keeps the upstream contract: a list of [1, 3, H, W] images in [-1, 1] -> [B, tokens, 1280].
    """

    def __init__(
        self,
        image_size: int = 28,
        patch_size: int = 14,
        vision_dim: int = 32,
        vision_heads: int = 2,
        vision_layers: int = 2,
    ) -> None:
        torch.nn.Module.__init__(self)
        self.model, self.transforms = clip_xlm_roberta_vit_h_14(
            pretrained=False, return_transforms=True, return_tokenizer=False, dtype=torch.float32, device="cpu",
            image_size=image_size, patch_size=patch_size, vision_dim=vision_dim, vision_heads=vision_heads,
            vision_layers=vision_layers, embed_dim=vision_dim,
        )
        self.widen = torch.nn.Linear(vision_dim, CLIP_FEATURE_DIM)

    def encode_image(self, videos: list[torch.Tensor]) -> torch.Tensor:
        """CLIP-like tokens [B, (image_size / patch_size)^2 + 1, 1280] of images in [-1, 1]."""
        return self.widen(super().encode_image(videos))


def write_tiny_tokenizer(directory: str | Path) -> Path:
    """Save a byte-level tokenizer (every UTF-8 byte is a token, then ``</s>``) loadable by ``AutoTokenizer``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    vocab = {token: index for index, token in enumerate(specials + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    directory = Path(directory)
    fast.save_pretrained(directory)
    return directory


def tiny_tokenizer() -> HuggingfaceTokenizer:
    """The byte-level tokenizer, loaded through DiffSynth's ``HuggingfaceTokenizer`` as the real umT5 one is."""
    with tempfile.TemporaryDirectory(prefix="dualcam-tokenizer-") as directory:
        return HuggingfaceTokenizer(name=str(write_tiny_tokenizer(directory)), seq_len=TOKENIZER_LENGTH,
                                    clean="whitespace")


def tiny_models(seed: int = 0) -> dict[str, torch.nn.Module]:
    """Random tiny ``dit``, ``vae``, ``text_encoder`` and ``image_encoder`` in float32 on the CPU, seeded."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        models = {
            "dit": DualCamCtrlDiT(**tiny_dit_config()),
            "vae": TinyWanVideoVAE(**TINY_VAE_CONFIG),
            "text_encoder": WanTextEncoder(**TINY_TEXT_CONFIG),
            "image_encoder": TinyImageEncoder(**TINY_IMAGE_ENCODER_CONFIG),
        }
        # Zero-initialised output projections would make the fusion a no-op; random weights exercise it.
        for name, parameter in models["dit"].named_parameters():
            if "zero_inits" in name and name.endswith("proj_out.weight"):
                torch.nn.init.normal_(parameter, std=0.02)
    finally:
        torch.random.set_rng_state(generator_state)
    return {name: model.eval().requires_grad_(False) for name, model in models.items()}


def tiny_pipeline(
    seed: int = 0, device: str | torch.device = "cpu", torch_dtype: torch.dtype = torch.float32
) -> DualCamCtrlPipeline:
    """A ``DualCamCtrlPipeline`` of tiny random models (weights fixed by ``seed``); its runs' ``params.json`` say so."""
    pipe = DualCamCtrlPipeline(device=device, torch_dtype=torch_dtype)
    for name, model in tiny_models(seed).items():
        setattr(pipe, name, model.to(device=device, dtype=torch_dtype))
    pipe.tokenizer = tiny_tokenizer()
    pipe.model_source = tiny_model_source(seed)
    return pipe


def tiny_model_source(seed: int = 0) -> str:
    """What ``params.json`` records as the models of ``tiny_pipeline(seed)``."""
    return f"tiny random models (diffsynth_dualcam.pipeline.tiny.tiny_pipeline, seed {seed})"


#: component -> (DiffSynth model name, class, constructor kwargs, class whose VRAM-management map it shares).
TINY_MODEL_CLASSES = {
    "vae": ("wan_video_vae", "diffsynth_dualcam.pipeline.tiny.TinyWanVideoVAE", TINY_VAE_CONFIG,
            "diffsynth.models.wan_video_vae.WanVideoVAE"),
    "text_encoder": ("wan_video_text_encoder", "diffsynth.models.wan_video_text_encoder.WanTextEncoder",
                     TINY_TEXT_CONFIG, "diffsynth.models.wan_video_text_encoder.WanTextEncoder"),
    "image_encoder": ("wan_video_image_encoder", "diffsynth_dualcam.pipeline.tiny.TinyImageEncoder",
                      TINY_IMAGE_ENCODER_CONFIG, "diffsynth.models.wan_video_image_encoder.WanImageEncoder"),
}


def register_tiny_model_file(path: str | Path, component: str) -> None:
    """Teach DiffSynth's loader to recognise a tiny ``vae``/``text_encoder``/``image_encoder`` file by its key hash,
    and to offload it layer by layer like the full-size class."""
    model_name, model_class, config, full_size_class = TINY_MODEL_CLASSES[component]
    model_hash = hash_model_file(str(path))
    if not any(entry["model_hash"] == model_hash and entry["model_class"] == model_class for entry in MODEL_CONFIGS):
        MODEL_CONFIGS.append({
            "model_hash": model_hash, "model_name": model_name, "model_class": model_class,
            "extra_kwargs": dict(config),
        })
    VRAM_MANAGEMENT_MODULE_MAPS.setdefault(model_class, VRAM_MANAGEMENT_MODULE_MAPS[full_size_class])


def write_tiny_model_files(directory: str | Path, seed: int = 0) -> tuple[list[ModelConfig], ModelConfig]:
    """Write the tiny models as safetensors files plus a tokenizer folder, registered with DiffSynth's loader.

    Returns the ``model_configs`` and ``tokenizer_config`` to pass to ``DualCamCtrlPipeline.from_pretrained``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    models = tiny_models(seed)
    dit_path = directory / "tiny_dit.safetensors"
    save_dit(models.pop("dit"), dit_path)
    register_checkpoint(dit_path)
    configs = [ModelConfig(path=str(dit_path))]
    for component, model in models.items():
        path = directory / f"tiny_{component}.safetensors"
        save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, str(path))
        register_tiny_model_file(path, component)
        configs.append(ModelConfig(path=str(path)))
    tokenizer_path = write_tiny_tokenizer(directory / "tokenizer")
    return configs, ModelConfig(path=str(tokenizer_path))


def tiny_depth_anything(depth_estimation_type: str = "relative", seed: int = 0) -> tuple[torch.nn.Module, Any]:
    """A randomly initialised Depth Anything model (4-layer DINOv2 backbone, 56x56 input) and its image processor."""
    from PIL import Image
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    torch.manual_seed(seed)
    backbone = Dinov2Config(
        image_size=56, patch_size=14, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
        intermediate_size=64, out_indices=[1, 2, 3, 4], reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16, head_hidden_size=8, depth_estimation_type=depth_estimation_type, max_depth=20,
    )
    processor = DPTImageProcessor(
        do_resize=True, size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14,
        do_rescale=True, do_normalize=True, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
        resample=Image.BICUBIC,
    )
    return DepthAnythingForDepthEstimation(config).eval(), processor


def save_tiny_depth_anything(path: str | Path, depth_estimation_type: str = "relative", seed: int = 0) -> Path:
    """Save ``tiny_depth_anything`` as a local model folder that ``DepthEstimator.from_pretrained`` loads."""
    model, processor = tiny_depth_anything(depth_estimation_type, seed)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return Path(path)


def tiny_depth_estimator(device: str | torch.device = "cpu", seed: int = 0) -> DepthEstimator:
    """A ``DepthEstimator`` on the tiny random Depth Anything model (relative head): the tiny pipeline's depth."""
    model, processor = tiny_depth_anything(seed=seed)
    return DepthEstimator(model, processor, device=device)
