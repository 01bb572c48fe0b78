"""pipeline.setup: the one place that picks the official or tiny models, the dtype, offloading and the depth model."""
import numpy as np
import pytest
import torch
from PIL import Image

from diffsynth_dualcam.models.checkpoints import DIT_FILE_NAME, OFFICIAL_FILE_NAME
from diffsynth_dualcam.models.depth_estimator import DepthEstimator
from diffsynth_dualcam.pipeline.setup import (
    TINY_DEFAULTS,
    inference_dtype,
    load_depth_estimator,
    load_pipeline,
    offload_fields,
    tiny_reason,
)
from diffsynth_dualcam.pipeline.tiny import save_tiny_depth_anything, tiny_depth_estimator, tiny_model_source


def test_tiny_models_run_when_asked_or_when_the_official_dit_is_missing(tmp_path):
    assert tiny_reason(True, tmp_path) == "--tiny was given."
    assert tiny_reason(False, tmp_path) == f"the official DualCamCtrl weights were not found in {tmp_path}/."
    assert tiny_reason(False, tmp_path, checkpoint=tmp_path / "mine.safetensors") == ""
    for name in (OFFICIAL_FILE_NAME, DIT_FILE_NAME):  # the released .pt, or the converted safetensors
        folder = tmp_path / name.split(".")[0]
        folder.mkdir()
        (folder / name).write_bytes(b"")
        assert tiny_reason(False, folder) == ""
        assert tiny_reason(True, folder) == "--tiny was given."


@pytest.mark.parametrize(("device", "dtype"), [
    ("cpu", torch.float32), ("cuda", torch.bfloat16), ("cuda:1", torch.bfloat16), ("mps", torch.bfloat16),
])
def test_official_models_run_in_bfloat16_on_any_accelerator(device, dtype):
    assert inference_dtype(device) == dtype


def test_offload_keeps_weights_in_cpu_memory_and_computes_on_the_device():
    fields = offload_fields("cuda:1", torch.bfloat16)
    assert {key: value for key, value in fields.items() if key.endswith("_device")} == {
        "offload_device": "cpu", "onload_device": "cpu", "preparing_device": "cuda:1", "computation_device": "cuda:1"}
    assert {value for key, value in fields.items() if key.endswith("_dtype")} == {torch.bfloat16}


def test_tiny_pipeline_and_depth_model():
    pipe = load_pipeline(tiny=True)
    assert pipe.model_source == tiny_model_source(0) and pipe.dit is not None
    assert pipe.torch_dtype == torch.float32  # the tiny models run in float32 on the CPU
    width, height = TINY_DEFAULTS["size"]
    assert width % 16 == 0 and height % 16 == 0 and (TINY_DEFAULTS["frames"] - 1) % 4 == 0
    image_size = (40, 30)
    depth = load_depth_estimator(None, tiny=True)(Image.new("RGB", image_size, (90, 120, 200)))
    assert depth.mode == "L" and depth.size == image_size


def test_depth_model_that_cannot_load_says_why_and_what_to_do(tmp_path):
    expected = r"(?s)^no map and the depth model '.*absent' could not be loaded \(.*\); do this$"
    with pytest.raises(ValueError, match=expected):
        load_depth_estimator(str(tmp_path / "absent"), tiny=True, why="no map and ", remedy="do this")


def test_a_given_depth_model_wins_over_the_tiny_one(tmp_path):
    model = save_tiny_depth_anything(tmp_path / "model", seed=3)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), np.uint8))
    given = np.asarray(load_depth_estimator(str(model), tiny=True)(image))
    np.testing.assert_array_equal(given, np.asarray(DepthEstimator.from_pretrained(str(model))(image)))
    assert not np.array_equal(given, np.asarray(tiny_depth_estimator()(image)))
