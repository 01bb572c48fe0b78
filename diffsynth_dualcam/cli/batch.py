"""Data-parallel generation of many clips: ``dualcam generate --batch-file jobs.jsonl``, one process per GPU.

A batch file holds one JSON object per line (blank lines and ``#`` comments skipped), or one JSON array of them.
Each object is one clip: ``name`` (its output folder under ``--out``) plus any per-clip option of
``dualcam generate`` under its long name (``image``, ``depth``, ``t2v``, ``trajectory`` or ``preset``, ``speed``,
``source_size``, ``resample_camera``, ``prompt``, ``negative_prompt``, ``size``, ``frames``, ``steps``, ``cfg``,
``seed``, ``fps``, ``step_cache``, ``chunk_frames``: ``frames`` beyond it chain clips, see docs/long_paths.md). Sizes
are ``"WxH"`` strings or ``[W, H]`` pairs; relative paths are relative to the batch file; ``t2v`` is ``true`` or
``false``; ``null`` stands for the option's own default, not the command line's.
The command line's options are defaults for every clip, except that a clip sets its inputs (``image``,
``depth``, ``t2v``) and its camera (``trajectory``, ``preset``) as a whole: one that names any of a group takes
none of that group from the command line (so a clip's own image never gets the command line's depth map; the camera
group also holds ``source_size``, ``speed`` and ``resample_camera``). Model
options (``--tiny``, ``--checkpoint``, ``--device``, ...) come from the command line and are shared.

Under ``torchrun --nproc_per_node N`` process ``RANK`` takes clips ``RANK, RANK + N, ...`` and its GPU
``LOCAL_RANK``; the processes need no communication. Clips whose folder already holds a ``params.json`` (written
last) are skipped, so an interrupted batch resumes where it stopped.

    torchrun --nproc_per_node 8 -m diffsynth_dualcam generate --batch-file jobs.jsonl --out outputs/batch
"""
from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path
from typing import Any, NoReturn

from tqdm import tqdm

from ..limits import MAX_BATCH_FILE_BYTES

#: Per-clip options a job may set: long option name -> "path" (resolved against the batch file), "flag" (true or
#: false) or "value".
JOB_OPTIONS: dict[str, str] = {
    "image": "path", "depth": "path", "t2v": "flag", "trajectory": "path", "preset": "value", "speed": "value",
    "source_size": "value", "prompt": "value", "negative_prompt": "value", "size": "value", "frames": "value",
    "steps": "value", "cfg": "value", "seed": "value", "fps": "value", "step_cache": "value",
    "chunk_frames": "value", "resample_camera": "flag",
}
#: Options a clip sets as a whole: naming one of a group, it takes none of the others from the command line.
JOB_GROUPS: tuple[tuple[str, ...], ...] = (("image", "depth", "t2v"), ("trajectory", "preset", "source_size", "speed",
                                                                          "resample_camera"))
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
DONE_MARKER = "params.json"


def load_jobs(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The clips of a batch file, checked: each has a unique safe ``name`` and only known options."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--batch-file: no such file: {path}")
    if not path.is_file():
        raise ValueError(f"--batch-file {path}: not a regular file")
    if path.stat().st_size > MAX_BATCH_FILE_BYTES:
        raise ValueError(f"--batch-file {path}: {path.stat().st_size:,} bytes, more than the limit of "
                         f"{MAX_BATCH_FILE_BYTES:,}")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"--batch-file {path}: not UTF-8 text ({error}); save it as UTF-8") from None
    if text.lstrip().startswith("["):
        entries = list(enumerate(_parse_json(text, f"--batch-file {path}: not valid JSON"), start=1))
        where = "entry"
    else:
        entries = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip() and not line.lstrip().startswith("#"):
                entries.append((number, _parse_json(line, f"--batch-file {path}: line {number} is not a JSON object")))
        where = "line"
    if not entries:
        raise ValueError(f"--batch-file {path}: no clips in the file")
    jobs, names = [], set()
    for number, job in entries:
        prefix = f"--batch-file {path}: {where} {number}"
        if not isinstance(job, dict):
            raise ValueError(f"{prefix}: expected a JSON object, got {type(job).__name__}")
        name = job.get("name")
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise ValueError(f"{prefix}: 'name' must be a folder name of letters, digits, '.', '_' or '-', "
                             f"got {name!r}")
        if name in names:
            raise ValueError(f"{prefix}: the name {name!r} is used twice")
        names.add(name)
        unknown = sorted(set(job) - set(JOB_OPTIONS) - {"name"})
        if unknown:
            raise ValueError(f"{prefix}: unknown keys {unknown}; a clip may set 'name' and {sorted(JOB_OPTIONS)}")
        for key, value in job.items():
            if key != "name" and value is not None and isinstance(value, bool) != (JOB_OPTIONS[key] == "flag"):
                expected = "true or false" if JOB_OPTIONS[key] == "flag" else "a value, not true or false"
                raise ValueError(f"{prefix}: '{key}' must be {expected} (or null), got {json.dumps(value)}")
        jobs.append({key: _resolve(key, value, path.parent) for key, value in job.items()})
    return jobs


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _parse_json(text: str, prefix: str) -> Any:
    """``text`` parsed as standard JSON, or a ValueError starting with ``prefix``."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError(f"{prefix} (nested too deeply)") from None
    except ValueError as error:  # JSONDecodeError, NaN/Infinity, an integer of more than 4300 digits
        message = str(error)
        raise ValueError(f"{prefix} ({message if len(message) <= 200 else message[:197] + '...'})") from None


def _resolve(key: str, value: Any, base: Path) -> Any:
    if JOB_OPTIONS.get(key) == "path" and isinstance(value, str):
        return str(base / value)
    return value


def job_arguments(job: dict[str, Any]) -> list[str]:
    """Command-line tokens of ``dualcam generate`` for a clip's options (``name`` excluded; options that are
    ``null`` or ``false`` are left to :func:`own_default_options`). Values are joined to their flag with ``=``, so
    one starting with ``-`` stays a value."""
    tokens = []
    for key, value in job.items():
        if key == "name" or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            tokens.append(flag)
        elif isinstance(value, (list, tuple)):
            if len(value) != 2:
                raise ValueError(f"clip {job['name']!r}: {key} must be [width, height] or 'WxH', got {value!r}")
            tokens.append(f"{flag}={value[0]}x{value[1]}")
        else:
            tokens.append(f"{flag}={value}")
    return tokens


def own_default_options(job: dict[str, Any]) -> set[str]:
    """Options of a clip that take ``dualcam generate``'s own default rather than the command line's: those it
    sets to ``null`` or ``false``, and the rest of every group (``JOB_GROUPS``) it names an option of."""
    options = {key for key, value in job.items() if key != "name" and (value is None or value is False)}
    for group in JOB_GROUPS:
        if any(key in job for key in group):
            options.update(key for key in group if key not in job)
    return options


def process_share(num_jobs: int, rank: int, world_size: int) -> list[int]:
    """Indices of the clips process ``rank`` of ``world_size`` generates (round robin, so shares differ by one)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside a world of {world_size} processes")
    return list(range(rank, num_jobs, world_size))


def launch_rank() -> tuple[int, int]:
    """``(rank, world_size)`` of this process under ``torchrun``; ``(0, 1)`` when run alone."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_done(out_dir: str | os.PathLike) -> bool:
    """Whether a clip's folder holds a finished generation (its ``params.json`` is written last)."""
    return (Path(out_dir) / DONE_MARKER).is_file()


class _ClipParser(argparse.ArgumentParser):
    """``dualcam generate``'s parser that raises ValueError instead of exiting on a bad clip."""

    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


def clip_arguments(args: argparse.Namespace, job: dict[str, Any]) -> argparse.Namespace:
    """``dualcam generate``'s options for one clip: the command line's ``args`` as defaults and the clip's own over
    them (its inputs and its camera as a whole, see :func:`own_default_options`), with ``--out`` its folder."""
    from ..parallel.sequence import local_device  # torch: once the batch file has been read and checked
    from . import generate as generate_cli

    parser = _ClipParser(prog="dualcam generate (batch clip)")
    generate_cli.add_arguments(parser)
    own_defaults = {key: parser.get_default(key) for key in JOB_OPTIONS}
    parser.set_defaults(**{**vars(args), "batch_file": None, "device": local_device(args.device)})
    clip_args = parser.parse_args([*job_arguments(job), "--out", str(Path(args.out) / job["name"])])
    for key in own_default_options(job):
        setattr(clip_args, key, own_defaults[key])
    return clip_args


def run_batch(args: argparse.Namespace) -> int:
    """Generate this process's share of ``args.batch_file`` into ``args.out/<name>``; returns the exit code.

    The command line's options are defaults for every clip; a clip's own options override them, its inputs and its
    camera as a whole (``own_default_options``). Every clip of the share is checked before the models load.
    """
    from . import generate as generate_cli

    jobs = load_jobs(args.batch_file)
    if args.sequence_parallel:
        raise ValueError("--sequence-parallel splits one clip over the processes, --batch-file splits the clips: "
                         "use one of them")
    rank, world_size = launch_rank()
    args.device = generate_cli.check_device(args.device)  # "auto" resolved before local_device picks this rank's GPU
    clips = []
    for index in process_share(len(jobs), rank, world_size):
        job = jobs[index]
        out_dir = Path(args.out) / job["name"]
        if is_done(out_dir):
            print(f"[rank {rank}] {job['name']}: already done in {out_dir}, skipped")
            continue
        try:
            clip_args = clip_arguments(args, job)
            clips.append((job["name"], clip_args, generate_cli.prepare_clip(clip_args)))
        except FileNotFoundError as error:
            raise FileNotFoundError(f"clip {job['name']!r}: {error}") from None
        except ValueError as error:
            raise ValueError(f"clip {job['name']!r}: {error}") from None
    print(f"[rank {rank}/{world_size}] {len(clips)} of {len(jobs)} clips to generate")
    if not clips:
        return 0
    _, first_args, (first_setup, *_) = clips[0]
    needs_depth = any(image is not None and depth is None for _, _, (_, image, depth, _) in clips)
    depth_estimator = generate_cli.load_depth_estimator(first_args, first_setup) if needs_depth else None
    pipe = generate_cli.build_pipeline(first_args, first_setup)
    pipe.depth_estimator = depth_estimator
    generate_cli.configure_pipeline(pipe, first_args)
    for name, clip_args, prepared in tqdm(clips, desc=f"rank {rank} clips", disable=len(clips) < 2):
        written = generate_cli.generate_clip(pipe, clip_args, *prepared).save(clip_args.out, fps=clip_args.fps)
        generate_cli.remove_resume_folder(clip_args)
        print(f"[rank {rank}] {name}: wrote {len(written)} files to {clip_args.out}")
    return 0
