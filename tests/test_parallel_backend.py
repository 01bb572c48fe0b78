"""Attention kernel reporting (DiffSynth's own choice in ``wan_video_dit.flash_attention``) and the CPU allocator."""
from __future__ import annotations

import platform
import subprocess
import sys

import pytest
from diffsynth.models import wan_video_dit

from diffsynth_dualcam.parallel.backend import attention_backend

FLAGS = ("FLASH_ATTN_3_AVAILABLE", "FLASH_ATTN_2_AVAILABLE", "SAGE_ATTN_AVAILABLE")


@pytest.mark.parametrize(
    ("available", "expected"),
    [
        ({"FLASH_ATTN_3_AVAILABLE", "FLASH_ATTN_2_AVAILABLE"}, "flash_attention_3"),
        ({"FLASH_ATTN_2_AVAILABLE", "SAGE_ATTN_AVAILABLE"}, "flash_attention_2"),
        ({"SAGE_ATTN_AVAILABLE"}, "sage_attention"),
        (set(), "torch scaled_dot_product_attention"),
    ],
)
def test_attention_backend_follows_diffsynth_priority(monkeypatch, available: set[str], expected: str) -> None:
    for flag in FLAGS:
        monkeypatch.setattr(wan_video_dit, flag, flag in available)
    assert attention_backend().startswith(expected)


#: Run in a fresh process (the setting is process-wide): minor page faults of a 16 MiB tensor allocated after a
#: 64 MiB one was freed.
FAULTS_SCRIPT = """
import resource, sys, torch
from diffsynth_dualcam.parallel.backend import keep_freed_cpu_memory
torch.set_num_threads(1)
applied = keep_freed_cpu_memory() if sys.argv[1] == "keep" else None
def faults(mib):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones(mib * 2**18)
    del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults(64)
print(applied, faults(16))
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_kept_cpu_memory_is_reused_instead_of_page_faulted_anew() -> None:
    results = {}
    for mode in ("default", "keep"):
        output = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT, mode], capture_output=True, text=True,
                                timeout=120, check=True).stdout.split()
        results[mode] = (output[0], int(output[1]))
    pages = 16 * 2**20 // 4096
    # glibc maps the 16 MiB block fresh (every page faults); with the setting it reuses the freed 64 MiB.
    assert results["default"] == ("None", results["default"][1]) and results["default"][1] >= 0.9 * pages
    assert results["keep"][0] == "True" and results["keep"][1] < 0.05 * pages
