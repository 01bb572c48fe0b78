"""Run every benchmark, print the table and rewrite its section of benchmarks/README.md and of README.md.

    .venv/bin/python benchmarks/run_all.py                 # CPU table (about 25 minutes on 2 cores)
    .venv/bin/python benchmarks/run_all.py --device cuda   # GPU table, full-size models
    .venv/bin/python benchmarks/run_all.py --size tiny --repeats 1 --no-readme   # smoke run, seconds
    .venv/bin/python benchmarks/run_all.py --only step,cfg   # some benchmarks, printed only

A benchmark that fails gives a failure row and the others still run; the README is then left as it was.

Each device has its own section in each README, between ``<!-- results:DEVICE:begin -->`` and
``<!-- results:DEVICE:end -->``; a run replaces only its device's sections.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_cache  # noqa: E402
import bench_cfg  # noqa: E402
import bench_chain  # noqa: E402
import bench_compile  # noqa: E402
import bench_generate  # noqa: E402
import bench_memory  # noqa: E402
import bench_plucker  # noqa: E402
import bench_startup  # noqa: E402
import bench_step  # noqa: E402
import bench_vae  # noqa: E402
from common import SIZES, Row, resolve  # noqa: E402

from diffsynth_dualcam.io import atomic_write  # noqa: E402

#: The READMEs that hold the tables: the benchmarks' own and the project's.
READMES = (Path(__file__).resolve().parent / "README.md", Path(__file__).resolve().parents[1] / "README.md")
COLUMNS = ("Benchmark", "Measured", "Baseline", "Ratio (what it is)", "Target", "Met")
#: Plücker sizes: the goal's 81 frames at 480x832, and a small map for the smoke run.
PLUCKER_SIZES = {"tiny": (9, 32, 48)}
PLUCKER_GOAL_SIZE = (81, 480, 832)
GENERATE_STEPS = {"tiny": 3}
CACHE_STEPS = {"tiny": 4}


def plucker_row(device: str, size: str, repeats: int) -> Row:
    """The camera benchmark's result as a table row (twice the repeats: one run takes a fraction of a second and
    wall time varies with page faults)."""
    frames, height, width = PLUCKER_SIZES.get(size, PLUCKER_GOAL_SIZE)
    return bench_plucker.run(device, frames, height, width, 2 * repeats)


#: Benchmark names in the order they run: the Plücker, VAE and memory benchmarks first, since they measure fresh
#: allocations, which the allocator setting the DiT timings apply on the CPU (for good) would hide.
RUN_ORDER = ("startup", "plucker", "vae", "memory", "step", "cfg", "compile", "cache", "generate", "chain")
#: The order of their rows in the table.
TABLE_ORDER = ("step", "cfg", "compile", "plucker", "cache", "vae", "generate", "chain", "memory", "startup")


def benchmark_runners(device: str, size: str, repeats: int) -> dict[str, Callable[[], list[Row]]]:
    """Each benchmark by name: a function giving its table rows. The step and guidance benchmarks get twice the
    rounds: their goals bound a ratio within a few percent of what the design gives, about the spread of single
    rounds on a shared machine. On a GPU at full size guidance is also timed at the mid size: a batch-1 call of the
    full-size DiT already fills a large GPU, so where merging pays shows at the smaller size."""
    cfg_sizes = [size, "mid"] if device.startswith("cuda") and size == "full" else [size]
    return {
        "startup": lambda: bench_startup.run(repeats),
        "plucker": lambda: [plucker_row(device, size, repeats)],
        "vae": lambda: bench_vae.run(device, size=size, repeats=repeats),
        "memory": lambda: bench_memory.run(device, size=size if size in bench_memory.VIDEO else None,
                                           estimate=device == "cpu" and size != "tiny"),
        "step": lambda: [bench_step.run(device, size=size, repeats=2 * repeats)],
        "cfg": lambda: [bench_cfg.run(device, size=cfg_size, repeats=2 * repeats) for cfg_size in cfg_sizes],
        "compile": lambda: [bench_compile.run(device, size=size, repeats=repeats)],
        "cache": lambda: [bench_cache.run(device, size=size, steps=CACHE_STEPS.get(size, 8))],
        "generate": lambda: [bench_generate.run(device, steps=GENERATE_STEPS.get(size, 20), repeats=repeats)],
        "chain": lambda: [bench_chain.run(device, repeats=repeats)],
    }


def failure_row(name: str, error: Exception, device: str) -> Row:
    """The table row of a benchmark that raised ``error``."""
    message = " ".join(f"{type(error).__name__}: {error}".split())
    return Row(benchmark=f"{name} (failed)", measured=message[:300], baseline="-", ratio=math.nan, target="-",
               met=False, device=device)


def run_all(device: str = "cpu", size: str | None = None, repeats: int = 5, only: Sequence[str] | None = None,
            report: Callable[[str, list[Row]], None] | None = None) -> tuple[list[Row], list[str]]:
    """The rows of every benchmark (or of those named in ``only``) in table order, and the names of those that
    failed: a benchmark that raises gives one failure row and the others still run. ``report(name, rows)`` is
    called as each one finishes."""
    _, _, size = resolve(device, None, size)
    runners = benchmark_runners(device, size, repeats)
    selected = RUN_ORDER if only is None else tuple(only)
    unknown = [name for name in selected if name not in runners]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}: choose from {', '.join(RUN_ORDER)}")
    results: dict[str, list[Row]] = {}
    failed: list[str] = []
    for name in (name for name in RUN_ORDER if name in selected):
        try:
            results[name] = runners[name]()
        except Exception as error:  # one benchmark's failure must not lose the others' results
            results[name] = [failure_row(name, error, device)]
            failed.append(name)
        if report is not None:
            report(name, results[name])
    return [row for name in TABLE_ORDER if name in results for row in results[name]], failed


def format_table(rows: list[Row]) -> str:
    """Markdown table of the rows."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        ratio = "-" if math.isnan(row.ratio) else f"{row.ratio:.2f}"
        if row.ratio_label and not math.isnan(row.ratio):
            ratio += f" ({row.ratio_label})"
        met = {True: "yes", False: "**no**", None: "-"}[row.met]
        cells = (row.benchmark, row.measured, row.baseline, ratio, row.target, met)
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines)


def machine_description(device: str) -> str:
    """One line naming the machine the table was measured on."""
    if device.startswith("cuda"):
        hardware = torch.cuda.get_device_name(torch.device(device))
    else:
        hardware = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    return f"{hardware}; torch {torch.__version__}; measured {date}, load average {load:.2f} at the start."


def replace_section(text: str, device: str, body: str) -> str:
    """``text`` with the section between the device's markers replaced by ``body``."""
    begin, end = f"<!-- results:{device}:begin -->", f"<!-- results:{device}:end -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), flags=re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"{begin} ... {end} markers not found in the README")
    return pattern.sub(lambda _: f"{begin}\n{body}\n{end}", text)


def section_name(device: str) -> str:
    """The README section of a device: ``cuda`` for any GPU, else ``cpu``."""
    return "cuda" if device.startswith("cuda") else "cpu"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--size", choices=SIZES, default=None,
                        help="model and latent size (default: mid on the CPU, full on a GPU; tiny: smoke run)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds of each side (medians are reported)")
    parser.add_argument("--readme", type=Path, action="append", default=None,
                        help="README whose table section to rewrite (repeatable; default: benchmarks/README.md and "
                             "README.md)")
    parser.add_argument("--no-readme", action="store_true", help="print the table only")
    parser.add_argument("--only", type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
                        default=None, metavar="NAMES",
                        help=f"comma-separated benchmarks to run ({', '.join(RUN_ORDER)}); prints only, the README "
                             "keeps its full table")
    args = parser.parse_args(argv)
    resolve(args.device, None, args.size)  # a CUDA request without a GPU fails here, before any benchmark runs
    if args.only is not None:
        unknown = [name for name in args.only if name not in RUN_ORDER]
        if unknown or not args.only:
            parser.error(f"--only takes names from {', '.join(RUN_ORDER)}, got {args.only}")
    readmes = [] if args.only is not None or args.no_readme else (args.readme or list(READMES))
    for path in readmes:  # a README without its markers fails now, not after the benchmarks ran
        try:
            replace_section(path.read_text(), section_name(args.device), "")
        except (OSError, ValueError) as error:
            parser.error(f"--readme {path}: {error}")
    header = machine_description(args.device)

    def report(name: str, rows: list[Row]) -> None:
        for row in rows:
            print(f"[{name}] {row.benchmark}: {row.measured}", flush=True)

    rows, failed = run_all(args.device, args.size, args.repeats, only=args.only, report=report)
    print(header + "\n\n" + format_table(rows))
    if failed:
        print(f"failed: {', '.join(failed)}; the README is left as it was", file=sys.stderr)
        return 1
    for path in readmes:
        atomic_write(path, replace_section(path.read_text(), section_name(args.device),
                                           header + "\n\n" + format_table(rows)).encode())
        print(f"table written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
