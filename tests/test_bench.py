"""Benchmarks: a smoke run of every script at the tiny size (not timed) and the README table rewrite."""
from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import run_all  # noqa: E402
from common import Row, peak_memory  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_run_all_prints_the_table_and_rewrites_only_its_readme_section(tmp_path: Path, capsys) -> None:
    readme = tmp_path / "README.md"
    shutil.copy(BENCHMARKS / "README.md", readme)
    before = readme.read_text()
    assert run_all.main(["--size", "tiny", "--repeats", "1", "--readme", str(readme)]) == 0
    printed = capsys.readouterr().out
    table_lines = [line for line in printed.splitlines() if line.startswith("| ")]
    # Header plus one row per measurement: step, CFG, Plücker, cache, VAE time, VAE memory, generation, memory.
    assert len(table_lines) == 1 + 8
    for fragment in ("dual-branch step / single-branch step", "CFG: two DiT calls / one merged call", "Plücker",
                     "plain / step cache", "VAE decode time", "VAE decode peak memory", "end-to-end generation",
                     "peak memory of one generation"):
        assert sum(fragment in line for line in table_lines) >= 1, fragment
    after = readme.read_text()
    cpu_section = after.split("<!-- results:cpu:begin -->")[1].split("<!-- results:cpu:end -->")[0]
    assert all(line in cpu_section for line in table_lines)
    # Everything outside the CPU section is untouched.
    assert after.split("<!-- results:cpu:begin -->")[0] == before.split("<!-- results:cpu:begin -->")[0]
    assert after.split("<!-- results:cpu:end -->")[1] == before.split("<!-- results:cpu:end -->")[1]
    assert f"table written to {readme}" in printed


def test_replace_section_needs_the_markers() -> None:
    text = "intro\n<!-- results:cpu:begin -->\nold\n<!-- results:cpu:end -->\nrest"
    assert run_all.replace_section(text, "cpu", "new") == (
        "intro\n<!-- results:cpu:begin -->\nnew\n<!-- results:cpu:end -->\nrest"
    )
    with pytest.raises(ValueError, match="results:cuda:begin"):
        run_all.replace_section(text, "cuda", "new")


def test_format_table_marks_missing_values_and_escapes_pipes() -> None:
    rows = [
        Row("a / b", "1 s", "2 s", 0.5, "<= 1", True, "cpu"),
        Row("memory", "3 MiB | peak", "-", math.nan, "report", None, "cpu"),
        Row("c / d", "3 s", "1 s", 3.0, "<= 1", False, "cpu"),
    ]
    lines = run_all.format_table(rows).splitlines()
    assert lines[2] == "| a / b | 1 s | 2 s | 0.50 | <= 1 | yes |"
    assert lines[3] == "| memory | 3 MiB / peak | - | - | report | - |"
    assert lines[4] == "| c / d | 3 s | 1 s | 3.00 | <= 1 | **no** |"


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
