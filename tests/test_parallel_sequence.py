"""Sequence-parallel DiT: two gloo processes on the CPU must reproduce the single-process forward and sampling."""
from __future__ import annotations

import argparse
import enum
import importlib.machinery
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from diffsynth.core.vram.layers import enable_vram_management
from diffsynth.diffusion import FlowMatchScheduler
from diffsynth.models.model_loader import ModelPool

from diffsynth_dualcam.models import (
    DualCamCtrlDiT,
    LinearFusion,
    SigmaFusion,
    StackFusion,
    tokens_to_volume,
    volume_to_tokens,
)
from diffsynth_dualcam.models.registry import VRAM_MODULE_MAP
from diffsynth_dualcam.models.step_cache import StepCache
from diffsynth_dualcam.parallel import FrameShards, SequenceParallelState, init_distributed, xfuser_available
from diffsynth_dualcam.parallel.sequence import fusion_halo
from diffsynth_dualcam.pipeline.tiny import tiny_dit_config

WORLD_SIZE = 2
#: Config overrides of the three fusion kinds, and the frames each side their convolutions read.
FUSION_KINDS = {"sigma": {}, "stack": {"update": True}, "linear": {"use_gate_3d_linear": False}}
HALOS = {"sigma": 3, "stack": 4, "linear": 0}
HEIGHT, WIDTH = 8, 12
TOKENS_PER_FRAME = (HEIGHT // 2) * (WIDTH // 2)


pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_dit(kind: str = "sigma", seed: int = 0) -> DualCamCtrlDiT:
    torch.manual_seed(seed)
    dit = DualCamCtrlDiT(**{**tiny_dit_config(), **FUSION_KINDS[kind]})
    # Fusion outputs start at zero (and StackFusion's frame gates at a constant 1/2), which would make every
    # fusion op and its halo exchange a no-op: give the zero-initialised weights values.
    for fusion in (*dit.rgb_zero_inits, *dit.control_zero_inits):
        for parameter in fusion.parameters():
            if not parameter.any():
                torch.nn.init.normal_(parameter, std=0.05)
    return dit.eval().requires_grad_(False)


def _inputs(batch: int, frames: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    text_dim = tiny_dit_config()["text_dim"]
    return {
        "x": randn(batch, 16, frames, HEIGHT, WIDTH),
        "depth_latents": randn(batch, 16, frames, HEIGHT, WIDTH),
        "y": randn(batch, 16, frames, HEIGHT, WIDTH),
        "depth_y": randn(batch, 16, frames, HEIGHT, WIDTH),
        "timestep": torch.full((batch,), 731.0),
        "context": randn(batch, 7, text_dim),
        "clip_feature": randn(batch, 257, 1280),
        "camera_latents": randn(batch, 24, frames, 8 * HEIGHT, 8 * WIDTH),
    }


def _cases(kind: str) -> list[tuple[int, int, bool]]:
    """(batch, latent frames, pass the camera as cached embed_camera tokens): an uneven and an even split, each
    rank holding at least the halo (sigma: 7 frames split 4 + 3, and 6)."""
    frames = 2 * max(HALOS[kind], 3)
    return [(2, frames + 1, False), (1, frames, True)]


def _forward(dit: DualCamCtrlDiT, inputs: dict[str, torch.Tensor], cached_camera: bool):
    kwargs = dict(inputs)
    if cached_camera:
        kwargs["camera_embedding"] = dit.embed_camera(kwargs.pop("camera_latents"))
    return dit(**kwargs)


def _cached_sampling(dit: DualCamCtrlDiT, frames: int, steps: int = 6) -> dict[str, torch.Tensor]:
    """Euler sampling with a step cache: every rank must take the same skip decisions as one process."""
    inputs = _inputs(batch=1, frames=frames, seed=7)
    rgb, depth = inputs.pop("x"), inputs.pop("depth_latents")
    inputs.pop("timestep")
    cache = StepCache(steps, threshold=0.3)
    scheduler = FlowMatchScheduler("Wan")
    scheduler.set_timesteps(steps, shift=5.0)
    for timestep in scheduler.timesteps:
        velocity, depth_velocity = dit(rgb, depth, timestep.unsqueeze(0), step_cache=cache, **inputs)
        rgb, depth = scheduler.step(velocity, timestep, rgb), scheduler.step(depth_velocity, timestep, depth)
    return {"cached_rgb": rgb, "cached_depth": depth, "cached_computed": torch.tensor(cache.computed)}


def _outputs(dit: DualCamCtrlDiT, kind: str) -> dict[str, torch.Tensor]:
    outputs = {}
    for index, (batch, frames, cached_camera) in enumerate(_cases(kind)):
        rgb, depth = _forward(dit, _inputs(batch, frames, seed=index), cached_camera)
        outputs[f"{index}_rgb"], outputs[f"{index}_depth"] = rgb, depth
    # Merged guidance: latents, conditioning and camera of batch 1 shared by two contexts.
    frames = _cases(kind)[1][1]
    shared = {**_inputs(batch=1, frames=frames, seed=5), "context": _inputs(batch=2, frames=frames, seed=6)["context"]}
    outputs["shared_rgb"], outputs["shared_depth"] = _forward(dit, shared, cached_camera=True)
    outputs.update(_cached_sampling(dit, frames=frames))
    return outputs


def _worker(rank: int, directory: str, kind: str, use_xfuser: bool) -> None:
    from diffsynth_dualcam.parallel import enable_sequence_parallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{directory}/store", rank=rank, world_size=WORLD_SIZE)
    try:
        dit = enable_sequence_parallel(_tiny_dit(kind), use_xfuser=use_xfuser)
        outputs = _outputs(dit, kind)
        if use_xfuser:
            outputs["xfuser_calls"] = torch.tensor(FakeLongContextAttention.calls)
            # Its output must be what the blocks continue with: scaled to zero, the result changes.
            FakeLongContextAttention.scale = 0.0
            batch, frames, cached_camera = _cases(kind)[1]
            outputs["zeroed_attention_rgb"], _ = _forward(dit, _inputs(batch, frames, seed=1), cached_camera)
            # Left to choose, a gloo group keeps the built-in Ulysses path even with xfuser importable.
            outputs["auto_uses_xfuser"] = torch.tensor(enable_sequence_parallel(_tiny_dit(kind)).sequence_parallel
                                                       .use_xfuser)
        torch.save(outputs, os.path.join(directory, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _run_two_ranks(directory: Path, kind: str, use_xfuser: bool = False) -> list[mp.Process]:
    """Start both ranks (the caller computes the reference meanwhile, then joins them)."""
    context = mp.get_context("fork")
    processes = [context.Process(target=_worker, args=(rank, str(directory), kind, use_xfuser))
                 for rank in range(WORLD_SIZE)]
    for process in processes:
        process.start()
    return processes


def _join(processes: list[mp.Process], directory: Path) -> list[dict[str, torch.Tensor]]:
    for process in processes:
        process.join(timeout=120)
        if process.is_alive():
            process.kill()
        assert process.exitcode == 0, f"sequence-parallel worker exited with {process.exitcode}"
    return [torch.load(directory / f"rank{rank}.pt", weights_only=True) for rank in range(WORLD_SIZE)]


def _assert_equal_to_reference(results: list[dict[str, torch.Tensor]], expected: dict[str, torch.Tensor]) -> None:
    for rank, outputs in enumerate(results):
        for name, reference in expected.items():
            assert outputs[name].shape == reference.shape
            torch.testing.assert_close(outputs[name], reference, rtol=0, atol=1e-5, msg=f"rank {rank} {name}")


@pytest.mark.parametrize("kind", list(FUSION_KINDS))
def test_two_gloo_processes_equal_single_process(tmp_path: Path, kind: str) -> None:
    processes = _run_two_ranks(tmp_path, kind)
    dit = _tiny_dit(kind)
    expected = _outputs(dit, kind)
    assert 1 < expected["cached_computed"] < 6
    results = _join(processes, tmp_path)
    assert all(outputs.keys() == expected.keys() for outputs in results)
    _assert_equal_to_reference(results, expected)
    # The fusion must matter, or its halo exchange would be untested.
    for fusion in (*dit.rgb_zero_inits, *dit.control_zero_inits):
        for parameter in fusion.parameters():
            parameter.zero_()
    batch, frames, cached_camera = _cases(kind)[0]
    without_fusion, _ = _forward(dit, _inputs(batch, frames, seed=0), cached_camera)
    assert (without_fusion - expected["0_rgb"]).abs().max() > 1e-2


@pytest.mark.parametrize("kind", list(FUSION_KINDS))
def test_fusion_halo_is_the_measured_frame_reach_of_the_module(kind: str) -> None:
    """Perturbing one frame's tokens changes the fusion output on exactly the frames within the halo."""
    dit = _tiny_dit(kind)
    fusion = dit.control_zero_inits[0]
    assert isinstance(fusion, {"sigma": SigmaFusion, "stack": StackFusion, "linear": LinearFusion}[kind])
    grid, centre = (11, 3, 4), 5
    generator = torch.Generator().manual_seed(3)
    rgb, depth = (torch.randn(1, 11 * 3 * 4, dit.dim, generator=generator) for _ in range(2))
    perturbed = tokens_to_volume(depth, grid).clone()
    perturbed[:, :, centre] += 1.0
    perturbed = volume_to_tokens(perturbed)
    change = tokens_to_volume(fusion(rgb, perturbed, grid) - fusion(rgb, depth, grid), grid)
    changed = [frame for frame in range(grid[0]) if change[:, :, frame].abs().max() > 1e-6]
    assert changed == list(range(centre - HALOS[kind], centre + HALOS[kind] + 1))
    assert fusion_halo(fusion) == HALOS[kind]
    # Under DiffSynth's VRAM management (--offload) the modules or their convolutions are wrapped.
    pool = ModelPool()
    module_map = {pool.import_model_class(source): pool.import_model_class(target)
                  for source, target in VRAM_MODULE_MAP.items()}
    vram_config = {"offload_dtype": torch.float32, "offload_device": "cpu", "computation_dtype": torch.float32,
                   "computation_device": "cpu"}
    wrapped = enable_vram_management(dit, module_map, vram_config=vram_config)
    assert [fusion_halo(module) for module in wrapped.control_zero_inits] == [HALOS[kind]] * len(dit.control_zero_inits)


def test_a_fusion_convolution_that_changes_the_frame_count_is_refused() -> None:
    fusion = StackFusion(16)
    fusion.blocks[2].dw = torch.nn.Conv3d(4, 4, kernel_size=3, padding=(0, 1, 1), groups=4)
    with pytest.raises(ValueError, match="does not keep the frame count"):
        fusion_halo(fusion)


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


class FakeAttnType(enum.Enum):
    """yunchang's ``AttnType`` members the DiT may ask for."""

    FA = "fa"
    TORCH = "torch"


class FakeLongContextAttention:
    """Stands in for xfuser's ``xFuserLongContextAttention``: records each call and returns what sequence-parallel
    attention computes, this rank's queries attending to the keys and values of every rank (all-gathered)."""

    calls: list[list[int]] = []
    scale = 1.0

    def __init__(self, attn_type: FakeAttnType, ring_impl_type: str) -> None:
        self.attn_type, self.ring_impl_type = attn_type, ring_impl_type

    def __call__(self, attn: object, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        assert attn is None and self.attn_type is FakeAttnType.FA and self.ring_impl_type == "basic"
        assert query.shape == key.shape == value.shape and query.ndim == 4  # [B, L_rank, heads, head_dim]
        FakeLongContextAttention.calls.append(list(query.shape))
        gathered = []
        for local in (key, value):
            pieces = [torch.empty_like(local) for _ in range(dist.get_world_size())]
            dist.all_gather(pieces, local.contiguous())
            gathered.append(torch.cat(pieces, dim=1).transpose(1, 2))
        out = F.scaled_dot_product_attention(query.transpose(1, 2), *gathered).transpose(1, 2)
        return out * FakeLongContextAttention.scale


def _install_fake_xfuser(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict]]:
    """Fake ``xfuser`` and ``yunchang`` packages in ``sys.modules``; returns the log of their setup calls."""
    setup_calls: list[tuple[str, dict]] = []
    attributes = {
        "xfuser": {}, "xfuser.core": {},
        "xfuser.core.long_ctx_attention": {"xFuserLongContextAttention": FakeLongContextAttention},
        "xfuser.core.distributed": {
            "init_distributed_environment": lambda **kwargs: setup_calls.append(("environment", kwargs)),
            "initialize_model_parallel": lambda **kwargs: setup_calls.append(("model_parallel", kwargs)),
        },
        "yunchang": {}, "yunchang.kernels": {"AttnType": FakeAttnType},
    }
    for name, members in attributes.items():
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        module.__dict__.update(members)
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(FakeLongContextAttention, "calls", [])
    monkeypatch.setattr(FakeLongContextAttention, "scale", 1.0)
    return setup_calls


def test_xfuser_attention_gets_each_ranks_heads_and_its_output_is_used(tmp_path: Path, monkeypatch) -> None:
    """With xfuser, every RGB and depth self-attention of an evenly split forward goes through
    ``xFuserLongContextAttention`` as in DiffSynth's ``usp_attn_forward``; an uneven split falls back to Ulysses."""
    _install_fake_xfuser(monkeypatch)
    assert xfuser_available()
    processes = _run_two_ranks(tmp_path, "sigma", use_xfuser=True)
    expected = _outputs(_tiny_dit("sigma"), "sigma")
    results = _join(processes, tmp_path)
    _assert_equal_to_reference(results, expected)
    config = tiny_dit_config()
    attentions = config["num_layers"] + len(config["control_block_index"])
    even_frames = _cases("sigma")[1][1]
    shard_shape = [1, even_frames // WORLD_SIZE * TOKENS_PER_FRAME, config["num_heads"],
                   config["dim"] // config["num_heads"]]
    for outputs in results:
        # The even forward, the shared-input forward and every computed sampling step (6 frames: 3 + 3) call it,
        # the 7-frame forward not. With shared inputs the first self-attention of each branch runs on batch 1.
        calls = outputs["xfuser_calls"].tolist()
        assert len(calls) == attentions * (2 + int(expected["cached_computed"]))
        assert all(call[1:] == shard_shape[1:] for call in calls)
        assert [call[0] for call in calls].count(2) == attentions - 2
        assert (outputs["zeroed_attention_rgb"] - expected["1_rgb"]).abs().max() > 1e-2
        assert not outputs["auto_uses_xfuser"]


def test_init_distributed_sets_up_xfuser_as_diffsynth_initialize_usp(monkeypatch) -> None:
    setup_calls = _install_fake_xfuser(monkeypatch)
    devices = []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 4)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")
    monkeypatch.setattr(torch.cuda, "set_device", devices.append)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert init_distributed() == (1, 4)
    assert devices == [1]
    assert setup_calls == [
        ("environment", {"rank": 1, "world_size": 4}),
        ("model_parallel", {"sequence_parallel_degree": 4, "ring_degree": 1, "ulysses_degree": 4}),
    ]


def _fake_process_group(monkeypatch: pytest.MonkeyPatch, world_size: int = 2) -> list[dict]:
    """A stand-in ``torch.distributed`` of ``world_size`` ranks, not yet joined; returns the logged group set-ups."""
    created: list[dict] = []
    monkeypatch.setattr(dist, "is_initialized", lambda: bool(created))
    monkeypatch.setattr(dist, "init_process_group", lambda **kwargs: created.append(kwargs))
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 0)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: world_size)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: created[-1]["backend"])
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", str(world_size))
    return created


@pytest.mark.parametrize(("device", "backend"), [("cpu", "gloo"), ("cuda", "nccl"), ("cuda:1", "nccl")])
def test_init_distributed_takes_the_backend_of_the_dit_device_even_where_cuda_is_available(
    monkeypatch, device: str, backend: str
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    created = _fake_process_group(monkeypatch)
    assert init_distributed(device) == (0, 2)
    assert [kwargs["backend"] for kwargs in created] == [backend]


@pytest.mark.parametrize(("backend", "expected"), [("nccl", True), ("gloo", False)])
def test_xfuser_is_chosen_for_nccl_groups_also_when_the_weights_sit_on_the_cpu(
    monkeypatch, backend: str, expected: bool
) -> None:
    """An offloaded DiT keeps its weights on the CPU between uses; what decides is the group's backend."""
    from diffsynth_dualcam.parallel import enable_sequence_parallel

    setup_calls = _install_fake_xfuser(monkeypatch)
    _fake_process_group(monkeypatch)
    init_distributed("cuda" if backend == "nccl" else "cpu")
    assert bool(setup_calls) is expected
    dit = enable_sequence_parallel(_tiny_dit())
    assert next(dit.parameters()).device.type == "cpu"
    assert dit.sequence_parallel.use_xfuser is expected


def test_generate_cli_joins_the_process_group_of_its_device(tmp_path: Path, monkeypatch) -> None:
    """``--device cpu`` on a machine with GPUs still gives a gloo group: CPU tensors cannot go over NCCL."""
    from diffsynth_dualcam import parallel
    from diffsynth_dualcam.cli import generate as generate_cli

    joined = []

    def stop_after_joining(device: str) -> tuple[int, int]:
        joined.append(device)
        raise KeyboardInterrupt

    monkeypatch.setattr(parallel, "init_distributed", stop_after_joining)
    parser = argparse.ArgumentParser()
    generate_cli.add_arguments(parser)
    args = parser.parse_args(["--sequence-parallel", "--tiny", "--device", "cpu", "--t2v", "--preset", "static",
                              "--out", str(tmp_path / "clip")])
    with pytest.raises(KeyboardInterrupt):
        generate_cli.run(args)
    assert joined == ["cpu"]


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
