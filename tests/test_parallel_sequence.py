"""Sequence-parallel DiT: two gloo processes on the CPU must reproduce the single-process forward and sampling."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from diffsynth.diffusion import FlowMatchScheduler

from diffsynth_dualcam.cache import StepCache
from diffsynth_dualcam.models import DualCamCtrlDiT
from diffsynth_dualcam.parallel import FrameShards, SequenceParallelState
from diffsynth_dualcam.testing import tiny_dit_config

WORLD_SIZE = 2


pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_dit(seed: int = 0) -> DualCamCtrlDiT:
    torch.manual_seed(seed)
    dit = DualCamCtrlDiT(**tiny_dit_config())
    # proj_out starts at zero, which would make every fusion (and its halo exchange) a no-op.
    for name, parameter in dit.named_parameters():
        if name.endswith("proj_out.weight"):
            torch.nn.init.normal_(parameter, std=0.05)
    return dit.eval().requires_grad_(False)


def _inputs(batch: int, frames: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    height, width = 8, 12

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    text_dim = tiny_dit_config()["text_dim"]
    return {
        "x": randn(batch, 16, frames, height, width),
        "depth_latents": randn(batch, 16, frames, height, width),
        "y": randn(batch, 16, frames, height, width),
        "depth_y": randn(batch, 16, frames, height, width),
        "timestep": torch.full((batch,), 731.0),
        "context": randn(batch, 7, text_dim),
        "clip_feature": randn(batch, 257, 1280),
        "camera_latents": randn(batch, 24, frames, 8 * height, 8 * width),
    }


# Each case: (batch, latent frames, pass the camera as cached embed_camera tokens). 7 frames split 4/3 (uneven).
CASES = [(2, 7, False), (1, 6, True)]


def _forward(dit: DualCamCtrlDiT, inputs: dict[str, torch.Tensor], cached_camera: bool):
    kwargs = dict(inputs)
    if cached_camera:
        kwargs["camera_embedding"] = dit.embed_camera(kwargs.pop("camera_latents"))
    return dit(**kwargs)


def _cached_sampling(dit: DualCamCtrlDiT, steps: int = 6) -> dict[str, torch.Tensor]:
    """Euler sampling with a step cache: every rank must take the same skip decisions as one process."""
    inputs = _inputs(batch=1, frames=6, seed=7)
    rgb, depth = inputs.pop("x"), inputs.pop("depth_latents")
    inputs.pop("timestep")
    cache = StepCache(steps, threshold=0.3)
    scheduler = FlowMatchScheduler("Wan")
    scheduler.set_timesteps(steps, shift=5.0)
    for timestep in scheduler.timesteps:
        velocity, depth_velocity = dit(rgb, depth, timestep.unsqueeze(0), step_cache=cache, **inputs)
        rgb, depth = scheduler.step(velocity, timestep, rgb), scheduler.step(depth_velocity, timestep, depth)
    return {"cached_rgb": rgb, "cached_depth": depth, "cached_computed": torch.tensor(cache.computed)}


def _worker(rank: int, directory: str) -> None:
    import torch.distributed as dist

    from diffsynth_dualcam.parallel import enable_sequence_parallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{directory}/store", rank=rank, world_size=WORLD_SIZE)
    try:
        dit = enable_sequence_parallel(_tiny_dit())
        outputs = {}
        for index, (batch, frames, cached_camera) in enumerate(CASES):
            rgb, depth = _forward(dit, _inputs(batch, frames, seed=index), cached_camera)
            outputs[f"{index}_rgb"], outputs[f"{index}_depth"] = rgb, depth
        outputs.update(_cached_sampling(dit))
        torch.save(outputs, os.path.join(directory, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_equal_single_process(tmp_path: Path) -> None:
    context = mp.get_context("fork")
    processes = [context.Process(target=_worker, args=(rank, str(tmp_path))) for rank in range(WORLD_SIZE)]
    for process in processes:
        process.start()
    dit = _tiny_dit()
    expected = {}
    for index, (batch, frames, cached_camera) in enumerate(CASES):
        rgb, depth = _forward(dit, _inputs(batch, frames, seed=index), cached_camera)
        expected[f"{index}_rgb"], expected[f"{index}_depth"] = rgb, depth
    expected.update(_cached_sampling(dit))
    assert 1 < expected["cached_computed"] < 6
    for process in processes:
        process.join(timeout=120)
        if process.is_alive():
            process.kill()
        assert process.exitcode == 0, f"sequence-parallel worker exited with {process.exitcode}"
    for rank in range(WORLD_SIZE):
        outputs = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert outputs.keys() == expected.keys()
        for name, reference in expected.items():
            assert outputs[name].shape == reference.shape
            torch.testing.assert_close(outputs[name], reference, rtol=0, atol=1e-5, msg=f"rank {rank} {name}")
    # The fusion must matter, or the halo exchange would be untested.
    for name, parameter in dit.named_parameters():
        if name.endswith("proj_out.weight"):
            parameter.zero_()
    without_fusion, _ = _forward(dit, _inputs(*CASES[0][:2], seed=0), CASES[0][2])
    assert (without_fusion - expected["0_rgb"]).abs().max() > 1e-2


def test_frame_shards_split_contiguously_with_extra_frames_first() -> None:
    shards = FrameShards(frames=7, world_size=3)
    assert shards.counts == [3, 2, 2]
    assert [shards.bounds(rank) for rank in range(3)] == [(0, 3), (3, 5), (5, 7)]
    with pytest.raises(ValueError, match="cannot split 2 latent frames over 3 ranks"):
        FrameShards(frames=2, world_size=3)


def test_split_rejects_shards_narrower_than_the_fusion_halo() -> None:
    state = SequenceParallelState(group=None, rank=0, world_size=2, halo=3, use_xfuser=False)
    assert state.split(6).counts == [3, 3]
    with pytest.raises(ValueError, match="at least 3 latent frames per rank"):
        state.split(5)


def test_generate_cli_runs_sequence_parallel_under_torchrun(tmp_path: Path) -> None:
    """Two gloo processes generate one clip; the first writes it, both report the parallel setup."""
    out = tmp_path / "clip"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD_SIZE),
        "-m", "diffsynth_dualcam", "generate", "--sequence-parallel", "--tiny", "--device", "cpu", "--t2v",
        "--preset", "orbit_left", "--frames", "21", "--size", "64x48", "--steps", "1", "--out", str(out),
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count(f"sequence parallel: {WORLD_SIZE} ranks (ulysses)") == WORLD_SIZE
    assert result.stdout.count("wrote ") == 1
    assert (out / "params.json").is_file() and (out / "video.mp4").is_file()
