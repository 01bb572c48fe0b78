"""Automatic depth: a tiny randomly initialised Depth Anything model, saved and loaded back offline."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from diffsynth_dualcam.depth import DepthEstimator, disparity_to_uint8
from diffsynth_dualcam.testing import save_tiny_depth_anything, tiny_depth_estimator


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_depth_anything")
    save_tiny_depth_anything(path)
    return path


@pytest.fixture
def photo():
    rng = np.random.default_rng(3)
    # Non-square and not a multiple of the patch size, so a swapped height/width or a missing resize shows.
    gradient = np.linspace(0, 255, 71)[None, :, None] * np.ones((45, 1, 3))
    noise = rng.integers(0, 40, size=(45, 71, 3))
    return Image.fromarray(np.clip(gradient + noise, 0, 255).astype(np.uint8))


def test_disparity_to_uint8_golden_values():
    disparity = np.array([[1.0, 2.0], [3.0, 5.0]])
    # (d - 1) / 4 * 255 = 0, 63.75, 127.5, 255 -> rounded half to even.
    np.testing.assert_array_equal(disparity_to_uint8(disparity), np.array([[0, 64], [128, 255]], dtype=np.uint8))
    assert disparity_to_uint8(np.full((3, 4), 7.0)).tolist() == np.zeros((3, 4), dtype=np.uint8).tolist()


@pytest.mark.parametrize("bad", [np.zeros(5), np.array([[0.0, np.nan]])])
def test_disparity_to_uint8_rejects_bad_maps(bad):
    with pytest.raises(ValueError, match="disparity"):
        disparity_to_uint8(bad)


def test_tiny_model_round_trip_matches_direct_forward(tiny_model_dir, photo):
    from transformers import DepthAnythingForDepthEstimation

    estimator = DepthEstimator.from_pretrained(str(tiny_model_dir), local_files_only=True)
    depth = estimator(photo)
    assert depth.mode == "L" and depth.size == photo.size
    values = np.asarray(depth)
    assert values.min() == 0 and values.max() == 255

    # Independent reference: ImageNet normalisation by hand at the processor's 28x56 size, bicubic resize back.
    model = DepthAnythingForDepthEstimation.from_pretrained(str(tiny_model_dir)).eval()
    resized = np.asarray(photo.resize((56, 28), Image.BICUBIC), dtype=np.float32) / 255.0
    normalised = (resized - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    pixel_values = torch.from_numpy(normalised.transpose(2, 0, 1)[None]).float()
    with torch.no_grad():
        predicted = model(pixel_values=pixel_values).predicted_depth[:, None]
    expected = torch.nn.functional.interpolate(predicted, size=(45, 71), mode="bicubic", align_corners=False)[0, 0]
    np.testing.assert_allclose(estimator.disparity(photo), expected.numpy(), rtol=1e-3, atol=1e-4)


def test_metric_head_is_inverted_to_disparity(tmp_path, photo):
    save_tiny_depth_anything(tmp_path, depth_estimation_type="metric", seed=1)
    estimator = DepthEstimator.from_pretrained(str(tmp_path), local_files_only=True)
    assert estimator.is_metric
    inputs = estimator.processor(images=photo, return_tensors="pt")
    with torch.no_grad():
        distance = estimator.model(**inputs).predicted_depth[:, None]
    distance = torch.nn.functional.interpolate(distance, size=(45, 71), mode="bicubic", align_corners=False)[0, 0]
    np.testing.assert_allclose(estimator.disparity(photo) * distance.numpy(), 1.0, rtol=1e-4)


def test_rejects_other_model_families_and_non_images(tiny_model_dir):
    fake = torch.nn.Linear(1, 1)
    fake.config = SimpleNamespace(model_type="glpn")
    with pytest.raises(ValueError, match="depth_anything"):
        DepthEstimator(fake, processor=None)
    estimator = DepthEstimator.from_pretrained(str(tiny_model_dir), local_files_only=True)
    with pytest.raises(ValueError, match="PIL image"):
        estimator.disparity(np.zeros((4, 4, 3)))


def test_missing_local_model_is_a_clear_error(tmp_path):
    with pytest.raises(OSError):
        DepthEstimator.from_pretrained(str(tmp_path / "absent"), local_files_only=True)


def test_tiny_depth_estimator_matches_the_saved_tiny_model(tiny_model_dir, photo):
    loaded = DepthEstimator.from_pretrained(str(tiny_model_dir), local_files_only=True)
    in_memory = tiny_depth_estimator()
    assert not in_memory.is_metric
    np.testing.assert_allclose(in_memory.disparity(photo), loaded.disparity(photo), rtol=1e-5, atol=1e-6)
    assert in_memory(photo).mode == "L" and in_memory(photo).size == photo.size
