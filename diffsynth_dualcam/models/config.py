"""Configuration of the DualCamCtrl DiT: the released checkpoint's values and validation."""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from typing import Any


def fields_signature(fields_of: type, kind: inspect._ParameterKind) -> inspect.Signature:
    """A dataclass's fields as the parameters of a call, of ``kind``, in declaration order, with their defaults (a
    field without one is required)."""
    return inspect.Signature([
        inspect.Parameter(
            item.name, kind, annotation=item.type,
            default=inspect.Parameter.empty if item.default is dataclasses.MISSING else item.default,
        )
        for item in dataclasses.fields(fields_of)
    ])


@dataclasses.dataclass(frozen=True)
class DiTConfig:
    """The arguments of ``DualCamCtrlDiT`` (the reference constructor's names), declared once: the DiT's signature,
    its recorded ``config`` and ``normalize_config`` read them from here. Fields without a default are required.
    ``text_len`` is the text context length of the reference config (Wan pads prompts to 512 tokens); the DiT
    accepts a context of any length. A block list of None means no blocks (the reference accepts it)."""

    dim: int
    in_dim: int
    ffn_dim: int
    out_dim: int
    text_dim: int
    freq_dim: int
    eps: float
    patch_size: Sequence[int]
    num_heads: int
    num_layers: int
    has_image_input: bool
    add_control_adapter: bool = False
    in_dim_control_adapter: int = 24
    text_len: int = 512
    rgb_inject_blocks: Sequence[int] | None = ()
    depth_inject_blocks: Sequence[int] | None = ()
    control_block_index: Sequence[int] | None = ()
    use_gate_3d_linear: bool = True
    update: bool = False

    @classmethod
    def signature(cls) -> inspect.Signature:
        """The fields as keyword parameters (the required ones first, as declared)."""
        return fields_signature(cls, inspect.Parameter.KEYWORD_ONLY)

    @classmethod
    def from_keywords(cls, **config: Any) -> DiTConfig:
        """The config of a ``DualCamCtrlDiT(**config)`` call; a TypeError names an unknown or missing key, as a call
        with a written-out signature would."""
        bound = cls.signature().bind(**config)
        bound.apply_defaults()
        return cls(**bound.arguments)


#: Keys every ``DualCamCtrlDiT`` config must hold.
REQUIRED_KEYS = tuple(item.name for item in dataclasses.fields(DiTConfig) if item.default is dataclasses.MISSING)
#: Optional keys and the values they take when absent.
CONFIG_DEFAULTS: dict[str, Any] = {
    item.name: item.default for item in dataclasses.fields(DiTConfig) if item.default is not dataclasses.MISSING
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
