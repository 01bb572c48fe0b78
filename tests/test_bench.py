"""Benchmarks: a smoke run of every script at the tiny size (not timed) and the README table rewrite."""
from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import bench_cfg  # noqa: E402
import bench_memory  # noqa: E402
import run_all  # noqa: E402
from common import (  # noqa: E402
    Row,
    Timing,
    check_agreement,
    generation_arguments,
    interleaved_times,
    paired_ratio,
    paired_ratios,
    peak_memory,
)
from diffsynth.core.vram.layers import (  # noqa: E402
    AutoWrappedLinear,
    AutoWrappedModule,
    AutoWrappedNonRecurseModule,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_run_all_prints_the_table_and_rewrites_only_its_readme_section(tmp_path: Path, capsys) -> None:
    readme = tmp_path / "README.md"
    shutil.copy(BENCHMARKS / "README.md", readme)
    before = readme.read_text()
    assert run_all.main(["--size", "tiny", "--repeats", "1", "--readme", str(readme)]) == 0
    printed = capsys.readouterr().out
    table_lines = [line for line in printed.splitlines() if line.startswith("| ")]
    # Header plus one row per measurement: step, CFG, compiled step, Plücker, cache, VAE time and memory,
    # generation, chaining overhead, the generation's peak memory with and without offloading, and the two
    # start-up rows.
    fragments = ("one denoising step, dual-branch vs single-branch", "guidance, one merged call vs two calls",
                 "one denoising step, compiled DiT vs eager", "Plücker map", "denoising loop, step cache",
                 "VAE decode time", "VAE decode peak memory",
                 "end-to-end generation", "chaining overhead",
                 "peak memory of one generation, all models on the device",
                 "peak memory of one generation, --offload", "start-up: `dualcam --help`",
                 "start-up: refused `dualcam generate")
    assert len(table_lines) == 1 + len(fragments)
    for fragment, line in zip(fragments, table_lines[1:]):
        assert fragment in line
    after = readme.read_text()
    cpu_section = after.split("<!-- results:cpu:begin -->")[1].split("<!-- results:cpu:end -->")[0]
    assert all(line in cpu_section for line in table_lines)
    assert "load average" in cpu_section.splitlines()[1]
    # Everything outside the CPU section is untouched.
    assert after.split("<!-- results:cpu:begin -->")[0] == before.split("<!-- results:cpu:begin -->")[0]
    assert after.split("<!-- results:cpu:end -->")[1] == before.split("<!-- results:cpu:end -->")[1]
    assert f"table written to {readme}" in printed


def fake_runners(calls: list[str]):
    """Benchmark runners that record their order and give one row each; ``cfg`` raises."""
    def failing_cfg() -> list[Row]:
        calls.append("cfg")
        raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")

    def runners(device: str, size: str, repeats: int):
        return {**passing_runners(calls)(device, size, repeats), "cfg": failing_cfg}
    return runners


def test_a_failing_benchmark_gives_a_failure_row_and_leaves_the_readme(tmp_path: Path, capsys, monkeypatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(run_all, "benchmark_runners", fake_runners(calls))
    readme = tmp_path / "README.md"
    shutil.copy(BENCHMARKS / "README.md", readme)
    before = readme.read_text()
    assert run_all.main(["--size", "tiny", "--readme", str(readme)]) == 1
    captured = capsys.readouterr()
    assert calls == list(run_all.RUN_ORDER)  # the benchmarks after the failing one still ran
    rows = [line for line in captured.out.splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[0][2:] for row in rows] == [
        "cfg (failed)" if name == "cfg" else f"{name} row" for name in run_all.TABLE_ORDER]
    assert "RuntimeError: CUDA out of memory. Tried to allocate 2 GiB" in captured.out
    assert "[step] step row: 1 s" in captured.out  # each benchmark is reported as it finishes
    assert "failed: cfg" in captured.err
    assert readme.read_text() == before


def passing_runners(calls: list[str]):
    """Benchmark runners that record their order and give one row each."""
    def runner(name: str):
        def run() -> list[Row]:
            calls.append(name)
            return [Row(benchmark=f"{name} row", measured="1 s", baseline="2 s", ratio=0.5, target="report",
                        met=None, device="cpu")]
        return run
    return lambda device, size, repeats: {name: runner(name) for name in run_all.RUN_ORDER}


def test_every_readme_gets_the_table_and_a_readme_without_markers_fails_first(tmp_path: Path, capsys,
                                                                               monkeypatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(run_all, "benchmark_runners", passing_runners(calls))
    copies = [tmp_path / f"{index}.md" for index in range(len(run_all.READMES))]
    for source, copy in zip(run_all.READMES, copies):
        shutil.copy(source, copy)
    befores = [copy.read_text() for copy in copies]
    assert run_all.main(["--size", "tiny", *[f"--readme={copy}" for copy in copies]]) == 0
    for copy, before in zip(copies, befores):
        after = copy.read_text()
        section = after.split("<!-- results:cpu:begin -->")[1].split("<!-- results:cpu:end -->")[0]
        assert "| step row | 1 s | 2 s | 0.50 | report | - |" in section and "load average" in section
        assert after.split("<!-- results:cpu:begin -->")[0] == before.split("<!-- results:cpu:begin -->")[0]
        assert after.split("<!-- results:cpu:end -->")[1] == before.split("<!-- results:cpu:end -->")[1]
    # The project's READMEs hold a section for each device.
    for readme in run_all.READMES:
        for device in ("cpu", "cuda"):
            run_all.replace_section(readme.read_text(), device, "")
    # A README that cannot take the table stops the run before any benchmark, and no README is written.
    calls.clear()
    unmarked = tmp_path / "unmarked.md"
    unmarked.write_text("# no table here\n")
    written = [copy.read_text() for copy in copies]
    with pytest.raises(SystemExit):
        run_all.main(["--size", "tiny", "--readme", str(copies[0]), "--readme", str(unmarked)])
    assert f"--readme {unmarked}: <!-- results:cpu:begin -->" in capsys.readouterr().err
    assert calls == [] and [copy.read_text() for copy in copies] == written


def test_guidance_on_a_gpu_at_full_size_is_also_timed_at_the_mid_size(monkeypatch) -> None:
    sizes: list[str] = []
    monkeypatch.setattr(run_all.bench_cfg, "run", lambda device, size, repeats: sizes.append(size) or size)
    assert run_all.benchmark_runners("cuda", "full", 3)["cfg"]() == ["full", "mid"]
    assert run_all.benchmark_runners("cuda:1", "mid", 3)["cfg"]() == ["mid"]
    assert run_all.benchmark_runners("cpu", "mid", 3)["cfg"]() == ["mid"]
    assert sizes == ["full", "mid", "mid", "mid"]


def test_only_runs_the_named_benchmarks_and_prints_only(tmp_path: Path, capsys, monkeypatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(run_all, "benchmark_runners", fake_runners(calls))
    readme = tmp_path / "README.md"
    shutil.copy(BENCHMARKS / "README.md", readme)
    before = readme.read_text()
    assert run_all.main(["--size", "tiny", "--only", "step,plucker", "--readme", str(readme)]) == 0
    assert calls == ["plucker", "step"]  # in run order, whatever order they were named in
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[0][2:] for row in rows] == ["step row", "plucker row"]
    assert readme.read_text() == before
    with pytest.raises(SystemExit):
        run_all.main(["--size", "tiny", "--only", "step,warp"])
    assert "--only takes names from startup, plucker, vae" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"unknown benchmark\(s\) \['warp'\]"):
        run_all.run_all("cpu", "tiny", only=["warp"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error given without a GPU")
def test_cuda_without_a_gpu_fails_before_any_benchmark_runs(monkeypatch) -> None:
    def must_not_run(*args, **kwargs):
        raise AssertionError("a benchmark ran")

    monkeypatch.setattr(run_all, "run_all", must_not_run)
    with pytest.raises(ValueError, match="--device cuda was given, but no CUDA device is available"):
        run_all.main(["--device", "cuda", "--no-readme"])
    with pytest.raises(ValueError, match="give --device cuda"):
        bench_memory.run("cpu", size="full")


def test_offloaded_pipeline_is_under_vram_management_and_generates_the_same_clip() -> None:
    """The memory benchmark's --offload setting wraps every model as DiffSynth's loader does, and changes where
    the weights live, not the result."""
    arguments = generation_arguments(5, 32, 48, steps=2)
    resident = bench_memory.build_pipeline("tiny", torch.device("cpu"), torch.float32, offload=False)
    offloaded = bench_memory.build_pipeline("tiny", torch.device("cpu"), torch.float32, offload=True)
    assert not resident.vram_management_enabled and offloaded.vram_management_enabled
    for name in ("dit", "text_encoder", "vae", "image_encoder"):
        assert getattr(offloaded, name).vram_management_enabled
    # Every other Linear sits inside a module wrapped whole (Wan's MLP, the Linear fusion).
    wrapped_whole = [module for module in offloaded.dit.modules()
                     if isinstance(module, AutoWrappedModule) and not isinstance(module, AutoWrappedNonRecurseModule)]
    inside_wrapped = {id(inner) for module in wrapped_whole for inner in module.modules()}
    plain_linears = [module for module in offloaded.dit.modules()
                     if isinstance(module, torch.nn.Linear) and not isinstance(module, AutoWrappedLinear)]
    assert plain_linears and all(id(module) in inside_wrapped for module in plain_linears)
    wrapped = [module for module in offloaded.dit.modules() if isinstance(module, AutoWrappedLinear)]
    assert wrapped and all(module.offload_device == "cpu" and module.computation_device == "cpu" for module in wrapped)
    expected, result = resident(**arguments), offloaded(**arguments)
    torch.testing.assert_close(result.latents, expected.latents, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(result.depth_latents, expected.depth_latents, rtol=1e-5, atol=1e-5)


def test_interleaved_times_rotate_the_order_and_ratios_pair_rounds() -> None:
    calls = []
    functions = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = interleaved_times(functions, repeats=3, device=torch.device("cpu"), warmup=1)
    assert calls == list("abc" "bca" "cab" "abc")
    assert all(len(timing.runs) == 3 for timing in times.values())
    # Per-round ratios 0.5, 1.0, 1.5 (median 1.0), whereas the ratio of the medians would be 2 / 2.5.
    assert paired_ratios(Timing((1.0, 3.0, 3.0)), Timing((2.0, 3.0, 2.0))) == [0.5, 1.0, 1.5]
    assert paired_ratio(Timing((1.0, 3.0, 3.0)), Timing((2.0, 3.0, 2.0))) == 1.0
    assert Timing((1.0, 2.0, 4.0)).median == 2.0
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        interleaved_times(functions, repeats=0, device=torch.device("cpu"))


def test_replace_section_needs_the_markers() -> None:
    text = "intro\n<!-- results:cpu:begin -->\nold\n<!-- results:cpu:end -->\nrest"
    assert run_all.replace_section(text, "cpu", "new") == (
        "intro\n<!-- results:cpu:begin -->\nnew\n<!-- results:cpu:end -->\nrest"
    )
    with pytest.raises(ValueError, match="results:cuda:begin"):
        run_all.replace_section(text, "cuda", "new")


def test_format_table_names_each_ratio_marks_missing_values_and_escapes_pipes() -> None:
    rows = [
        Row("a vs b", "1 s", "2 s", 0.5, "ratio <= 1", True, "cpu", ratio_label="a / b"),
        Row("memory", "3 MiB | peak", "-", math.nan, "report", None, "cpu"),
        Row("c vs d", "3 s", "1 s", 3.0, "speed-up >= 4", False, "cpu", ratio_label="speed-up"),
    ]
    lines = run_all.format_table(rows).splitlines()
    assert lines[0] == "| Benchmark | Measured | Baseline | Ratio (what it is) | Target | Met |"
    assert lines[2] == "| a vs b | 1 s | 2 s | 0.50 (a / b) | ratio <= 1 | yes |"
    assert lines[3] == "| memory | 3 MiB / peak | - | - | report | - |"
    assert lines[4] == "| c vs d | 3 s | 1 s | 3.00 (speed-up) | speed-up >= 4 | **no** |"


def test_peak_memory_sees_a_temporary_allocation_and_not_earlier_peaks() -> None:
    size = 128 * 2**20
    earlier_peak = torch.ones(2 * size // 4)
    del earlier_peak

    def allocate() -> None:
        block = torch.ones(size // 4, dtype=torch.float32)
        del block

    measured = peak_memory(allocate, torch.device("cpu"))
    assert 0.9 * size <= measured <= 1.5 * size
    assert peak_memory(lambda: None, torch.device("cpu")) < 0.1 * size


KEPT_MEMORY_SCRIPT = """
import sys, torch
sys.path.insert(0, sys.argv[1])
from common import peak_memory
from diffsynth_dualcam.parallel.backend import keep_freed_cpu_memory
size = 128 * 2**20
assert keep_freed_cpu_memory()
kept = torch.ones(3 * size // 4)  # 384 MiB the process keeps resident after freeing
del kept
def allocate():
    block = torch.ones(size // 4)
    del block
print(peak_memory(allocate, torch.device("cpu")) / size)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="resident-set measurement is Linux only")
def test_peak_memory_is_not_masked_by_memory_the_parent_kept() -> None:
    result = subprocess.run([sys.executable, "-c", KEPT_MEMORY_SCRIPT, str(BENCHMARKS)], capture_output=True,
                            text=True, timeout=120, check=True)
    assert 0.9 <= float(result.stdout.split()[-1]) <= 1.5


def test_full_size_memory_benchmark_builds_the_released_model_sizes_in_bf16() -> None:
    """Built on the meta device (no memory): the parameter counts of docs/performance.md's weight table."""
    expected_billions = {"dit": 3.25, "text_encoder": 5.68, "vae": 0.127, "image_encoder": 0.632}
    built = {}
    for name, model in bench_memory.random_models("full", torch.device("meta"), torch.bfloat16):
        parameters = list(model.parameters())
        assert {p.dtype for p in parameters} == {torch.bfloat16} and {p.device.type for p in parameters} == {"meta"}
        assert not any(p.requires_grad for p in parameters)
        built[name] = sum(p.numel() for p in parameters) / 1e9
    assert built == pytest.approx(expected_billions, rel=5e-3)


def test_agreement_check_bounds_the_relative_error_of_each_branch() -> None:
    generator = torch.Generator().manual_seed(0)
    reference = tuple(torch.randn(1, 16, 5, 6, 8, generator=generator) for _ in range(2))
    check_agreement(reference, tuple(v.clone() for v in reference), 1e-4, "a copy")
    # Rounding to bf16 (about 0.2% relative) is within the bf16 bound of merged guidance, not within float32's.
    rounded = tuple(v.bfloat16() for v in reference)
    check_agreement(reference, rounded, bench_cfg.AGREEMENT[torch.bfloat16], "bf16")
    with pytest.raises(ValueError, match="merged guidance differs on the rgb branch: relative error .* > 1e-04"):
        check_agreement(reference, rounded, bench_cfg.AGREEMENT[torch.float32], "merged guidance")
    # A 5% perturbation of the depth branch is a different function, even in bf16; so is a NaN.
    perturbed = (reference[0], reference[1] + 0.05 * torch.randn(reference[1].shape, generator=generator))
    with pytest.raises(ValueError, match="on the depth branch"):
        check_agreement(reference, perturbed, bench_cfg.AGREEMENT[torch.bfloat16], "x")
    with pytest.raises(ValueError, match="on the rgb branch: relative error nan"):
        check_agreement(reference, (reference[0] * math.nan, reference[1]), 1.0, "x")


def test_traced_peak_counts_the_live_tensors_of_a_forward() -> None:
    """Linear (1000 x 64 -> 256) then GELU then Linear (256 -> 64) in bf16: the peak is the input with the first
    Linear's output and GELU's while GELU runs, (1000 x 64 + 2 x 1000 x 256) x 2 bytes; the weights apart."""
    def build() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(64, 256, bias=False), torch.nn.GELU(),
                                   torch.nn.Linear(256, 64, bias=False))

    traced = bench_memory.traced_peak(build, lambda model: {"input": torch.randn(1, 1000, 64)})
    assert traced == {"parameters": 2 * 64 * 256 * 2, "peak": (1000 * 64 + 2 * 1000 * 256) * 2}


def test_traced_attention_allocates_like_flash_attention_not_a_score_matrix() -> None:
    from diffsynth.models import wan_video_dit

    tokens, dim, heads = 4096, 64, 2

    class Attention(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = torch.nn.Linear(dim, 3 * dim, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return wan_video_dit.flash_attention(*self.qkv(x).chunk(3, dim=-1), num_heads=heads)

    flags = {flag: getattr(wan_video_dit, flag) for flag in ("FLASH_ATTN_2_AVAILABLE", "SAGE_ATTN_AVAILABLE")}
    sdpa = torch.nn.functional.scaled_dot_product_attention
    traced = bench_memory.traced_peak(Attention, lambda model: {"x": torch.randn(1, tokens, dim)})
    score_matrix = heads * tokens * tokens * 2
    one_stream = tokens * dim * 2
    # The input, the fused q/k/v projection, the attention output and its copy back to [tokens, heads x size].
    assert traced["peak"] == (1 + 3 + 1 + 1) * one_stream and traced["peak"] < score_matrix / 10
    assert {flag: getattr(wan_video_dit, flag) for flag in flags} == flags
    assert torch.nn.functional.scaled_dot_product_attention is sdpa


def test_estimate_rows_report_each_setting_against_its_goal(monkeypatch) -> None:
    monkeypatch.setattr(bench_memory, "estimated_full_size_peaks",
                        lambda: {"default": 21.71e9, "offload": 11.62e9, "dit_activations": 2.33e9})
    default, offload = bench_memory.estimate_rows()
    assert "all models on the device (full models, 61 frames 480x720, bf16)" in default.benchmark
    assert default.measured == "21.7 GB estimated (DiT activations 2.33 GB; goal 24 GB, measured by --device cuda)"
    assert "--offload" in offload.benchmark and offload.measured.startswith("11.6 GB estimated")
    assert "goal 12 GB" in offload.measured and default.met is None and offload.met is None


def test_a_row_reports_its_ratio_against_its_target_and_leaves_out_what_it_lacks() -> None:
    timed = Row(benchmark="step", measured="2.0 s", baseline="1.0 s", ratio=2.0, ratio_label="dual / single",
                target="ratio <= 2.05", met=True, device="cpu torch.float32")
    assert timed.report().splitlines() == [
        "step", "  measured  2.0 s", "  baseline  1.0 s",
        "  dual / single 2.000, target ratio <= 2.05: met (cpu torch.float32)",
    ]
    missed = Row(benchmark="cfg", measured="1.2 s", baseline="1.0 s", ratio=0.833, target="speed-up >= 1.3",
                 met=False, device="cuda torch.bfloat16")
    assert missed.report().splitlines()[-1] == "  ratio 0.833, target speed-up >= 1.3: not met (cuda torch.bfloat16)"
    untargeted = Row(benchmark="memory", measured="120 MiB", baseline="-", ratio=math.nan, target="report",
                     met=None, device="cpu torch.float32")
    assert untargeted.report().splitlines() == ["memory", "  measured  120 MiB", "  target report (cpu torch.float32)"]


def test_the_guidance_benchmark_refuses_a_merged_call_that_computes_another_velocity(monkeypatch) -> None:
    """Each prompt's half of the merged call is checked against its own separate call before anything is timed."""
    class SwappedNegative(bench_cfg.DualCamUnit_CfgMerger):
        def process(self, pipe, inputs_shared, inputs_posi, inputs_nega):
            shared, posi, nega = super().process(pipe, inputs_shared, inputs_posi, inputs_nega)
            shared["context"] = torch.cat([shared["context"][:1], torch.randn_like(shared["context"][1:])])
            return shared, posi, nega

    timed = []
    monkeypatch.setattr(bench_cfg, "interleaved_times", lambda *args, **kwargs: timed.append(args))
    monkeypatch.setattr(bench_cfg, "DualCamUnit_CfgMerger", SwappedNegative)
    with pytest.raises(ValueError, match="merged guidance differs on the rgb branch"):
        bench_cfg.run("cpu", size="tiny", repeats=1)
    assert not timed
