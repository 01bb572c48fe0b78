"""Atomic file output: complete files under the final name, nothing on error, ordinary permissions."""
from __future__ import annotations

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
