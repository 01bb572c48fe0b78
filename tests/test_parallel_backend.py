"""Attention kernel reporting (DiffSynth's own choice in ``wan_video_dit.flash_attention``) and the CPU allocator."""
from __future__ import annotations

import platform
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from diffsynth.models import wan_video_dit

from diffsynth_dualcam.parallel import backend
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
from types import SimpleNamespace
from diffsynth_dualcam.parallel.backend import configure_runtime, keep_freed_cpu_memory
torch.set_num_threads(1)
applied = None
if sys.argv[1] == "keep":
    applied = keep_freed_cpu_memory()
elif sys.argv[1] == "configure":  # what `dualcam generate` and `dualcam app` do with their pipeline on the CPU
    pipe = SimpleNamespace(device=torch.device(sys.argv[2]), torch_dtype=torch.float32, dit=SimpleNamespace())
    applied = configure_runtime(pipe).endswith("cpu allocator: keeps freed memory")
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
    for mode in ("default", "keep", "configure"):
        output = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT, mode, "cpu"], capture_output=True, text=True,
                                timeout=120, check=True).stdout.splitlines()[-1].split()
        results[mode] = (output[0], int(output[1]))
    pages = 16 * 2**20 // 4096
    # glibc maps the 16 MiB block fresh (every page faults); with the setting it reuses the freed 64 MiB.
    assert results["default"] == ("None", results["default"][1]) and results["default"][1] >= 0.9 * pages
    assert results["keep"][0] == "True" and results["keep"][1] < 0.05 * pages
    # The generation commands' runtime set-up applies it to a CPU pipeline and says so in its summary line.
    assert results["configure"][0] == "True" and results["configure"][1] < 0.05 * pages


def test_runtime_set_up_leaves_the_allocator_alone_for_a_gpu_dit(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(backend, "keep_freed_cpu_memory", lambda: calls.append("kept") or True)
    monkeypatch.setattr(backend, "_cpu_memory_kept", False)
    gpu_pipe = SimpleNamespace(device="cuda:1", torch_dtype=torch.bfloat16, dit=SimpleNamespace())
    summary = backend.configure_runtime(gpu_pipe)
    assert calls == [] and summary.startswith("DiT on cuda:1 bfloat16; attention: ")
    assert "allocator" not in summary
    cpu_pipe = SimpleNamespace(device=torch.device("cpu"), torch_dtype=torch.float32, dit=SimpleNamespace())
    backend.configure_runtime(cpu_pipe)
    assert calls == ["kept"]
