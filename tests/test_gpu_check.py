"""The one-run GPU check: its wheelhouse for GPU machines without internet and how it runs and logs its steps (the
steps themselves need a GPU; here they are replaced by small commands)."""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import gpu_check  # noqa: E402


def test_wheelhouse_download_pins_the_installed_versions_for_the_gpu_machines_python(tmp_path: Path) -> None:
    command = gpu_check.download_command(tmp_path / "wheels", "3.12", python="python")
    assert command[:4] == ["python", "-m", "pip", "download"]
    assert command[command.index("--python-version") + 1] == "3.12"
    assert command[command.index("--dest") + 1] == str(tmp_path / "wheels")
    assert {"--no-deps", "--only-binary=:all:"} <= set(command)
    platforms = [command[index + 1] for index, word in enumerate(command) if word == "--platform"]
    assert platforms == list(gpu_check.PLATFORMS)
    pins = [word for word in command if "==" in word]
    assert pins == [f"{name}=={importlib.metadata.version(name)}" for name in gpu_check.WHEELHOUSE_PACKAGES]
    assert "diffsynth==2.1." in " ".join(pins)
    for bad in ("3", "3.12.1", "py3.12", ""):
        with pytest.raises(ValueError, match="--python-version: expected MAJOR.MINOR"):
            gpu_check.download_command(tmp_path, bad)


def test_check_steps_run_the_cuda_device_tests_then_the_gpu_benchmarks() -> None:
    steps = dict(gpu_check.check_steps("py", repeats=None))
    assert list(steps) == ["device-tests", "benchmarks"]
    tests = steps["device-tests"]
    assert tests[:4] == ["py", "-m", "pytest", "tests/test_devices.py"] and tests[tests.index("-k") + 1] == "cuda"
    assert steps["benchmarks"] == ["py", "benchmarks/run_all.py", "--device", "cuda"]
    assert dict(gpu_check.check_steps("py", repeats=2))["benchmarks"][-2:] == ["--repeats", "2"]


def write_wheel(folder: Path, module: str, source: str) -> Path:
    """A minimal pure-Python wheel holding one module."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{module}-1.0-py3-none-any.whl"
    info = f"{module}-1.0.dist-info"
    files = {
        f"{module}.py": source,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def test_run_installs_the_wheelhouse_logs_every_step_and_copies_the_readmes(tmp_path: Path, monkeypatch,
                                                                            capsys) -> None:
    wheelhouse = tmp_path / "wheels"
    write_wheel(wheelhouse, "dualcam_probe", "VALUE = 41\n")
    # The environment step sees the wheelhouse and the checkout; the steps run from the repository root.
    monkeypatch.setattr(gpu_check, "ENVIRONMENT_SCRIPT",
                        "import dualcam_probe, diffsynth_dualcam; print('probe', dualcam_probe.VALUE + 1)")
    steps = [("first", [sys.executable, "-c", "import sys; print('first ran'); sys.exit(4)"]),
             ("second", [sys.executable, "-c", "import pathlib; print('second in', pathlib.Path.cwd().name)"])]
    monkeypatch.setattr(gpu_check, "check_steps", lambda python, repeats: steps)
    out = tmp_path / "out"
    assert gpu_check.run(out, sys.executable, wheelhouse, repeats=None) == 1  # a failing step fails the run
    assert (out / "environment.log").read_text() == "probe 42\n"
    assert (out / "first.log").read_text() == "first ran\n"
    assert (out / "second.log").read_text() == f"second in {gpu_check.ROOT.name}\n"  # ran after the failure
    printed = capsys.readouterr().out
    assert "probe 42" in printed and "first: failed (status 4)" in printed and "second: passed" in printed
    for name, readme in gpu_check.READMES.items():
        assert (out / name).read_bytes() == readme.read_bytes()
    # The wheels went to a temporary folder, not into this interpreter's packages.
    assert subprocess.run([sys.executable, "-c", "import dualcam_probe"], capture_output=True).returncode != 0


def test_run_stops_before_the_steps_without_a_usable_gpu_environment(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(gpu_check, "check_steps", lambda python, repeats: pytest.fail("a step ran"))
    monkeypatch.setattr(gpu_check, "ENVIRONMENT_SCRIPT", "import sys; sys.exit(3)")
    assert gpu_check.run(tmp_path / "a", sys.executable, None, repeats=None) == 2
    assert "torch sees no CUDA device" in capsys.readouterr().err
    monkeypatch.setattr(gpu_check, "ENVIRONMENT_SCRIPT", "import package_missing_on_the_gpu_machine")
    assert gpu_check.run(tmp_path / "b", sys.executable, None, repeats=None) == 2
    assert "environment check failed (status 1" in capsys.readouterr().err
    assert "ModuleNotFoundError" in (tmp_path / "b" / "environment.log").read_text()
    assert not (tmp_path / "b" / "README.md").exists()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "broken-1.0-py3-none-any.whl").write_bytes(b"not a zip archive")
    assert gpu_check.run(tmp_path / "c", sys.executable, broken, repeats=None) == 2
    assert f"installing the wheels of {broken} failed" in capsys.readouterr().err


def test_command_line_errors_name_the_option(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    for argv, message in (
        (["run", "--wheelhouse", str(tmp_path / "empty")], "--wheelhouse"),
        (["run", "--wheelhouse", str(tmp_path / "missing")], "no .whl files there"),
        (["run", "--repeats", "0"], "--repeats must be >= 1"),
        (["wheelhouse", "--python-version", "3"], "--python-version: expected MAJOR.MINOR"),
        ([], "the following arguments are required"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            gpu_check.main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
