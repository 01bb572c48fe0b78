"""One dual-branch denoising step with the DiT compiled (``--compile``) against the same step run eagerly.

The compiled side is a copy of the eager DiT (same weights) after ``compile_dit``: DiffSynth's regional
compilation of every RGB and depth ``DiTBlock`` with inductor and dynamic shapes. The first call compiles; its
time is reported apart, and the results are checked to agree before timing.

    .venv/bin/python benchmarks/bench_compile.py [--device cuda] [--size mid|full] [--repeats 5]
"""
from __future__ import annotations

import argparse
import copy
import time
import warnings

import torch
from bench_step import make_inputs
from common import (
    Row,
    add_common_arguments,
    check_agreement,
    interleaved_times,
    latent_shape,
    model_config,
    paired_ratio,
    paired_ratios,
    resolve,
    seconds,
    synchronize,
    time_dit_work_as_generation_runs,
)

from diffsynth_dualcam.models import DualCamCtrlDiT
from diffsynth_dualcam.parallel.backend import compile_dit
from diffsynth_dualcam.pipeline import DualCamCtrlPipeline

#: Largest relative L2 difference of the compiled step's outputs to the eager ones (fused kernels round
#: differently). The random full-size DiT's bf16 outputs lie ~1.5e-2 from float32 ones whatever the kernels, so two
#: bf16 computations of it may differ by up to about twice that.
AGREEMENT = {torch.float32: 1e-4, torch.bfloat16: 5e-2, torch.float16: 1e-2}


def run(device: str = "cpu", dtype: str | None = None, size: str | None = None, repeats: int = 5) -> Row:
    """Compile, check, then time both sides; the row's ratio is the speed-up, eager / compiled."""
    device, torch_dtype, size = resolve(device, dtype, size)
    time_dit_work_as_generation_runs(device)
    config = model_config(size)
    with torch.device(device):
        eager = DualCamCtrlDiT(**config).to(torch_dtype).eval().requires_grad_(False)
    pipe = DualCamCtrlPipeline(device=device, torch_dtype=torch_dtype)
    pipe.dit = copy.deepcopy(eager)
    compile_dit(pipe)
    inputs = make_inputs(config, latent_shape(size), device, torch_dtype)
    torch._dynamo.reset()
    with torch.inference_mode(), warnings.catch_warnings():
        # Inductor leaves Wan's complex-number RoPE to eager kernels and says so once per graph.
        warnings.filterwarnings("ignore", message="Torchinductor does not support code generation for complex")
        synchronize(device)
        start = time.perf_counter()
        compiled_outputs = pipe.dit(**inputs)
        synchronize(device)
        compile_seconds = time.perf_counter() - start
        check_agreement(eager(**inputs), compiled_outputs, AGREEMENT[torch_dtype], "the compiled DiT")
        times = interleaved_times({"eager": lambda: eager(**inputs), "compiled": lambda: pipe.dit(**inputs)},
                                  repeats, device)
    ratio = paired_ratio(times["eager"], times["compiled"])
    rounds = paired_ratios(times["eager"], times["compiled"])
    shape = "x".join(str(n) for n in latent_shape(size)[1:])
    return Row(
        benchmark=f"one denoising step, compiled DiT vs eager ({size} DiT, {shape} latents)",
        measured=(f"{seconds(times['compiled'].median)} compiled (first call, compiling: {seconds(compile_seconds)} "
                  f"wall; speed-up per round {min(rounds):.2f}-{max(rounds):.2f})"),
        baseline=f"{seconds(times['eager'].median)} eager", ratio=ratio, ratio_label="speed-up", target="report",
        met=None, device=f"{device.type} {torch_dtype}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    args = parser.parse_args()
    row = run(args.device, args.dtype, args.size, args.repeats)
    print(row.report())


if __name__ == "__main__":
    main()
