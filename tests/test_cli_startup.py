"""The command line answers `--help`, `dualcam trajectory` and argument errors without loading the heavy libraries.

Each case runs in a fresh interpreter and reports which modules were imported (``sys.modules``), so the check does
not depend on what this test process has already loaded, nor on timing.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "diffsynth", "transformers", "gradio", "pycolmap")
PROBE = """
import json, sys
from diffsynth_dualcam.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as done:
    code = done.code
heavy = [name for name in {heavy!r} if name in sys.modules]
print("PROBE" + json.dumps({{"code": code, "heavy": heavy}}))
"""


def run_probe(*argv: str, cwd: Path = REPO_ROOT) -> tuple[int, list[str], str]:
    """(exit code, heavy modules imported, stderr) of ``dualcam ARGV`` in a fresh interpreter."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                                               os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv], cwd=cwd, env=environment,
                          capture_output=True, text=True, check=False)
    line = next(line for line in done.stdout.splitlines() if line.startswith("PROBE"))
    result = json.loads(line.removeprefix("PROBE"))
    return result["code"], result["heavy"], done.stderr


@pytest.mark.parametrize("argv", [
    ["--help"], ["generate", "--help"], ["trajectory", "--help"], ["trajectory", "preset", "--help"],
    ["convert-checkpoint", "--help"], ["export-3d", "--help"], ["app", "--help"], ["eval", "--help"],
    ["train", "--help"], ["check-dataset", "--help"], ["prepare-data", "--help"],
])
def test_help_loads_no_heavy_library(argv):
    code, heavy, _ = run_probe(*argv)
    assert code == 0
    assert heavy == []


@pytest.mark.parametrize(("argv", "message"), [
    (["generate", "--size", "15x15"], "--size: height must be a multiple of 16"),
    (["generate", "--preset", "orbit_left"], "--image is required"),
    (["generate", "--image", "x.png", "--frames", "8"], "--frames: num_frames must be 4k+1"),
    (["generate", "--t2v", "--preset", "sideways"], "invalid choice: 'sideways'"),
    (["generate", "--t2v"], "a camera is required"),
    (["trajectory", "preset", "sideways"], "sideways"),
    (["no-such-command"], "invalid choice: 'no-such-command'"),
])
def test_argument_errors_load_no_heavy_library(argv, message):
    code, heavy, stderr = run_probe(*argv)
    assert code == 2
    assert message in stderr
    assert heavy == []


def test_a_preset_is_written_and_plotted_without_torch(tmp_path):
    code, heavy, stderr = run_probe("trajectory", "preset", "orbit_left", "-o", str(tmp_path / "orbit.json"))
    assert code == 0, stderr
    assert heavy == []
    frames = json.loads((tmp_path / "orbit.json").read_text())["frames"]
    assert len(frames) == 61 and frames[0]["c2w"][0][0] == 1.0
