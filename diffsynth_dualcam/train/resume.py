"""Resuming an interrupted training run from its output folder.

Every checkpoint writes ``step-N.safetensors`` (the DiT) and then ``state/step-N/``, accelerate's saved state
(``Accelerator.save_state``: the trained weights, optimizer, LR schedule, gradient scaler and random generators).
The state folder is written under a hidden staging name and renamed when complete, so ``state/step-N`` exists only
for a complete checkpoint; older ones are then removed. A run started into a folder that holds a run of the same
config continues from its last complete checkpoint: files of later steps (DiT checkpoints, validation videos,
``loss.csv`` rows) left by the interrupted run are removed first, as are staging files a killed process left.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

from ..io import atomic_write
from .config import TrainConfig

CONFIG_FILE = "config.json"
LOSS_FILE = "loss.csv"
STATE_DIR = "state"
VALIDATION_DIR = "validation"
#: Config keys a resumed run may change: they do not change what is computed.
RESUMABLE_KEYS = frozenset({"data.num_workers", "train.output_dir"})
STEP_NAME = re.compile(r"step-(\d+)")
CHECKPOINT_NAME = re.compile(r"step-(\d+)\.safetensors")
#: Staging names of a checkpoint being written: ``io.atomic_output``'s ``.step-N.safetensors.*`` files, the state
#: folder's ``.step-N.partial`` and a validation folder's ``.step-N.partial*``.
STAGING_NAME = re.compile(r"\.step-\d+\.(safetensors\..+|partial.*)")


def staging_state_dir(output_dir: str | Path, step: int) -> Path:
    """Where the state of ``step`` is written before it is renamed to ``state_dir``."""
    return Path(output_dir) / STATE_DIR / f".step-{step}.partial"


def state_dir(output_dir: str | Path, step: int) -> Path:
    """The complete saved state of ``step``."""
    return Path(output_dir) / STATE_DIR / f"step-{step}"


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_record(config: TrainConfig) -> dict[str, Any]:
    """The config as written to ``config.json`` (plain JSON values)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def check_run_folder(output_dir: str | Path, config: TrainConfig) -> None:
    """Raise ValueError if ``output_dir`` holds another run: a ``config.json`` that differs from ``config`` in a key
    that changes the training (anything but ``RESUMABLE_KEYS``), or training files without a ``config.json``."""
    output_dir = Path(output_dir)
    recorded_path = output_dir / CONFIG_FILE
    if not recorded_path.is_file():
        leftovers = [path.name for path in (output_dir.iterdir() if output_dir.is_dir() else ())
                     if path.name in (LOSS_FILE, STATE_DIR, VALIDATION_DIR) or CHECKPOINT_NAME.fullmatch(path.name)]
        if leftovers:
            raise ValueError(f"train.output_dir: {output_dir} holds training files ({', '.join(sorted(leftovers))}) "
                             f"but no {CONFIG_FILE}, so it cannot be resumed: use another output_dir")
        return
    try:
        recorded = _flatten(json.loads(recorded_path.read_text(encoding="utf-8")))
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"train.output_dir: {recorded_path} is not a readable run record ({error}): "
                         "use another output_dir") from None
    current = _flatten(config_record(config))
    differences = [f"{key}: {recorded.get(key)!r} there, {current.get(key)!r} here"
                   for key in sorted(set(recorded) | set(current))
                   if key not in RESUMABLE_KEYS and recorded.get(key) != current.get(key)]
    if differences:
        shown = "; ".join(differences[:5]) + (f"; and {len(differences) - 5} more" if len(differences) > 5 else "")
        raise ValueError(f"train.output_dir: {output_dir} holds a run of another config ({shown}); a run resumes "
                         "only with the same config: use another output_dir for a new run")


def last_complete_step(output_dir: str | Path) -> int:
    """The step of the newest complete saved state in ``output_dir`` (0: none)."""
    folder = Path(output_dir) / STATE_DIR
    steps = [int(match.group(1)) for path in (folder.iterdir() if folder.is_dir() else ())
             if path.is_dir() and (match := STEP_NAME.fullmatch(path.name))]
    return max(steps, default=0)


def check_process_count(output_dir: str | Path, step: int, num_processes: int) -> None:
    """Raise ValueError unless the state of ``step`` was saved by ``num_processes`` processes (accelerate writes one
    ``random_states_<process>.pkl`` per process): the data order is split between the processes."""
    saved = len(list(state_dir(output_dir, step).glob("random_states_*.pkl")))
    if saved != num_processes:
        raise ValueError(f"train.output_dir: the run in {output_dir} was trained by {saved} processes and this one has "
                         f"{num_processes}; resume it with {saved} (accelerate launch --num_processes {saved})")


def remove_states_before(output_dir: str | Path, step: int) -> None:
    """Delete the saved states older than ``step`` (only the newest is kept)."""
    folder = Path(output_dir) / STATE_DIR
    for path in folder.iterdir():
        match = STEP_NAME.fullmatch(path.name)
        if match and int(match.group(1)) < step:
            shutil.rmtree(path)


def clear_after(output_dir: str | Path, step: int) -> list[Path]:
    """Remove what an interrupted run left past ``step`` (its last complete checkpoint, 0 for none): staging files
    and folders, DiT checkpoints, validation videos and saved states of later steps, and ``loss.csv`` rows of later
    steps. Returns the removed paths (and ``loss.csv`` when rows were dropped)."""
    output_dir = Path(output_dir)
    removed = []
    candidates = [*output_dir.glob(".step-*"), *output_dir.glob("step-*.safetensors"),
                  *(output_dir / STATE_DIR).glob("*step-*"), *(output_dir / VALIDATION_DIR).glob("*step-*")]
    for path in candidates:
        if STAGING_NAME.fullmatch(path.name):
            later = True
        else:
            match = STEP_NAME.match(path.name)
            later = match is not None and int(match.group(1)) > step
        if later:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            removed.append(path)
    if truncate_loss_log(output_dir / LOSS_FILE, step):
        removed.append(output_dir / LOSS_FILE)
    return removed


def truncate_loss_log(path: Path, step: int) -> bool:
    """Keep the rows of ``loss.csv`` up to ``step`` (atomically); True if rows were dropped."""
    if not path.is_file():
        return False
    with open(path, encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    kept = [row for row in rows if row.get("step", "").isdigit() and int(row["step"]) <= step]
    if len(kept) == len(rows):
        return False
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["step", "key", "value"], lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: row[key] for key in ("step", "key", "value")} for row in kept)
    atomic_write(path, text.getvalue().encode("utf-8"))
    return True
