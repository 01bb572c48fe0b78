"""Step cache: skipping blocks of both branches together, with a bounded error on the tiny model."""
from __future__ import annotations

import pytest
import torch
from diffsynth.diffusion import FlowMatchScheduler

from diffsynth_dualcam.models import DualCamCtrlDiT
from diffsynth_dualcam.models.step_cache import StepCache, modulated_input
from diffsynth_dualcam.pipeline.tiny import tiny_dit_config

STEPS = 12


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dit() -> DualCamCtrlDiT:
    torch.manual_seed(0)
    model = DualCamCtrlDiT(**tiny_dit_config())
    for name, parameter in model.named_parameters():
        if name.endswith("proj_out.weight"):
            torch.nn.init.normal_(parameter, std=0.05)
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def conditioning(dit: DualCamCtrlDiT) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    frames, height, width = 3, 8, 12
    return {
        "noise": torch.randn(1, 16, frames, height, width, generator=generator),
        "context": torch.randn(1, 7, tiny_dit_config()["text_dim"], generator=generator),
        "clip_feature": torch.randn(1, 257, 1280, generator=generator),
        "y": torch.randn(1, 16, frames, height, width, generator=generator),
        "depth_y": torch.randn(1, 16, frames, height, width, generator=generator),
        "camera_embedding": dit.embed_camera(torch.randn(1, 24, frames, 8 * height, 8 * width, generator=generator)),
    }


def sample(dit: DualCamCtrlDiT, conditioning: dict, steps: int, cache: StepCache | None = None):
    """Euler flow-matching sampling of both branches from the same noise, as the pipeline does."""
    scheduler = FlowMatchScheduler("Wan")
    scheduler.set_timesteps(steps, shift=5.0)
    inputs = dict(conditioning)
    rgb = inputs.pop("noise").clone()
    depth = rgb.clone()
    with torch.no_grad():
        for timestep in scheduler.timesteps:
            velocity, depth_velocity = dit(rgb, depth, timestep.unsqueeze(0), step_cache=cache, **inputs)
            rgb = scheduler.step(velocity, timestep, rgb)
            depth = scheduler.step(depth_velocity, timestep, depth)
    return rgb, depth


def relative_error(result: tuple[torch.Tensor, ...], reference: tuple[torch.Tensor, ...]) -> float:
    return max(((a - b).norm() / b.norm()).item() for a, b in zip(result, reference))


@pytest.fixture(scope="module")
def uncached(dit, conditioning):
    return sample(dit, conditioning, STEPS)


def test_zero_threshold_computes_every_step_and_matches_exactly(dit, conditioning, uncached) -> None:
    cache = StepCache(STEPS, threshold=0.0)
    cached = sample(dit, conditioning, STEPS, cache)
    assert (cache.computed, cache.skipped, cache.speedup) == (STEPS, 0, 1.0)
    for result, reference in zip(cached, uncached):
        torch.testing.assert_close(result, reference, rtol=0, atol=0)


@pytest.fixture(scope="module")
def cached_run(dit, conditioning):
    """A cached run, counting the calls of the first RGB block and the first depth block."""
    calls = {"rgb": 0, "depth": 0}
    hooks = [
        dit.blocks[0].register_forward_hook(lambda *_: calls.__setitem__("rgb", calls["rgb"] + 1)),
        dit.control_blocks[0].register_forward_hook(lambda *_: calls.__setitem__("depth", calls["depth"] + 1)),
    ]
    try:
        cache = StepCache(STEPS, threshold=0.2)
        result = sample(dit, conditioning, STEPS, cache)
    finally:
        for hook in hooks:
            hook.remove()
    return cache, result, calls


def test_cached_sampling_is_close_to_uncached_and_reports_speedup(dit, conditioning, uncached, cached_run,
                                                                  capsys) -> None:
    cache, cached, _ = cached_run
    error = relative_error(cached, uncached)
    # The same compute spent on plain sampling with fewer steps: the cache must be much closer to the full run.
    fewer_steps_error = relative_error(sample(dit, conditioning, cache.computed), uncached)
    with capsys.disabled():
        print(f"\nstep cache (threshold 0.2, {STEPS} steps): {cache.computed} computed, {cache.skipped} skipped: "
              f"{cache.speedup:.2f}x fewer block-stack passes (a count of DiT steps, not a timing; "
              f"benchmarks/bench_cache.py measures the wall-time speed-up), relative error {error:.2e} "
              f"(plain {cache.computed}-step sampling: {fewer_steps_error:.2e})")
    assert cache.speedup >= 2.0
    assert error < 0.01
    assert error < fewer_steps_error / 3


def test_both_branches_skip_together(cached_run) -> None:
    cache, _, calls = cached_run
    assert cache.skipped > 0
    assert calls == {"rgb": cache.computed, "depth": cache.computed}


def test_warmup_and_last_step_are_always_computed(dit, conditioning) -> None:
    cache = StepCache(STEPS, threshold=1e9, warmup_steps=2)
    sample(dit, conditioning, STEPS, cache)
    assert (cache.computed, cache.skipped) == (3, STEPS - 3)


def test_modulated_input_matches_the_block_formula(dit) -> None:
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randn(2, 10, dit.dim, generator=generator)
    t_mod = torch.randn(2, 6, dit.dim, generator=generator)
    block = dit.blocks[0]
    shift = block.modulation[:, 0] + t_mod[:, 0]
    scale = block.modulation[:, 1] + t_mod[:, 1]
    mean = tokens.mean(-1, keepdim=True)
    normed = (tokens - mean) / torch.sqrt(tokens.var(-1, unbiased=False, keepdim=True) + block.norm1.eps)
    expected = normed * (1 + scale[:, None]) + shift[:, None]
    torch.testing.assert_close(modulated_input(block, tokens, t_mod), expected, rtol=1e-5, atol=1e-5)


def test_the_change_measure_of_float16_activations_does_not_overflow(dit) -> None:
    """Sums of |m| over a clip's tokens pass float16's largest value (65504); the measure must not saturate."""
    generator = torch.Generator().manual_seed(2)
    tokens = [torch.randn(1, 8000, dit.dim, generator=generator)]
    tokens += [tokens[0] + 0.01 * torch.randn(tokens[0].shape, generator=generator),
               torch.randn(tokens[0].shape, generator=generator)]
    t_mod = torch.zeros(1, 6, dit.dim)
    changes = {}
    for dtype in (torch.float32, torch.float16):
        model = DualCamCtrlDiT(**tiny_dit_config()).to(dtype).requires_grad_(False)
        model.load_state_dict(dit.state_dict())
        cache = StepCache(num_inference_steps=5, threshold=0.05)
        changes[dtype] = []
        for step_tokens in tokens:
            step_tokens = step_tokens.to(dtype)
            cache(model, step_tokens, step_tokens, t_mod.to(dtype), lambda rgb, depth: (rgb, depth))
            changes[dtype].append(cache.accumulated_change)
        assert modulated_input(model.blocks[0], tokens[0].to(dtype), t_mod.to(dtype)).abs().sum().isinf() == (
            dtype == torch.float16)
        assert (cache.computed, cache.skipped) == (2, 1)  # a small change skips, a new input computes
    assert changes[torch.float16] == pytest.approx(changes[torch.float32], rel=1e-2, abs=1e-4)


def test_reusing_a_cache_for_another_shape_is_an_error(dit, conditioning) -> None:
    cache = StepCache(STEPS, threshold=1e9)
    sample(dit, conditioning, 2, cache)
    smaller = {name: value[:, :, :2] if value.ndim == 5 else value for name, value in conditioning.items()}
    smaller["camera_embedding"] = conditioning["camera_embedding"][:, : 2 * 4 * 6]
    with pytest.raises(ValueError, match="one cache per guidance stream"):
        sample(dit, smaller, 2, cache)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_inference_steps": 0, "threshold": 0.1}, "num_inference_steps must be >= 1"),
        ({"num_inference_steps": 5, "threshold": -0.1}, "threshold must be >= 0"),
        ({"num_inference_steps": 5, "threshold": 0.1, "warmup_steps": 0}, "warmup_steps must be >= 1"),
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StepCache(**kwargs)
