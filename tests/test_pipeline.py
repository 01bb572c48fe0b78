"""DualCamCtrlPipeline on tiny random models: sampling maths, guidance, camera inputs, argument checks."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from diffsynth_dualcam.camera import CameraTrajectory, pack_plucker
from diffsynth_dualcam.pipeline import DualCamCtrlPipeline
from diffsynth_dualcam.pipeline.dualcam import DIRECT_MODEL_SOURCE
from diffsynth_dualcam.pipeline.inputs import cover_resize, prepare_depth, prepare_image
from diffsynth_dualcam.pipeline.tiny import tiny_model_source, tiny_pipeline
from diffsynth_dualcam.pipeline.units import DualCamUnit_CfgMerger, DualCamUnit_ImageEmbedderVAE

HEIGHT, WIDTH, FRAMES, STEPS = 64, 96, 5, 2


def quiet(iterable):
    return iterable


def orbit(num_frames: int = 13, source_size: tuple[int, int] | None = (128, 72)) -> CameraTrajectory:
    """A camera turning about y while moving right: rigid poses with a changing centre and rotation."""
    c2w = np.tile(np.eye(4), (num_frames, 1, 1))
    for pose, angle in zip(c2w, np.linspace(0.0, 0.3, num_frames)):
        pose[[0, 0, 2, 2], [0, 2, 0, 2]] = np.cos(angle), np.sin(angle), -np.sin(angle), np.cos(angle)
    c2w[:, 0, 3] = np.linspace(0.0, 0.5, num_frames)
    intrinsics = np.tile([0.6, 1.0, 0.5, 0.5], (num_frames, 1))
    return CameraTrajectory(c2w, intrinsics, source_size)


@pytest.fixture(scope="module")
def pipe() -> DualCamCtrlPipeline:
    return tiny_pipeline(seed=0)


@pytest.fixture(scope="module")
def image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (72, 128, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def depth() -> Image.Image:
    ramp = np.tile(np.linspace(0, 255, 128), (72, 1)).astype(np.uint8)
    return Image.fromarray(ramp)


def generate(pipe, **overrides):
    arguments = {
        "prompt": "a slow orbit around a red car", "negative_prompt": "blurry", "height": HEIGHT, "width": WIDTH,
        "num_frames": FRAMES, "num_inference_steps": STEPS, "seed": 7, "progress_bar_cmd": quiet,
    }
    arguments.update(overrides)
    return pipe(**arguments)


@pytest.fixture(scope="module")
def reference(pipe, image, depth):
    """I2V with merged guidance: the output the other runs are compared with."""
    return generate(pipe, input_image=image, input_depth=depth, camera=orbit())


def test_scheduler_matches_spec_formula(pipe):
    for steps in (3, 50):
        pipe.scheduler.set_timesteps(steps, shift=5.0)
        sigmas = np.linspace(1.0, 0.0, steps + 1)[:-1]
        shifted = 5 * sigmas / (1 + 4 * sigmas)
        np.testing.assert_allclose(pipe.scheduler.sigmas.numpy(), shifted, rtol=1e-6)
        np.testing.assert_allclose(pipe.scheduler.timesteps.numpy(), 1000 * shifted, rtol=1e-6)
    # 3 steps by hand: sigmas 1, 2/3, 1/3 shifted by 5 -> 1, (10/3)/(1+8/3) = 10/11, (5/3)/(1+4/3) = 5/7.
    pipe.scheduler.set_timesteps(3, shift=5.0)
    np.testing.assert_allclose(pipe.scheduler.sigmas.numpy(), [1.0, 10 / 11, 5 / 7], rtol=1e-6)
    sample, velocity = torch.ones(2), torch.full((2,), 2.0)
    timesteps = pipe.scheduler.timesteps
    assert torch.allclose(pipe.scheduler.step(velocity, timesteps[0], sample), sample + 2.0 * (10 / 11 - 1.0))
    assert torch.allclose(pipe.scheduler.step(velocity, timesteps[2], sample), sample + 2.0 * (0.0 - 5 / 7))


def test_i2v_outputs(reference):
    assert len(reference.video) == len(reference.depth_video) == FRAMES
    assert {frame.size for frame in reference.video + reference.depth_video} == {(WIDTH, HEIGHT)}
    assert {frame.mode for frame in reference.video} == {"RGB"}
    assert {frame.mode for frame in reference.depth_video} == {"L"}
    assert reference.latents.shape == reference.depth_latents.shape == (1, 16, 2, HEIGHT // 8, WIDTH // 8)
    assert torch.isfinite(reference.latents).all() and torch.isfinite(reference.depth_latents).all()
    assert not torch.equal(reference.latents, reference.depth_latents)


def test_depth_video_is_channel_mean_of_decoded_depth(pipe, reference):
    decoded = pipe.vae.decode(reference.depth_latents, device="cpu", tiled=True, tile_size=(30, 52),
                              tile_stride=(15, 26))
    expected = ((decoded[0].mean(dim=0) + 1) * 127.5).clip(0, 255).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(np.stack([np.asarray(frame) for frame in reference.depth_video]), expected)


def test_same_seed_same_tensors_other_seed_differs(pipe, image, depth, reference):
    again = generate(pipe, input_image=image, input_depth=depth, camera=orbit())
    assert torch.equal(again.latents, reference.latents)
    assert torch.equal(again.depth_latents, reference.depth_latents)
    other = generate(pipe, input_image=image, input_depth=depth, camera=orbit(), seed=8)
    assert not torch.allclose(other.latents, reference.latents)


def test_batched_guidance_equals_unbatched(pipe, image, depth, reference):
    unbatched = generate(pipe, input_image=image, input_depth=depth, camera=orbit(), cfg_merge=False)
    torch.testing.assert_close(unbatched.latents, reference.latents, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(unbatched.depth_latents, reference.depth_latents, rtol=1e-4, atol=1e-5)


def test_merged_guidance_stacks_only_the_prompt_contexts():
    shared = {"cfg_merge": True, "cfg_scale": 5.0, "latents": torch.randn(1, 16, 3, 4, 6),
              "y": torch.randn(1, 16, 3, 4, 6), "clip_feature": torch.randn(1, 257, 1280)}
    positive, negative = {"context": torch.randn(1, 7, 32)}, {"context": torch.randn(1, 7, 32)}
    expected_context = torch.cat([positive["context"], negative["context"]])
    merged, merged_positive, merged_negative = DualCamUnit_CfgMerger().process(
        None, dict(shared), dict(positive), dict(negative))
    assert torch.equal(merged["context"], expected_context)
    assert merged_positive == merged_negative == {}
    for name in ("latents", "y", "clip_feature"):
        assert merged[name] is shared[name]


def test_unguided_merge_setting_makes_no_difference(pipe, image, depth):
    merged = generate(pipe, input_image=image, input_depth=depth, camera=orbit(), cfg_scale=1.0)
    separate = generate(pipe, input_image=image, input_depth=depth, camera=orbit(), cfg_scale=1.0, cfg_merge=False)
    assert torch.equal(merged.latents, separate.latents)


def test_encoders_and_camera_adapter_run_once_per_generation(pipe, image, depth, monkeypatch):
    calls = {"text": 0, "clip": 0, "camera": 0, "dit": 0, "decode": []}

    def counting(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper

    def recording_decode(latents, **kwargs):
        calls["decode"].append(kwargs["tiled"])
        return original_decode(latents, **kwargs)

    original_decode = pipe.vae.decode
    monkeypatch.setattr(pipe.text_encoder, "forward", counting("text", pipe.text_encoder.forward))
    monkeypatch.setattr(pipe.image_encoder, "encode_image", counting("clip", pipe.image_encoder.encode_image))
    monkeypatch.setattr(pipe.dit.control_adapter, "forward", counting("camera", pipe.dit.control_adapter.forward))
    monkeypatch.setattr(pipe.dit, "forward", counting("dit", pipe.dit.forward))
    monkeypatch.setattr(pipe.vae, "decode", recording_decode)
    generate(pipe, input_image=image, input_depth=depth, camera=orbit(), num_inference_steps=3)
    assert (calls["text"], calls["clip"], calls["camera"], calls["dit"]) == (2, 1, 1, 3)
    assert calls["decode"] == [True, True]


def test_step_cache(pipe, image, depth, reference):
    arguments = {"input_image": image, "input_depth": depth, "camera": orbit()}
    never_skips = generate(pipe, **arguments, step_cache_threshold=0.0)
    assert torch.equal(never_skips.latents, reference.latents)
    assert never_skips.params["step_cache"] == {"threshold": 0.0, "computed": STEPS, "skipped": 0, "speedup": 1.0}
    # A huge threshold skips every step but the first (warm-up) and the last; each guidance stream has its cache.
    skips = generate(pipe, **arguments, num_inference_steps=4, step_cache_threshold=1e9, cfg_merge=False)
    assert skips.params["step_cache"]["computed"] == 2 and skips.params["step_cache"]["skipped"] == 2
    assert skips.params["step_cache"]["negative"]["skipped"] == 2
    assert reference.params["step_cache"] is None


def test_guidance_formula_on_both_branches(pipe):
    """``nega + g * (posi - nega)`` per branch, with the positive and negative inputs routed to their own call."""
    def fake_model_fn(dit, context, **kwargs):
        return context * 1.0, context * 10.0

    posi, nega = torch.full((1, 1), 2.0), torch.full((1, 1), 0.5)
    original = pipe.model_fn
    pipe.model_fn = fake_model_fn
    try:
        rgb, depth = pipe.guided_velocity({"dit": None}, 6.0, False, torch.zeros(1), {}, {"context": posi},
                                          {"context": nega})
        merged_rgb, merged_depth = pipe.guided_velocity(
            {"dit": None}, 6.0, True, torch.zeros(1), {"context": torch.cat([posi, nega])}, {}, {})
        unguided = pipe.guided_velocity({"dit": None}, 1.0, False, torch.zeros(1), {}, {"context": posi},
                                        {"context": nega})
    finally:
        pipe.model_fn = original
    assert rgb.item() == merged_rgb.item() == pytest.approx(0.5 + 6.0 * 1.5)
    assert depth.item() == merged_depth.item() == pytest.approx(5.0 + 6.0 * 15.0)
    assert unguided[0].item() == 2.0 and unguided[1].item() == 20.0


def test_trajectory_equals_packed_tensor(pipe, image, depth, reference, tmp_path):
    """The pipeline's camera handling equals doing it by hand: first frames, relative, cover-crop, Plücker, pack.
    A run from a tensor saves it (as the DiT received it, float32 here) to camera.safetensors with its digest."""
    trajectory = orbit()[:FRAMES].relative().cover_crop((128, 72), (WIDTH, HEIGHT))
    packed = pack_plucker(trajectory.plucker(width=WIDTH, height=HEIGHT)).double()
    from_tensor = generate(pipe, input_image=image, input_depth=depth, camera=packed)
    assert torch.equal(from_tensor.latents, reference.latents)
    assert torch.equal(from_tensor.depth_latents, reference.depth_latents)
    assert from_tensor.trajectory is None and from_tensor.params["camera"]["type"] == "plucker_tensor"
    np.testing.assert_allclose(reference.trajectory.c2w, trajectory.c2w, atol=1e-12)
    np.testing.assert_allclose(reference.trajectory.intrinsics, trajectory.intrinsics, atol=1e-12)

    written = from_tensor.save(tmp_path / "run")
    assert "camera.safetensors" in written and "trajectory.json" not in written and "trajectory.png" not in written
    params = json.loads((tmp_path / "run" / "params.json").read_text())
    assert params["camera"]["file"] == "camera.safetensors" and params["camera"]["dtype"] == "float32"
    assert params["camera"]["shape"] == [1, 24, 2, HEIGHT, WIDTH]
    saved = load_file(tmp_path / "run" / "camera.safetensors")["camera"]
    # Exactly the maps the reference run packed itself: the file reproduces the run.
    assert saved.dtype == torch.float32 and torch.equal(saved, packed.float().unsqueeze(0))
    assert hashlib.sha256(saved.numpy().tobytes()).hexdigest() == params["camera"]["sha256"]


def test_cover_crop_uses_image_size_without_source_size(pipe, image, depth, reference):
    without_source = generate(pipe, input_image=image, input_depth=depth, camera=orbit(source_size=None))
    torch.testing.assert_close(without_source.latents, reference.latents)


def test_t2v_uses_black_image_clip_and_zero_conditioning(pipe):
    seen = {}
    original_encode, original_vae_encode = pipe.image_encoder.encode_image, pipe.vae.encode

    def recording_encode(images):
        seen["clip_input"] = images[0].clone()
        return original_encode(images)

    def forbidden_vae_encode(*args, **kwargs):
        raise AssertionError("text-to-video must not VAE-encode a first frame")

    pipe.image_encoder.encode_image, pipe.vae.encode = recording_encode, forbidden_vae_encode
    try:
        output = generate(pipe, t2v=True, camera=orbit(source_size=None))
    finally:
        pipe.image_encoder.encode_image, pipe.vae.encode = original_encode, original_vae_encode
    assert seen["clip_input"].shape == (1, 3, HEIGHT, WIDTH)
    assert torch.all(seen["clip_input"] == -1.0)
    assert len(output.video) == FRAMES and output.input_image is None and output.input_depth is None
    assert output.params["t2v"] is True and output.params["input_image"] is None


def test_depth_estimator_is_used_when_depth_is_missing(pipe, image, depth, reference):
    calls = []

    def estimator(picture: Image.Image) -> Image.Image:
        calls.append(picture.size)
        return depth

    pipe.depth_estimator = estimator
    try:
        # The estimator sees the image already at the output size; the reference depth map is resized the same way.
        estimated = generate(pipe, input_image=image, camera=orbit())
    finally:
        pipe.depth_estimator = None
    assert calls == [(WIDTH, HEIGHT)]
    assert estimated.params["depth_estimated"] is True
    resized_reference = generate(pipe, input_image=image, input_depth=cover_resize(depth, width=WIDTH, height=HEIGHT),
                                 camera=orbit())
    assert torch.equal(estimated.latents, resized_reference.latents)


def test_params_record_inputs_and_trajectory(reference):
    params = reference.params
    assert params["seed"] == 7 and params["num_inference_steps"] == STEPS and params["cfg_scale"] == 6.0
    assert (params["height"], params["width"], params["num_frames"]) == (HEIGHT, WIDTH, FRAMES)
    assert params["prompt"] == "a slow orbit around a red car" and params["negative_prompt"] == "blurry"
    assert params["input_image"]["size"] == [128, 72] and len(params["input_image"]["sha256"]) == 64
    rows = np.array(params["camera"]["realestate10k"])
    restored = CameraTrajectory.from_realestate10k(rows)
    np.testing.assert_allclose(restored.c2w, reference.trajectory.c2w, atol=1e-8)
    np.testing.assert_allclose(restored.intrinsics, reference.trajectory.intrinsics, atol=1e-9)
    assert params["camera"]["source_size"] == (WIDTH, HEIGHT)


def test_first_frame_conditioning(pipe, image, depth):
    """y / depth_y: the VAE latent of the image / of the 3-channel depth map at frame 0, zeros after (docs/model.md,
    Forward pass and Depth input)."""
    rgb_frame = prepare_image(image, width=WIDTH, height=HEIGHT)
    depth_frame = prepare_depth(depth, width=WIDTH, height=HEIGHT)
    gray = np.asarray(cover_resize(depth, width=WIDTH, height=HEIGHT), dtype=np.float32)
    depth_input = pipe.preprocess_image(depth_frame)
    for channel in range(3):
        np.testing.assert_allclose(depth_input[0, channel].numpy(), gray / 127.5 - 1, atol=1e-6)
    latents = torch.zeros(1, 16, 2, HEIGHT // 8, WIDTH // 8)
    conditioning = DualCamUnit_ImageEmbedderVAE().process(pipe, rgb_frame, depth_frame, latents)
    for name, frame in (("y", rgb_frame), ("depth_y", depth_frame)):
        expected = pipe.vae.encode([pipe.preprocess_image(frame).transpose(0, 1)], device="cpu")
        torch.testing.assert_close(conditioning[name][:, :, :1], expected, rtol=1e-5, atol=1e-6)
        assert not conditioning[name][:, :, 1:].any()
    assert not torch.allclose(conditioning["y"][:, :, :1], conditioning["depth_y"][:, :, :1])


def test_cover_resize_crops_the_centre():
    columns = np.tile(np.arange(200, dtype=np.uint8), (100, 1))
    cropped = np.asarray(cover_resize(Image.fromarray(columns), width=50, height=100))
    np.testing.assert_array_equal(cropped, np.tile(np.arange(75, 125, dtype=np.uint8), (100, 1)))
    rows = np.tile(np.arange(40, dtype=np.uint8)[:, None], (1, 10))
    scaled = np.asarray(cover_resize(Image.fromarray(rows), width=20, height=20))  # 10x40 -> 20x80, keep rows 30..49
    assert scaled.shape == (20, 20)
    np.testing.assert_allclose(scaled[:, 10], np.arange(30, 50) / 2 - 0.25, atol=1.0)


def forbid_models(pipe, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a model ran before the arguments were checked")

    monkeypatch.setattr(pipe.dit, "forward", forbidden)
    monkeypatch.setattr(pipe.dit, "embed_camera", forbidden)
    monkeypatch.setattr(pipe.text_encoder, "forward", forbidden)
    monkeypatch.setattr(pipe.image_encoder, "encode_image", forbidden)
    monkeypatch.setattr(pipe.vae, "encode", forbidden)
    monkeypatch.setattr(pipe.vae, "decode", forbidden)


BAD_ARGUMENTS = [
    ({"num_frames": 10}, ValueError, "num_frames must be 4k\\+1.*nearest valid: 9 or 13"),
    ({"num_frames": 0}, ValueError, "num_frames must be >= 1"),
    ({"num_frames": 9.0}, TypeError, "num_frames must be an integer"),
    ({"height": 70}, ValueError, "height must be a multiple of 16.*64 or 80"),
    ({"width": 100}, ValueError, "width must be a multiple of 16"),
    ({"width": "96"}, TypeError, "width must be an integer"),
    ({"num_inference_steps": 0}, ValueError, "num_inference_steps must be >= 1"),
    ({"cfg_scale": "6"}, TypeError, "cfg_scale must be a number"),
    ({"cfg_scale": float("nan")}, ValueError, "cfg_scale must be finite"),
    ({"sigma_shift": 0.0}, ValueError, "sigma_shift must be positive"),
    ({"num_inference_steps": "50"}, TypeError, "num_inference_steps must be an integer"),
    ({"seed": -1}, ValueError, "seed must be >= 0"),
    ({"step_cache_threshold": -0.1}, ValueError, "step_cache_threshold must be >= 0"),
    ({"step_cache_threshold": "0.1"}, TypeError, "step_cache_threshold must be a number"),
    ({"seed": 1.5}, TypeError, "seed must be an integer"),
    ({"prompt": 3}, TypeError, "prompt must be a string"),
    ({"negative_prompt": None}, TypeError, "negative_prompt must be a string"),
    ({"tiled": 1}, TypeError, "tiled must be True or False"),
    ({"input_depth": None}, ValueError, "input_depth is required for image-to-video"),
    ({"input_image": None}, ValueError, "input_image is required"),
    ({"input_image": np.zeros((72, 128, 3), np.uint8)}, TypeError, "input_image must be a PIL.Image.Image"),
    ({"input_depth": Image.new("I;16", (128, 72))}, ValueError, "input_depth must be an 8-bit image"),
    ({"t2v": True}, ValueError, "t2v=True generates from the prompt alone"),
    ({"camera": None}, TypeError, "camera must be a .*CameraTrajectory"),
    ({"camera": [[0.0] * 18]}, TypeError, "camera must be a .*CameraTrajectory"),
    ({"camera": orbit(num_frames=1), "resample_camera": True}, ValueError, "at least 2 are needed to resample"),
    ({"camera": orbit(num_frames=3)}, ValueError, "has 3 frames, num_frames=5 are needed: the path is followed frame "
                                                  "by frame; ask for at most 1 frames, or stretch it"),
    ({"camera": torch.zeros(24, 3, HEIGHT, WIDTH)}, ValueError, "camera tensor must be packed Plücker maps"),
    ({"camera": torch.zeros(2, 24, 2, HEIGHT, WIDTH)}, ValueError, "camera tensor must be packed Plücker maps"),
    ({"camera": torch.zeros(24, 2, HEIGHT, WIDTH, dtype=torch.int64)}, TypeError, "camera tensor must be floating"),
    ({"tile_size": (0, 0)}, ValueError, "tile_size must be a pair \\(height, width\\) of positive integers"),
    ({"tile_size": "ab"}, ValueError, "tile_size must be a pair .* got 'ab'"),
    ({"tile_size": (30,)}, ValueError, "tile_size must be a pair .* got \\(30,\\)"),
    ({"tile_size": (30, 52.0)}, ValueError, "tile_size must be a pair"),
    ({"tile_size": None, "tiled": False}, ValueError, "tile_size must be a pair"),
    ({"tile_stride": (0, 0)}, ValueError, "tile_stride must be a pair"),
    ({"tile_stride": (True, 26)}, ValueError, "tile_stride must be a pair"),
    ({"tile_stride": (30, 26)}, ValueError, "tile_stride must be smaller than tile_size on both axes"),
    ({"tile_size": (4, 6), "tile_stride": (2, 7)}, ValueError, "tile_stride must be smaller than tile_size"),
    ({"progress_bar_cmd": None}, TypeError, "progress_bar_cmd must be callable.*got NoneType None"),
]


@pytest.mark.parametrize(("overrides", "error", "message"), BAD_ARGUMENTS)
def test_bad_arguments_fail_before_any_model_runs(pipe, image, depth, monkeypatch, overrides, error, message):
    forbid_models(pipe, monkeypatch)
    arguments = {"input_image": image, "input_depth": depth, "camera": orbit()}
    arguments.update(overrides)
    with pytest.raises(error, match=message):
        generate(pipe, **arguments)


def test_tiling_and_progress_bar_are_used(pipe, image, depth, reference):
    """Two overlapping tiles across the 8x12 latent give their own blend (a list is accepted as a pair); the
    progress function wraps the denoising steps."""
    steps_seen = []

    def recording(steps):
        steps_seen.extend(float(step) for step in steps)
        return steps

    tiled = generate(pipe, input_image=image, input_depth=depth, camera=orbit(), tile_size=[8, 8], tile_stride=(4, 4),
                     progress_bar_cmd=recording)
    assert steps_seen == [float(step) for step in pipe.scheduler.timesteps] and len(steps_seen) == STEPS
    assert torch.equal(tiled.latents, reference.latents)
    decoded = pipe.vae.decode(tiled.latents, device="cpu", tiled=True, tile_size=(8, 8), tile_stride=(4, 4))
    expected = pipe.vae_output_to_video(decoded)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(tiled.video, expected, strict=True))
    # The default tile covers the whole latent, so the reference is one tile: the small tiles blend differently.
    assert not np.array_equal(np.asarray(tiled.video[2]), np.asarray(reference.video[2]))
    assert tiled.params["tile_size"] == [8, 8] and tiled.params["tile_stride"] == [4, 4]
    assert reference.params["tile_size"] == [30, 52]


def test_params_name_the_models(pipe, reference):
    assert reference.params["models"] == tiny_model_source(0)
    assert reference.params["dit_config"] == pipe.dit.config
    assert DualCamCtrlPipeline().model_source == DIRECT_MODEL_SOURCE


def test_longer_trajectory_is_stretched_with_resample_camera(pipe, image, depth):
    output = generate(pipe, input_image=image, input_depth=depth, camera=orbit(num_frames=13), resample_camera=True)
    # Frames 0, 3, 6, 9, 12 of the 13 fall exactly on the stretched clip's 5.
    expected = orbit(num_frames=13)[::3].cover_crop((128, 72), (WIDTH, HEIGHT))
    np.testing.assert_allclose(output.trajectory.c2w, expected.c2w, atol=1e-12)
    np.testing.assert_allclose(output.trajectory.intrinsics, expected.intrinsics, atol=1e-12)
    assert output.params["resample_camera"] is True


def test_a_depth_map_of_another_frame_is_refused(pipe, image):
    """The depth map must show the image's frame (any size) or its centre crop at the output's aspect."""
    sideways = Image.new("L", (image.height * 2, image.width * 2))
    with pytest.raises(ValueError, match=r"input_depth is .* \(aspect 0.56.\), but input_image is 128x72"):
        generate(pipe, input_image=image, input_depth=sideways, camera=orbit())


def test_the_depth_estimators_output_is_checked(pipe, image):
    cases = ((np.zeros((HEIGHT, WIDTH), np.uint8), TypeError, "must return a PIL image"),
             (Image.new("I;16", (WIDTH, HEIGHT)), ValueError, "depth_estimator must be an 8-bit"))
    for result, error, message in cases:
        pipe.depth_estimator = lambda picture, result=result: result
        try:
            with pytest.raises(error, match=message):
                generate(pipe, input_image=image, camera=orbit())
        finally:
            pipe.depth_estimator = None


def test_numpy_numbers_are_recorded_as_plain_numbers(pipe, image, depth):
    output = generate(pipe, input_image=image, input_depth=depth, camera=orbit(), cfg_scale=np.float32(6.0),
                      num_inference_steps=np.int64(STEPS), height=np.int64(HEIGHT))
    params = json.loads(json.dumps(output.params))
    assert (params["cfg_scale"], params["num_inference_steps"], params["height"]) == (6.0, STEPS, HEIGHT)
