"""DiT checkpoints: the file names and where the official DiT is looked for, safetensors with the config in
metadata, conversion of the official ``.pt`` (``dualcam convert-checkpoint``), and the training start point built
from an RGB-only Wan2.1-Fun-Control-Camera DiT.

torch, DiffSynth and the DiT are imported inside the functions that need them, so that the command line finds the
files and checks its arguments without loading them.
"""
from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from ..io import atomic_output
from .config import OFFICIAL_CONFIG, normalize_config

if TYPE_CHECKING:
    import torch

    from .dit import DualCamCtrlDiT

DIT_FILE_NAME = "dualcamctrl_dit.safetensors"
OFFICIAL_FILE_NAME = "dualcamctrl_diffusion_transformer.pt"
OFFICIAL_REPO_ID = "FayeHongfeiZhang/DualCamCtrl"

#: Prefix a distributed-training wrapper puts before every key.
MODULE_PREFIX = "module."
#: Prefixes of the DiT keys in training-module checkpoints.
DIT_PREFIXES = ("pipe.dit.", "dit.")
#: Keys under which training checkpoints nest their weights.
WRAPPER_KEYS = ("state_dict", "module", "model")
#: Keys of the DiT's depth branch and fusion, absent from an RGB-only Wan DiT.
DUAL_BRANCH_PREFIXES = ("control_blocks.", "rgb_zero_inits.", "control_zero_inits.")

#: torch dtype name -> safetensors dtype.
_SAFETENSORS_DTYPES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "int32": "I32",
    "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
}


def local_official_dit(checkpoint_dir: str | os.PathLike = "checkpoints") -> Path | None:
    """The official DiT in ``checkpoint_dir`` (converted safetensors, else the released ``.pt``), or None."""
    for name in (DIT_FILE_NAME, OFFICIAL_FILE_NAME):
        if (Path(checkpoint_dir) / name).is_file():
            return Path(checkpoint_dir) / name
    return None


def write_safetensors(
    path: str | os.PathLike,
    tensors: Iterable[tuple[str, torch.Tensor]],
    metadata: Mapping[str, str] | None = None,
    progress: bool = False,
) -> Path:
    """Write tensors as a safetensors file, one tensor in memory at a time; atomic (temp file, then rename).

    ``tensors`` is consumed once, so it may pop tensors from a larger dict; ``progress`` shows a bar on terminals.
    """
    import torch

    path = Path(path)
    named = list(tensors)
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, tensor in named:
        dtype_name = str(tensor.dtype).removeprefix("torch.")
        if dtype_name not in _SAFETENSORS_DTYPES:
            raise ValueError(f"tensor {name} has dtype {tensor.dtype}, which safetensors cannot store")
        size = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": _SAFETENSORS_DTYPES[dtype_name], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    header_bytes = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    with atomic_output(path, keep_suffix=False) as temporary, open(temporary, "wb") as file:
        file.write(len(header_bytes).to_bytes(8, "little"))
        file.write(header_bytes)
        for index in tqdm(range(len(named)), desc=f"writing {path.name}", disable=None if progress else True):
            name, tensor = named[index]
            named[index] = (name, None)
            file.write(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return path


def save_dit(dit: DualCamCtrlDiT, path: str | os.PathLike) -> Path:
    """Save a DiT as safetensors with its config in the metadata (what ``load_dit`` and DiffSynth read)."""
    from .registry import CONFIG_METADATA_KEY

    metadata = {CONFIG_METADATA_KEY: json.dumps(dit.config, allow_nan=False), "format": "pt"}
    return write_safetensors(path, dit.state_dict().items(), metadata)


def check_keys(found: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise ValueError naming the missing and unexpected keys, and keys whose shapes differ."""
    from .registry import layout_difference

    difference = layout_difference(
        {key: value.shape for key, value in found.items()}, {key: value.shape for key, value in expected.items()}
    )
    if difference:
        raise ValueError(f"{source} does not match the DualCamCtrl DiT layout; {difference}")


def check_finite_weights(tensors: Iterable[tuple[str, torch.Tensor]], source: str) -> None:
    """A ValueError naming the first floating-point tensor of ``tensors`` that holds NaN or infinite values (a
    damaged file, or a training run that diverged), which would otherwise make every generation black or noise."""
    import torch

    for name, tensor in tensors:
        if not tensor.is_floating_point() or tensor.is_meta:
            continue
        if tensor.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
            tensor = tensor.to(torch.float16)
        finite = torch.isfinite(tensor)
        if not bool(finite.all()):
            bad = int(finite.numel() - finite.sum())
            raise ValueError(f"{source}: weight {name!r} holds {bad} NaN or infinite value(s) of {tensor.numel()}; "
                             "the checkpoint is damaged or comes from a diverged training run: use another one")


def load_dit(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    torch_dtype: torch.dtype | None = None,
    config: Mapping[str, Any] | None = None,
) -> DualCamCtrlDiT:
    """Load a DiT safetensors file (in ``torch_dtype``, default float32); the config comes from its metadata, else
    from ``config``."""
    import torch
    from safetensors import safe_open

    from .dit import empty_dit
    from .registry import read_config_metadata

    torch_dtype = torch.float32 if torch_dtype is None else torch_dtype
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DiT checkpoint not found: {path}")
    stored = read_config_metadata(path)
    if stored is None and config is None:
        raise ValueError(f"{path} holds no DualCamCtrl config metadata: pass config=")
    model = empty_dit(normalize_config(dict(stored if stored is not None else config)))
    state_dict = {}
    with safe_open(str(path), framework="pt", device="cpu") as file:
        for name in tqdm(file.keys(), desc=f"loading {path.name}", disable=None):
            state_dict[name] = file.get_tensor(name).to(device=device, dtype=torch_dtype)
    check_keys(state_dict, model.state_dict(), str(path))
    check_finite_weights(state_dict.items(), str(path))
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.to(device=device, dtype=torch_dtype).eval()


def read_torch_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a torch ``.pt`` file, memory-mapped, read without running any pickled code.

    Weights nested under ``state_dict`` / ``module`` / ``model`` are unwrapped; entries that are not tensors
    (step counters and the like) are left out.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a complete torch checkpoint (a zip archive): it is truncated, corrupt, or in the legacy "
            "pre-1.6 format; download it again"
        )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path} needs full unpickling{_unpickler_reason(error)}, which can run arbitrary code, so it is "
            "refused. Only tensors and plain containers are read: use a checkpoint that holds only weights"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} could not be read as a torch checkpoint (truncated or corrupt?): {error}") from error
    while isinstance(loaded, dict):
        wrapped = [key for key in WRAPPER_KEYS if isinstance(loaded.get(key), dict)]
        if not wrapped:
            break
        loaded = loaded[wrapped[0]]
    entries = loaded.items() if isinstance(loaded, dict) else ()
    tensors = {key: value for key, value in entries if isinstance(value, torch.Tensor)}
    if not tensors:
        raise ValueError(f"{path} holds no tensors (found a {type(loaded).__name__})")
    return tensors


def _unpickler_reason(error: Exception) -> str:
    """What torch's refusal says the file holds (`` (Unsupported global: ...)``), without its advice to retry with
    full unpickling, which this package never does."""
    for line in str(error).splitlines():
        _, found, reason = line.partition("WeightsUnpickler error:")
        if found and reason.strip():
            return f" ({reason.strip().split('. ')[0].rstrip('.')})"
    return ""


def component_of(key: str) -> tuple[str, str]:
    """(component, key inside it) of a training-module key: ``pipe.vae.x`` -> (``vae``, ``x``); DiT keys -> ``dit``."""
    key = key.removeprefix(MODULE_PREFIX)
    for prefix in DIT_PREFIXES:
        if key.startswith(prefix):
            return "dit", key[len(prefix):]
    if key.startswith("pipe."):
        component, _, rest = key[len("pipe."):].partition(".")
        return component, rest
    return "dit", key


def convert_official_checkpoint(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: Mapping[str, Any] = OFFICIAL_CONFIG,
) -> dict[str, Path]:
    """Convert the official training-module ``.pt`` to safetensors files in ``out_dir``; returns component -> file.

    The DiT goes to ``dualcamctrl_dit.safetensors`` with ``config`` in its metadata; other components
    (``pipe.vae.*``, ``pipe.text_encoder.*``, ``pipe.image_encoder.*``) to ``<component>.safetensors``.
    Tensors stay memory-mapped and are written one at a time.
    """
    from .dit import empty_dit
    from .registry import CONFIG_METADATA_KEY

    source = read_torch_checkpoint(path)
    groups: dict[str, list[tuple[str, str]]] = {}
    for key in source:
        component, name = component_of(key)
        groups.setdefault(component, []).append((name, key))
    if "dit" not in groups:
        raise ValueError(f"{path} holds no DiT weights (keys under pipe.dit.); components found: {sorted(groups)}")
    config = normalize_config(dict(config))
    expected = empty_dit(config).state_dict()
    check_keys({name: source[key] for name, key in groups["dit"]}, expected, f"the DiT of {path}")
    check_finite_weights(source.items(), str(path))
    out_dir = Path(out_dir)
    written = {}
    for component, names in groups.items():
        if component == "dit":
            target = out_dir / DIT_FILE_NAME
            metadata = {CONFIG_METADATA_KEY: json.dumps(config, allow_nan=False), "format": "pt"}
        else:
            target = out_dir / f"{component}.safetensors"
            metadata = {"format": "pt"}
        written[component] = write_safetensors(
            target, ((name, source.pop(key)) for name, key in names), metadata, progress=True
        )
    return written


def _load_wan_state_dict(source: str | os.PathLike | Iterable[str | os.PathLike] | Mapping[str, torch.Tensor]):
    from safetensors import safe_open

    if isinstance(source, Mapping):
        return dict(source)
    paths = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    state_dict: dict[str, torch.Tensor] = {}
    for path in paths:
        if str(path).endswith(".safetensors"):
            if not Path(path).is_file():
                raise FileNotFoundError(f"Wan DiT file not found: {path}")
            with safe_open(str(path), framework="pt", device="cpu") as file:
                state_dict.update({name: file.get_tensor(name) for name in file.keys()})
        else:
            state_dict.update(read_torch_checkpoint(path))
    return state_dict


def dit_from_wan_camera(
    source: str | os.PathLike | Iterable[str | os.PathLike] | Mapping[str, torch.Tensor],
    config: Mapping[str, Any] = OFFICIAL_CONFIG,
    torch_dtype: torch.dtype | None = None,
) -> DualCamCtrlDiT:
    """The training start point: a Wan2.1-Fun-Control-Camera DiT (file(s) or state dict) with depth blocks copied
    from the RGB blocks and freshly initialised fusion modules whose output projections are zero (in ``torch_dtype``,
    default float32)."""
    import torch

    from .dit import empty_dit

    torch_dtype = torch.float32 if torch_dtype is None else torch_dtype
    wan_state = {component_of(key)[1]: value for key, value in _load_wan_state_dict(source).items()}
    model = empty_dit(normalize_config(dict(config)))
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(DUAL_BRANCH_PREFIXES)}
    check_keys(wan_state, expected, "the Wan Control-Camera DiT")
    check_finite_weights(wan_state.items(), "the Wan Control-Camera DiT")
    model.load_state_dict(wan_state, strict=False, assign=True)
    model.copy_rgb_blocks_to_depth()
    model.reset_fusion()
    return model.to(dtype=torch_dtype).eval()


def official_dit_path(
    checkpoint_dir: str | os.PathLike = "checkpoints",
    model_id: str = OFFICIAL_REPO_ID,
    download_source: str = "huggingface",
    local_model_path: str | None = None,
    config: Mapping[str, Any] = OFFICIAL_CONFIG,
) -> Path:
    """Path of the official DiT as safetensors, converting (and, unless DiffSynth is told to skip, downloading).

    Looks for ``dualcamctrl_dit.safetensors`` in ``checkpoint_dir``, then ``dualcamctrl_diffusion_transformer.pt``
    there, then asks DiffSynth's downloader for the ``.pt`` of ``model_id`` (``DIFFSYNTH_SKIP_DOWNLOAD=true`` uses only
    what is already under ``DIFFSYNTH_MODEL_BASE_PATH`` / ``local_model_path``). A found ``.pt`` is converted into
    ``checkpoint_dir`` with ``config``.
    """
    from diffsynth.core.loader import ModelConfig

    checkpoint_dir = Path(checkpoint_dir)
    converted = checkpoint_dir / DIT_FILE_NAME
    if converted.is_file():
        return converted
    official = checkpoint_dir / OFFICIAL_FILE_NAME
    if not official.is_file():
        model_config = ModelConfig(model_id=model_id, origin_file_pattern=OFFICIAL_FILE_NAME,
                                   download_source=download_source, local_model_path=local_model_path)
        model_config.download_if_necessary()
        found = model_config.path if isinstance(model_config.path, str) else None
        if found is None or not Path(found).is_file():
            skipped = (" (downloads skipped: DIFFSYNTH_SKIP_DOWNLOAD=true)" if model_config.parse_skip_download()
                       else "")
            raise FileNotFoundError(
                f"the official DiT is neither at {converted} nor at {official}, and {model_id}/{OFFICIAL_FILE_NAME} "
                f"was not found under {model_config.local_model_path}{skipped}; see checkpoints/README.md"
            )
        official = Path(found)
    return convert_official_checkpoint(official, checkpoint_dir, config)["dit"]

