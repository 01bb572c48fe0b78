"""Automatic depth: a tiny randomly initialised Depth Anything model, saved and loaded back offline."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from diffsynth_dualcam.models.depth_estimator import DepthEstimator, disparity_to_uint8
from diffsynth_dualcam.pipeline.tiny import save_tiny_depth_anything, tiny_depth_estimator


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


class HubLoaderRecorder:
    """Stands in for transformers' ``from_pretrained``: records ``local_files_only`` of each call and loads the tiny
    model from its folder when the "cache" holds it; any call that would download fails the test."""

    def __init__(self, cached_dir=None):
        self.cached_dir = cached_dir
        self.calls = []

    def loader(self, real_loader):
        def from_pretrained(model_id, local_files_only=False, **kwargs):
            self.calls.append(local_files_only)
            if not local_files_only:
                raise AssertionError("the hub was asked for files")
            if self.cached_dir is None:
                raise OSError(f"{model_id} is not in the cache")
            return real_loader(str(self.cached_dir), local_files_only=True, **kwargs)

        return from_pretrained


@pytest.fixture
def hub(monkeypatch):
    """Patches transformers' loaders and the hub check; returns a function that makes a recorder for a cache."""
    import transformers

    from diffsynth_dualcam.models import depth_estimator as depth

    checks = []

    def no_check(model_id, timeout=depth.HUB_CHECK_TIMEOUT):
        checks.append(model_id)
        raise OSError(f"{model_id} is not in the local cache and the hub did not answer (ConnectError)")

    monkeypatch.setattr(depth, "check_hub_reachable", no_check)

    def make(cached_dir=None):
        recorder = HubLoaderRecorder(cached_dir)
        for name in ("AutoImageProcessor", "AutoModelForDepthEstimation"):
            cls = getattr(transformers, name)
            monkeypatch.setattr(cls, "from_pretrained", recorder.loader(cls.from_pretrained))
        recorder.checks = checks
        return recorder

    return make


@pytest.mark.parametrize("setting", [("HF_HUB_OFFLINE", "1"), ("DIFFSYNTH_SKIP_DOWNLOAD", "true")])
def test_an_uncached_hub_model_with_downloads_off_fails_at_once(hub, monkeypatch, setting):
    for name in ("HF_HUB_OFFLINE", "DIFFSYNTH_SKIP_DOWNLOAD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(*setting)
    recorder = hub()
    with pytest.raises(OSError, match=f"downloads are off: {setting[0]} is set"):
        DepthEstimator.from_pretrained("depth-anything/Depth-Anything-V2-Small-hf")
    assert recorder.calls == [True] and recorder.checks == []


def test_an_uncached_hub_model_is_not_downloaded_when_the_hub_does_not_answer(hub, monkeypatch):
    for name in ("HF_HUB_OFFLINE", "DIFFSYNTH_SKIP_DOWNLOAD"):
        monkeypatch.delenv(name, raising=False)
    recorder = hub()
    with pytest.raises(OSError, match="the hub did not answer"):
        DepthEstimator.from_pretrained("depth-anything/Depth-Anything-V2-Small-hf")
    assert recorder.calls == [True]  # the cache was looked in, the download never started
    assert recorder.checks == ["depth-anything/Depth-Anything-V2-Small-hf"]


def test_a_cached_hub_model_loads_without_asking_the_hub(hub, monkeypatch, tiny_model_dir, photo):
    for name in ("HF_HUB_OFFLINE", "DIFFSYNTH_SKIP_DOWNLOAD"):
        monkeypatch.delenv(name, raising=False)
    recorder = hub(cached_dir=tiny_model_dir)
    estimator = DepthEstimator.from_pretrained("depth-anything/Depth-Anything-V2-Small-hf")
    assert recorder.calls == [True, True] and recorder.checks == []
    reference = tiny_depth_estimator()
    np.testing.assert_allclose(estimator.disparity(photo), reference.disparity(photo), rtol=1e-5, atol=1e-6)


def test_the_hub_check_makes_one_request_and_names_the_failure(monkeypatch):
    import huggingface_hub

    from diffsynth_dualcam.models.depth_estimator import check_hub_reachable

    requests = []

    def unreachable(self, repo_id, timeout=None, **kwargs):
        requests.append((repo_id, timeout))
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", unreachable)
    with pytest.raises(OSError, match=r"org/model is not in the local cache and the hub did not answer "
                                      r"\(ConnectionError: Name or service not known\)"):
        check_hub_reachable("org/model", timeout=3.0)
    assert requests == [("org/model", 3.0)]
