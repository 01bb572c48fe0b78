"""Atomic file output: complete files under the final name, nothing on error, ordinary permissions."""
from __future__ import annotations

import os
import stat

import pytest

from diffsynth_dualcam.io import atomic_output, atomic_write


def mode_of(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_creates_folders_and_replaces_content(tmp_path):
    path = tmp_path / "a" / "b" / "data.bin"
    assert atomic_write(path, b"first") == path
    atomic_write(str(path), b"second")
    assert path.read_bytes() == b"second"
    assert mode_of(path) == 0o644
    assert [entry.name for entry in path.parent.iterdir()] == ["data.bin"]


def test_atomic_output_yields_a_hidden_sibling_with_the_same_suffix(tmp_path):
    path = tmp_path / "plot.png"
    with atomic_output(path) as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".plot.png.")
        assert temporary.suffix == ".png"
        assert not path.exists()
        temporary.write_bytes(b"png bytes")
    assert path.read_bytes() == b"png bytes"
    assert mode_of(path) == 0o644
    assert [entry.name for entry in tmp_path.iterdir()] == ["plot.png"]


def test_atomic_output_on_error_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "report.json"
    atomic_write(path, b"old")
    with pytest.raises(RuntimeError, match="encoder failed"), atomic_output(path) as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("encoder failed")
    assert path.read_bytes() == b"old"
    assert [entry.name for entry in tmp_path.iterdir()] == ["report.json"]


def test_atomic_output_error_before_writing_leaves_nothing(tmp_path):
    path = tmp_path / "notes"
    with pytest.raises(KeyboardInterrupt), atomic_output(path) as temporary:
        assert temporary.suffix == ".tmp"
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_a_killed_writer_leaves_debris_that_the_next_write_removes(tmp_path):
    """SIGKILL a process inside atomic_output (as during a training checkpoint): its hidden staging file stays, is
    named by its process, never ends like a result, and goes at the next write into that folder."""
    import signal
    import subprocess
    import sys

    target = tmp_path / "step-5.safetensors"
    script = (
        "import sys, time\n"
        "from diffsynth_dualcam.models.checkpoints import atomic_output\n"
        f"with atomic_output({str(target)!r}, keep_suffix=False) as temporary:\n"
        "    temporary.write_bytes(b'half a checkpoint')\n"
        "    print(temporary.name, flush=True)\n"
        "    sys.stdin.read()\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    staging = tmp_path / process.stdout.readline().strip()
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert staging.is_file() and staging.name.startswith(".step-5.safetensors.partial-")
    assert f"-{process.pid}-" in staging.name and not staging.name.endswith(".safetensors")
    assert list(tmp_path.glob("*.safetensors")) == []
    atomic_write(tmp_path / "step-10.safetensors", b"whole")  # the next checkpoint, of any name
    assert [entry.name for entry in tmp_path.iterdir()] == ["step-10.safetensors"]


def test_staging_of_live_processes_and_of_other_files_is_kept(tmp_path):
    from diffsynth_dualcam.io import host_tag, remove_stale_staging

    host = host_tag()
    names = [f".data.bin.partial-{host}-{os.getppid()}-0badc0de",  # a live process
             f".data.bin.partial-{host}-{2**22 + 7}-0badc0de.bin",  # beyond Linux's largest process id: dead
             f".other.bin.partial-{host}-{2**22 + 7}-0badc0de",  # staging of another file
             ".data.bin.partial-0badc0de"]  # not a staging name of this scheme
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    assert remove_stale_staging(tmp_path, "data.bin") == [tmp_path / names[1]]
    assert sorted(entry.name for entry in tmp_path.iterdir()) == sorted(names[:1] + names[2:])
    assert remove_stale_staging(tmp_path) == [tmp_path / names[2]]  # any name
    assert sorted(entry.name for entry in tmp_path.iterdir()) == sorted([names[0], names[3]])
