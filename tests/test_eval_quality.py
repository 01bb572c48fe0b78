"""Optional quality metrics: Fréchet distances against scipy on small hand-made features, CLIP score on a tiny CLIP."""
import sys

import numpy as np
import pytest
import torch
from scipy.linalg import sqrtm

from diffsynth_dualcam.eval.quality import clip_score, frechet_inception_distance, frechet_video_distance


class ColourStatistics(torch.nn.Module):
    """Per-channel mean and standard deviation of uint8 images [B, 3, H, W] or float videos [B, 3, T, H, W]."""

    num_features = 6

    def forward(self, batch):
        values = batch.float().flatten(2)
        return torch.cat([values.mean(dim=2), values.std(dim=2)], dim=1)


def frechet_by_hand(first: np.ndarray, second: np.ndarray) -> float:
    mean_first, mean_second = first.mean(axis=0), second.mean(axis=0)
    cov_first, cov_second = np.cov(first, rowvar=False), np.cov(second, rowvar=False)
    root = sqrtm(cov_first @ cov_second).real
    return float(np.sum((mean_first - mean_second) ** 2) + np.trace(cov_first + cov_second - 2 * root))


def colour_statistics(array: np.ndarray) -> np.ndarray:
    values = array.reshape(len(array), -1, 3).astype(np.float64)
    return np.concatenate([values.mean(axis=1), values.std(axis=1, ddof=1)], axis=1)


def test_fid_matches_the_frechet_distance_of_the_features():
    pytest.importorskip("torchmetrics")
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, size=(24, 16, 16, 3), dtype=np.uint8)
    generated = np.clip(rng.normal(150, 40, size=(20, 16, 16, 3)), 0, 255).astype(np.uint8)
    measured = frechet_inception_distance(real, generated, feature=ColourStatistics(), batch_size=7)
    expected = frechet_by_hand(colour_statistics(real), colour_statistics(generated))
    assert measured == pytest.approx(expected, rel=1e-4)
    assert expected > 100  # the two sets differ clearly


def test_fvd_matches_the_frechet_distance_of_video_features():
    pytest.importorskip("torchmetrics")
    rng = np.random.default_rng(1)
    real = rng.integers(0, 256, size=(16, 4, 8, 8, 3), dtype=np.uint8)
    generated = np.clip(rng.normal(100, 30, size=(16, 4, 8, 8, 3)), 0, 255).astype(np.uint8)
    measured = frechet_video_distance(real, generated, ColourStatistics(), batch_size=5)
    expected = frechet_by_hand(colour_statistics(real / 255.0), colour_statistics(generated / 255.0))
    assert measured == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="share"):
        frechet_video_distance(real, generated[:, :3], ColourStatistics())


@pytest.fixture
def tiny_clip(tmp_path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    characters = [chr(code) for code in range(33, 127)]
    vocab = {token: index for index, token in enumerate(
        characters + [c + "</w>" for c in characters] + ["<|startoftext|>", "<|endoftext|>"])}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(tmp_path)
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 32, "eos_token_id": vocab["<|endoftext|>"],
                     "bos_token_id": vocab["<|startoftext|>"], "pad_token_id": vocab["<|endoftext|>"]},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=8,
    )
    CLIPModel(config).save_pretrained(tmp_path)
    return tmp_path


def test_clip_score_is_the_mean_cosine_of_projected_embeddings(tiny_clip):
    from transformers import CLIPModel, CLIPProcessor

    rng = np.random.default_rng(2)
    videos = [rng.integers(0, 256, size=(3, 40, 48, 3), dtype=np.uint8) for _ in range(2)]
    prompts = ["a red house", "blue sky"]
    measured = clip_score(videos, prompts, tiny_clip)

    model, processor = CLIPModel.from_pretrained(tiny_clip).eval(), CLIPProcessor.from_pretrained(tiny_clip)
    cosines = []
    with torch.no_grad():
        for video, prompt in zip(videos, prompts):
            pixels = processor(images=list(video), return_tensors="pt")["pixel_values"]
            tokens = processor(text=[prompt], return_tensors="pt", padding=True)
            image = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
            text = model.text_projection(model.text_model(**tokens).pooler_output)
            cosines.append(torch.nn.functional.cosine_similarity(image, text.expand_as(image), dim=1))
    assert measured == pytest.approx(float(torch.cat(cosines).mean()), abs=1e-5)
    with pytest.raises(ValueError, match="one prompt per video"):
        clip_score(videos, prompts[:1], tiny_clip)


def test_missing_torchmetrics_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchmetrics.image.fid", None)
    frames = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(ImportError, match=r"pip install -e \"\.\[metrics\]\""):
        frechet_inception_distance(frames, frames, feature=ColourStatistics())


def test_frames_must_be_uint8_rgb():
    pytest.importorskip("torchmetrics")
    with pytest.raises(ValueError, match=r"real_frames must be uint8 \[N, H, W, 3\]"):
        frechet_inception_distance(np.zeros((2, 8, 8, 3)), np.zeros((2, 8, 8, 3), dtype=np.uint8),
                                   feature=ColourStatistics())


def test_clip_score_cuts_prompts_longer_than_the_text_context(tiny_clip):
    """The tiny CLIP reads 32 text positions, one per character here: what follows them does not count."""
    video = [np.random.default_rng(3).integers(0, 256, size=(2, 40, 48, 3), dtype=np.uint8)]
    head = "a wide street " * 3
    scores = [clip_score(video, [head + tail], tiny_clip) for tail in ("at night under rain", "by day in snow")]
    assert scores[0] == pytest.approx(scores[1], abs=1e-6)
    assert clip_score(video, ["a narrow street " + head], tiny_clip) != pytest.approx(scores[0], abs=1e-6)
