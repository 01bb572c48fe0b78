"""Configuration of the DualCamCtrl DiT: the released checkpoint's values and validation."""
from __future__ import annotations

from typing import Any

#: Keys every ``DualCamCtrlDiT`` config must hold (the reference constructor's names).
REQUIRED_KEYS = (
    "dim", "in_dim", "ffn_dim", "out_dim", "text_dim", "freq_dim", "eps", "patch_size", "num_heads", "num_layers",
    "has_image_input",
)
#: Optional keys and the values they take when absent. ``text_len`` is the text context length of the reference
#: config (Wan pads prompts to 512 tokens); the DiT accepts a context of any length.
CONFIG_DEFAULTS: dict[str, Any] = {
    "add_control_adapter": False,
    "in_dim_control_adapter": 24,
    "text_len": 512,
    "rgb_inject_blocks": [],
    "depth_inject_blocks": [],
    "control_block_index": [],
    "use_gate_3d_linear": True,
    "update": False,
}
CONFIG_KEYS = (*REQUIRED_KEYS, *CONFIG_DEFAULTS)

#: The released DualCamCtrl DiT: Wan2.1-Fun-V1.1-1.3B-Control-Camera plus 30 depth blocks and 15 fusion modules.
OFFICIAL_CONFIG: dict[str, Any] = {
    "dim": 1536,
    "in_dim": 32,
    "ffn_dim": 8960,
    "out_dim": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "eps": 1e-6,
    "patch_size": [1, 2, 2],
    "num_heads": 12,
    "num_layers": 30,
    "has_image_input": True,
    "add_control_adapter": True,
    "in_dim_control_adapter": 24,
    "text_len": 512,
    "control_block_index": list(range(30)),
    "rgb_inject_blocks": [0, 1, 2, 3, 4],
    "depth_inject_blocks": list(range(5, 15)),
    "use_gate_3d_linear": True,
    "update": False,
}


def normalize_config(config: dict[str, Any]) -> dict[str, Any]:
    """A complete JSON-friendly copy of ``config``: defaults filled in, lists of plain ints.

    Two configs that build the same model normalise to equal dicts. Raises ValueError on unknown or missing keys.
    """
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"unknown DualCamCtrlDiT config keys {unknown}; expected a subset of {list(CONFIG_KEYS)}")
    missing = [key for key in REQUIRED_KEYS if key not in config]
    if missing:
        raise ValueError(f"DualCamCtrlDiT config lacks the keys {missing}")
    normalized = {**CONFIG_DEFAULTS, **config}
    normalized["patch_size"] = [int(value) for value in normalized["patch_size"]]
    for key in ("rgb_inject_blocks", "depth_inject_blocks", "control_block_index"):
        normalized[key] = [int(value) for value in normalized[key] or ()]  # the reference accepts None for none
    return normalized

#: A tiny DiT of the same structure (48 channels, 2 heads of 24, 4 layers) for tests and quick examples.
TINY_CONFIG: dict[str, Any] = {
    **OFFICIAL_CONFIG,
    "dim": 48,
    "ffn_dim": 96,
    "text_dim": 32,
    "freq_dim": 32,
    "num_heads": 2,
    "num_layers": 4,
    "control_block_index": [0, 1, 2, 3],
    "rgb_inject_blocks": [0, 1],
    "depth_inject_blocks": [1, 2],
}
