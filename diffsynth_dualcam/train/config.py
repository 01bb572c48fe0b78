"""Training configuration: a YAML or JSON file with the sections ``data``, ``model``, ``train`` and ``validation``."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io import atomic_write

STAGES = ("decoupled", "fusion")
TRAINABLE = ("full", "blocks", "lora", "fusion")
LORA_BRANCHES = ("rgb", "depth", "both")
LAYOUTS = ("realestate10k", "dl3dv")
MIXED_PRECISION = ("no", "bf16", "fp16")


@dataclass
class DataConfig:
    """Where the clips are and how items are cut from them."""

    root: str = ""
    layout: str = "realestate10k"
    height: int = 480
    width: int = 720
    num_frames: int = 49
    stride: int = 1
    min_stride: int = 1
    flip_probability: float = 0.5
    use_captions: bool = True
    num_workers: int = 2


@dataclass
class ModelPaths:
    """Model files. ``dit`` is a DualCamCtrl checkpoint (safetensors written by this package); for the first
    stage ``wan_camera_dit`` may instead name the Wan2.1-Fun camera DiT the depth branch is copied from.
    ``tiny_seed`` builds the package's tiny random models instead of loading the Wan files (``wan_camera_dit``,
    ``text_encoder``, ``vae``, ``image_encoder``, ``tokenizer`` are then ignored); ``dit`` is still loaded when
    given (a smoke run's stage 2 starts from its stage 1)."""

    dit: str | None = None
    wan_camera_dit: str | None = None
    text_encoder: str | None = None
    vae: str | None = None
    image_encoder: str | None = None
    tokenizer: str | None = None
    tiny_seed: int | None = None


@dataclass
class OptimConfig:
    """The recipe: stage, what trains, loss options and optimisation.

    ``max_grad_norm`` clips the gradient norm of the trained parameters at every optimizer step (0 or null: no
    clipping). ``fixed_noise_seed`` draws the same timestep and noise at every step (a fixed objective, to check
    that a run can fit one repeated clip); leave it null for training.
    """

    stage: str = "decoupled"
    trainable: str = "full"
    lora_branch: str = "both"
    lora_rank: int = 32
    lora_target_modules: str = "q,k,v,o,ffn.0,ffn.2"
    train_fusion_with_lora: bool = True
    learning_rate: float = 3e-6
    weight_decay: float = 0.01
    max_steps: int = 10000
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "bf16"
    use_gradient_checkpointing: bool = True
    use_gradient_checkpointing_offload: bool = False
    drop_loss_topk: int = 0
    share_noise: bool = True
    min_timestep_boundary: float = 0.0
    max_timestep_boundary: float = 1.0
    max_grad_norm: float | None = 1.0
    fixed_noise_seed: int | None = None
    seed: int = 0
    output_dir: str = "runs/dualcam"
    save_steps: int = 1000


@dataclass
class ValidationConfig:
    """Periodic validation videos every ``every_steps`` (0: none), from ``image``, ``depth`` and ``camera``
    (a trajectory file or a preset name) when an image is given, else from the first clip of the dataset."""

    every_steps: int = 0
    image: str | None = None
    depth: str | None = None
    camera: str = "orbit_left"
    prompt: str = ""
    negative_prompt: str = ""
    height: int = 320
    width: int = 480
    num_frames: int = 25
    num_inference_steps: int = 30
    cfg_scale: float = 6.0
    seed: int = 42
    fps: int = 10


@dataclass
class TrainConfig:
    """Everything ``dualcam train`` needs."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelPaths = field(default_factory=ModelPaths)
    train: OptimConfig = field(default_factory=OptimConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def validate(self) -> TrainConfig:
        """Check the values that must agree with each other; raise ValueError naming the key."""
        if self.train.mixed_precision is False:  # YAML reads a bare `no` as false
            self.train.mixed_precision = "no"
        _choice("data.layout", self.data.layout, LAYOUTS)
        _choice("train.stage", self.train.stage, STAGES)
        _choice("train.trainable", self.train.trainable, TRAINABLE)
        _choice("train.lora_branch", self.train.lora_branch, LORA_BRANCHES)
        _choice("train.mixed_precision", self.train.mixed_precision, MIXED_PRECISION)
        if not self.data.root:
            raise ValueError("data.root: the dataset folder is required")
        if self.data.height % 16 or self.data.width % 16:
            raise ValueError(f"data.width/height must be multiples of 16, got {self.data.width}x{self.data.height}")
        if (self.data.num_frames - 1) % 4:
            raise ValueError(f"data.num_frames must be 4k+1, got {self.data.num_frames}")
        if not 1 <= self.data.min_stride <= self.data.stride:
            raise ValueError(f"data.min_stride must be between 1 and data.stride={self.data.stride}, "
                             f"got {self.data.min_stride}")
        if self.train.trainable == "fusion" and self.train.stage != "fusion":
            raise ValueError("train.trainable = 'fusion' needs train.stage = 'fusion' (stage 1 has no fusion modules)")
        if self.train.max_steps < 1 or self.train.gradient_accumulation_steps < 1:
            raise ValueError("train.max_steps and train.gradient_accumulation_steps must be >= 1")
        norm = self.train.max_grad_norm
        if norm is not None and not (isinstance(norm, (int, float)) and norm >= 0):
            raise ValueError(f"train.max_grad_norm must be a number >= 0 (0 or null: no clipping), got {norm!r}")
        seed = self.train.fixed_noise_seed
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise ValueError(f"train.fixed_noise_seed must be null or an integer >= 0, got {seed!r}")
        if self.train.drop_loss_topk < 0:
            raise ValueError(f"train.drop_loss_topk must be >= 0, got {self.train.drop_loss_topk}")
        if not 0.0 <= self.train.min_timestep_boundary < self.train.max_timestep_boundary <= 1.0:
            raise ValueError("train.min_timestep_boundary < train.max_timestep_boundary must lie in [0, 1]")
        if self.model.tiny_seed is None:
            if self.model.dit is None and self.model.wan_camera_dit is None:
                raise ValueError("model.dit or model.wan_camera_dit is required (or model.tiny_seed for a smoke run)")
            if self.model.dit is None and self.train.stage == "fusion":
                raise ValueError("train.stage = 'fusion' starts from a DualCamCtrl checkpoint: set model.dit")
            for key in ("text_encoder", "vae", "image_encoder", "tokenizer"):
                if getattr(self.model, key) is None:
                    raise ValueError(f"model.{key} is required")
        if (self.validation.num_frames - 1) % 4:
            raise ValueError(f"validation.num_frames must be 4k+1, got {self.validation.num_frames}")
        if self.validation.height % 16 or self.validation.width % 16:
            raise ValueError(f"validation.width/height must be multiples of 16, got "
                             f"{self.validation.width}x{self.validation.height}")
        if self.validation.num_inference_steps < 1:
            raise ValueError(f"validation.num_inference_steps must be >= 1, got {self.validation.num_inference_steps}")
        return self


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{key} must be one of {list(allowed)}, got {value!r}")


def _build(cls: type, values: dict[str, Any], section: str) -> Any:
    if not isinstance(values, dict):
        raise ValueError(f"{section}: expected a mapping, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{section}: unknown keys {unknown}; expected some of {sorted(known)}")
    return cls(**values)


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """A validated ``TrainConfig`` from nested dicts (missing keys take their defaults)."""
    sections = {"data": DataConfig, "model": ModelPaths, "train": OptimConfig, "validation": ValidationConfig}
    unknown = sorted(set(values) - set(sections))
    if unknown:
        raise ValueError(f"unknown config sections {unknown}; expected some of {sorted(sections)}")
    parts = {name: _build(cls, values.get(name, {}) or {}, name) for name, cls in sections.items()}
    return TrainConfig(**parts).validate()


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a ``.yaml``/``.yml``/``.json`` config; ``overrides`` are ``section.key=value`` strings (YAML values)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        values = json.loads(text)
    elif path.suffix in (".yaml", ".yml"):
        values = yaml.safe_load(text) or {}
    else:
        raise ValueError(f"config file {path} must end in .yaml, .yml or .json")
    for override in overrides:
        key, sep, raw = override.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise ValueError(f"override {override!r} must look like section.key=value")
        values.setdefault(section, {})
        if not isinstance(values[section], dict):
            raise ValueError(f"override {override!r}: {section} is not a section")
        values[section][name] = yaml.safe_load(raw)
    return config_from_dict(values)


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write the config as JSON (the record of a run)."""
    atomic_write(path, json.dumps(dataclasses.asdict(config), indent=2, allow_nan=False).encode("utf-8"))
