"""Every GPU check in one run: the CUDA cases of the device tests, then the GPU benchmark table.

    .venv/bin/python benchmarks/gpu_check.py run                  # what `make gpu-check` runs
    python3 benchmarks/gpu_check.py run --wheelhouse .whl         # a GPU machine without internet (see below)
    .venv/bin/python benchmarks/gpu_check.py wheelhouse --python-version 3.12   # fills .whl/ (`make wheelhouse`)

``run`` first prints the environment (torch, GPU, attention kernel) and stops if there is no CUDA device, then runs
each step with its output on the terminal and in a log under ``--out``, and copies the two READMEs whose GPU tables
the benchmarks rewrote there too. A failing step does not stop the next; the exit status is 1 if any failed.

A GPU machine without internet whose Python already has PyTorch, transformers and the usual scientific packages
lacks only DiffSynth and the few packages it imports beyond those (``WHEELHOUSE_PACKAGES``). ``wheelhouse``
downloads their wheels, at the versions installed here, for that machine's Python and platform; ``run --wheelhouse
DIR`` installs them into a temporary folder for the checks, leaving that Python as it was. The project itself runs
from the checkout.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The READMEs whose GPU section ``run_all.py --device cuda`` rewrites, by the name of their copy under ``--out``.
READMES = {"README.md": ROOT / "README.md", "benchmarks-README.md": ROOT / "benchmarks" / "README.md"}
#: What the checks import beyond PyTorch, torchvision, transformers, accelerate, peft, safetensors, einops, imageio,
#: pandas, scipy, psutil, pillow, tqdm and pytest (with pytest-timeout), which PyTorch GPU images carry.
WHEELHOUSE_PACKAGES = ("diffsynth", "ftfy", "wcwidth", "modelscope", "modelscope-hub", "cryptography", "cffi",
                       "pycparser")
#: Linux x86-64 platform tags tried for packages with compiled parts (pip matches each tag exactly).
PLATFORMS = ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
#: Exits with status 3 and a message unless torch sees a CUDA device; prints what the checks run on.
ENVIRONMENT_SCRIPT = """
import importlib.metadata, sys, torch
if not torch.cuda.is_available():
    sys.exit(3)
from diffsynth_dualcam.parallel.backend import attention_backend
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}); {torch.cuda.get_device_name()}, "
      f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB; attention: {attention_backend()}; "
      f"diffsynth {importlib.metadata.version('diffsynth')}")
"""


def wheelhouse_requirements() -> list[str]:
    """``WHEELHOUSE_PACKAGES`` pinned to the versions installed in this environment (the ones the tests ran with)."""
    requirements = []
    for name in WHEELHOUSE_PACKAGES:
        try:
            requirements.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            raise ValueError(f"{name} is not installed here: run `make install` first, the wheelhouse takes the "
                             "installed versions") from None
    return requirements


def download_command(destination: Path, python_version: str, python: str = sys.executable) -> list[str]:
    """The ``pip download`` command that puts the wheelhouse for CPython ``python_version`` on Linux x86-64 into
    ``destination``."""
    if not python_version.replace(".", "").isdigit() or python_version.count(".") != 1:
        raise ValueError(f"--python-version: expected MAJOR.MINOR such as 3.12, got {python_version!r}")
    platforms = [argument for tag in PLATFORMS for argument in ("--platform", tag)]
    return [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--implementation", "cp",
            "--python-version", python_version, *platforms, "--dest", str(destination), *wheelhouse_requirements()]


def install_wheelhouse(wheelhouse: Path, target: Path, python: str) -> None:
    """Install every wheel of ``wheelhouse`` into ``target`` with ``python``'s pip, offline and without
    dependencies (the wheelhouse holds them)."""
    wheels = sorted(wheelhouse.glob("*.whl"))
    if not wheels:
        raise ValueError(f"--wheelhouse {wheelhouse}: no .whl files there (`make wheelhouse` fills .whl/)")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
                    "--disable-pip-version-check", "--target", str(target), *map(str, wheels)], check=True)


def check_steps(python: str, repeats: int | None) -> list[tuple[str, list[str]]]:
    """The checks after the environment: (log name, command), run from the repository root."""
    benchmark = [python, "benchmarks/run_all.py", "--device", "cuda"]
    if repeats is not None:
        benchmark += ["--repeats", str(repeats)]
    return [
        ("device-tests", [python, "-m", "pytest", "tests/test_devices.py", "-k", "cuda", "-v", "-p",
                          "no:cacheprovider"]),
        ("benchmarks", benchmark),
    ]


def run_logged(command: Sequence[str], log: Path, env: dict[str, str]) -> int:
    """Run ``command`` from the repository root with its output on the terminal and in ``log``; its exit status."""
    # Line-buffered: a run killed at its time limit still leaves every line it printed in the log.
    with log.open("w", buffering=1) as handle, subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                                    stderr=subprocess.STDOUT, text=True, bufsize=1) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            handle.write(line)
    return process.returncode


def run(out: Path, python: str, wheelhouse: Path | None, repeats: int | None) -> int:
    """The environment line, then every check step; 0 if all passed, 1 if a step failed, 2 without a usable GPU
    environment."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory(prefix="dualcam-wheels-") as site:
        paths = [str(ROOT)]
        if wheelhouse is not None:
            try:
                install_wheelhouse(wheelhouse, Path(site), python)
            except subprocess.CalledProcessError as error:
                print(f"gpu_check: installing the wheels of {wheelhouse} failed (pip exit status "
                      f"{error.returncode})", file=sys.stderr)
                return 2
            paths.insert(0, site)
        env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [os.environ.get("PYTHONPATH")])])
        status = run_logged([python, "-c", ENVIRONMENT_SCRIPT], out / "environment.log", env)
        if status == 3:
            print("gpu_check: torch sees no CUDA device; the GPU checks need one", file=sys.stderr)
            return 2
        if status != 0:
            print(f"gpu_check: the environment check failed (status {status}, see {out / 'environment.log'}); "
                  "a missing package can come from a wheelhouse (--wheelhouse)", file=sys.stderr)
            return 2
        results = {name: run_logged(command, out / f"{name}.log", env)
                   for name, command in check_steps(python, repeats)}
    for name, readme in READMES.items():
        shutil.copyfile(readme, out / name)
    print("\n".join(f"{name}: {'passed' if status == 0 else f'failed (status {status})'}"
                    for name, status in results.items()))
    print(f"logs and the READMEs with the GPU table are in {out}")
    return 0 if all(status == 0 for status in results.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the GPU checks")
    run_parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "gpu-check",
                            help="folder for the logs and README copies (default outputs/gpu-check)")
    run_parser.add_argument("--python", default=sys.executable, help="interpreter that runs the checks")
    run_parser.add_argument("--wheelhouse", type=Path, default=None,
                            help="install the wheels of this folder (from `make wheelhouse`) for the checks")
    run_parser.add_argument("--repeats", type=int, default=None, help="benchmark rounds (run_all.py's default)")
    wheel_parser = commands.add_parser("wheelhouse", help="download the wheels a PyTorch GPU machine lacks")
    wheel_parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default 3.12)")
    wheel_parser.add_argument("--dest", type=Path, default=ROOT / ".whl", help="folder for the wheels (default .whl)")
    args = parser.parse_args(argv)
    if args.command == "wheelhouse":
        try:
            command = download_command(args.dest, args.python_version)
        except ValueError as error:
            parser.error(str(error))
        subprocess.run(command, check=True)
        print(f"wheels for Python {args.python_version} in {args.dest}: copy the folder to the GPU machine and run "
              "`python3 benchmarks/gpu_check.py run --wheelhouse FOLDER` there")
        return 0
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.wheelhouse is not None and not any(args.wheelhouse.glob("*.whl")):
        parser.error(f"--wheelhouse {args.wheelhouse}: no .whl files there (`make wheelhouse` fills .whl/)")
    return run(args.out, args.python, args.wheelhouse, args.repeats)


if __name__ == "__main__":
    sys.exit(main())
