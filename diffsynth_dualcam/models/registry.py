"""Registration of the DualCamCtrl DiT with DiffSynth's model detection (``ModelPool.auto_load_model``).

DiffSynth recognises a model file by the MD5 of its sorted parameter names and shapes. Each registered config adds
one entry to ``diffsynth.configs.MODEL_CONFIGS`` whose hash is computed from a meta-device ``DualCamCtrlDiT`` of that
config, so a file with exactly that layout loads as ``"dualcamctrl_dit"``.
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from diffsynth.configs import MODEL_CONFIGS, VRAM_MANAGEMENT_MODULE_MAPS
from diffsynth.core.loader.file import (
    hash_model_file,
    hash_state_dict_keys,
    load_keys_dict,
    load_metadata_from_safetensors,
)

from .config import OFFICIAL_CONFIG, normalize_config
from .dit import empty_dit

MODEL_NAME = "dualcamctrl_dit"
MODEL_CLASS = "diffsynth_dualcam.models.dit.DualCamCtrlDiT"
#: Safetensors metadata key under which ``save_dit`` stores the DiT config as JSON.
CONFIG_METADATA_KEY = "dualcamctrl_config"

_WRAP = "diffsynth.core.vram.layers.AutoWrappedModule"
#: VRAM-management map: Wan's map (it covers the depth ``DiTBlock``s and the fusion ``Conv3d``s) plus the Linear
#: fusion, which must be wrapped whole because it is called with three arguments. The first match wins, so it
#: comes before ``torch.nn.Linear``.
VRAM_MODULE_MAP = {
    "diffsynth_dualcam.models.fusion.LinearFusion": _WRAP,
    **VRAM_MANAGEMENT_MODULE_MAPS["diffsynth.models.wan_video_dit.WanModel"],
}


def config_hash(config: Mapping[str, Any]) -> str:
    """DiffSynth's key-and-shape hash of the state dict a ``DualCamCtrlDiT(**config)`` has."""
    return hash_state_dict_keys(empty_dit(config).state_dict(), with_shape=True)


class LayoutCollisionWarning(UserWarning):
    """A registration replaced another config with the same parameter layout (names and shapes)."""


def register_config(config: dict[str, Any]) -> str:
    """Make files with the layout of ``config`` load as ``"dualcamctrl_dit"``; returns the layout's hash.

    DiffSynth tells files apart by parameter names and shapes only, so configs that differ only in where the fusion
    modules sit share a hash and one registry entry: the latest registration wins, with a
    ``LayoutCollisionWarning`` when it replaces a different config. Register the file to be loaded just before
    loading it (``register_checkpoint``), or load it with ``diffsynth_dualcam.models.checkpoints.load_dit``.
    """
    config = normalize_config(config)
    model_hash = config_hash(config)
    _set_entry(model_hash, config)
    return model_hash


def _set_entry(model_hash: str, config: dict[str, Any]) -> None:
    entry = {"model_hash": model_hash, "model_name": MODEL_NAME, "model_class": MODEL_CLASS, "extra_kwargs": config}
    for index, existing in enumerate(MODEL_CONFIGS):
        if existing["model_hash"] == model_hash:
            if existing["model_name"] != MODEL_NAME:
                raise ValueError(f"layout hash {model_hash} is already registered for {existing['model_name']}")
            if existing["extra_kwargs"] != config:
                changed = {key: value for key, value in config.items() if existing["extra_kwargs"].get(key) != value}
                warnings.warn(
                    f"files of DualCamCtrl layout {model_hash} now load with {changed} instead of "
                    f"{ {key: existing['extra_kwargs'].get(key) for key in changed} }: the layouts are identical, so "
                    "DiffSynth cannot tell the two configs apart; the latest registration applies",
                    LayoutCollisionWarning,
                    stacklevel=3,
                )
            MODEL_CONFIGS[index] = entry
            break
    else:
        MODEL_CONFIGS.append(entry)
    VRAM_MANAGEMENT_MODULE_MAPS[MODEL_CLASS] = VRAM_MODULE_MAP


def read_config_metadata(path: str | os.PathLike) -> dict[str, Any] | None:
    """The DiT config that ``save_dit`` stored in a safetensors file, or None (other files, other writers)."""
    if not str(path).endswith(".safetensors"):
        return None
    try:
        text = load_metadata_from_safetensors(str(path)).get(CONFIG_METADATA_KEY)
        config = None if text is None else json.loads(text)
    except Exception as error:  # safetensors raises its own error type for a damaged header
        raise ValueError(f"{path}: not a readable safetensors file, truncated or corrupt ({error}); download or "
                         "convert it again") from None
    if config is not None and not isinstance(config, dict):
        raise ValueError(f"{path}: its {CONFIG_METADATA_KEY!r} metadata is not a JSON object")
    return config


def layout_difference(found: Mapping[str, Sequence[int]], expected: Mapping[str, Sequence[int]]) -> str:
    """A readable account of the missing / unexpected / reshaped keys between two key -> shape maps ("" if none)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    reshaped = sorted(key for key in set(expected) & set(found) if list(expected[key]) != list(found[key]))
    parts = []
    groups = (("missing keys", missing), ("unexpected keys", unexpected), ("keys of another shape", reshaped))
    for label, keys in groups:
        if keys:
            shown = ", ".join(keys[:10]) + (f" ... ({len(keys)} in all)" if len(keys) > 10 else "")
            parts.append(f"{label}: {shown}")
    return "; ".join(parts)


def config_shapes(config: Mapping[str, Any]) -> dict[str, list[int]]:
    """Parameter name -> shape of a ``DualCamCtrlDiT(**config)``, from a meta-device instance."""
    return {key: list(value.shape) for key, value in empty_dit(config).state_dict().items()}


def register_checkpoint(path: str | os.PathLike, config: dict[str, Any] | None = None) -> str:
    """Register a DiT file so that ``ModelPool().auto_load_model(path)`` loads it; returns its hash.

    The config comes from the file's metadata (files written by ``save_dit``), else from ``config``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    stored = read_config_metadata(path)
    if stored is not None and config is not None and normalize_config(config) != normalize_config(stored):
        raise ValueError(f"config argument differs from the config stored in {path}: {stored}")
    config = stored if stored is not None else config
    if config is None:
        raise ValueError(
            f"{path} holds no DualCamCtrl config metadata: pass config= (e.g. diffsynth_dualcam.models.OFFICIAL_CONFIG)"
        )
    config = normalize_config(config)
    model_hash = config_hash(config)
    if hash_model_file(path) != model_hash:
        difference = layout_difference(load_keys_dict(path), config_shapes(config))
        raise ValueError(f"{path} does not have the layout of its DualCamCtrl config: {difference}")
    _set_entry(model_hash, config)
    return model_hash


#: Hash of the released checkpoint's layout, registered on import.
OFFICIAL_HASH = register_config(OFFICIAL_CONFIG)
