"""The training item shared by every dataset layout: RGB clip, depth clip, packed Plücker map and prompt."""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..camera import CameraTrajectory, pack_plucker
from ..camera.trajectory import aspects_differ
from .frames import FrameSource
from .transforms import cover_crop_frames, mirror_trajectory, sample_clip_indices

#: Captions file name: in the dataset folder ``{clip name: caption}``; in a clip folder, as published,
#: ``{frame index: caption}`` (a caption every 60 frames, e.g. ``{"0": "...", "60": "..."}``).
CAPTIONS_FILE = "captions.json"


@dataclass
class ClipFiles:
    """One opened clip: frame sources, one camera per usable frame, and its captions.

    ``frame_ids[i]`` is the index in ``rgb`` and ``depth`` of the frame that camera ``i`` belongs to.
    ``prompt`` is the clip's caption from the dataset's ``captions.json``; ``frame_captions`` maps RGB frame
    indices to the captions of the clip's own ``captions.json`` (see ``prompt_for``).
    """

    name: str
    rgb: FrameSource
    depth: FrameSource
    camera: CameraTrajectory
    frame_ids: np.ndarray
    prompt: str = ""
    frame_captions: dict[int, str] = field(default_factory=dict)

    def prompt_for(self, frame_ids: np.ndarray) -> str:
        """The prompt of a sample made of RGB frames ``frame_ids``: the clip's caption from the dataset's
        ``captions.json`` if it has one, else the per-frame caption of the last captioned frame at or before the
        sample's last frame (the first captioned frame when none is), else an empty prompt."""
        if self.prompt or not self.frame_captions:
            return self.prompt
        captioned = sorted(self.frame_captions)
        before = [index for index in captioned if index <= int(frame_ids[-1])]
        return self.frame_captions[before[-1] if before else captioned[0]]


def load_captions(root: str | Path) -> dict[str, str]:
    """The ``captions.json`` of a dataset folder ({clip name: caption}), or an empty dict when there is none."""
    path = Path(root) / CAPTIONS_FILE
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as file:
        captions = json.load(file)
    if not isinstance(captions, dict) or not all(isinstance(v, str) for v in captions.values()):
        raise ValueError(f"{path}: expected a JSON object mapping clip names to caption strings")
    return captions


def load_frame_captions(folder: str | Path) -> dict[int, str]:
    """The published per-clip ``captions.json`` of a clip folder ({"frame index": caption}) with integer keys, or
    an empty dict when the folder has none; raises ValueError naming the clip if the file has another form."""
    folder = Path(folder)
    path = folder / CAPTIONS_FILE
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as file:
        captions = json.load(file)
    if (not isinstance(captions, dict) or not all(isinstance(v, str) for v in captions.values())
            or not all(isinstance(k, str) and k.isascii() and k.isdigit() for k in captions)):
        raise ValueError(f"clip {folder.name!r}: {path}: expected a JSON object mapping frame indices "
                         '("0", "60", ...) to caption strings')
    return {int(key): value for key, value in captions.items()}


def aspect_mismatch(rgb_shape: tuple[int, ...], depth_shape: tuple[int, ...]) -> str | None:
    """A description of the problem when RGB and depth frames ([F, H, W, C]) differ in aspect ratio, else None.

    Both are scaled to cover the training size and centre-cropped, so depth of another aspect ratio would be
    cropped differently from the RGB frames and no longer line up with them.
    """
    if not aspects_differ((rgb_shape[2], rgb_shape[1]), (depth_shape[2], depth_shape[1])):
        return None
    return (f"depth frames are {depth_shape[2]}x{depth_shape[1]}, RGB frames {rgb_shape[2]}x{rgb_shape[1]}: "
            "the aspect ratios differ")


class CameraClipDataset(torch.utils.data.Dataset, ABC):
    """Random camera-annotated clips of a dataset folder, cropped to one size, optionally mirrored.

    Subclasses list the clips (``clip_names``) and open one (``open_clip``); this class samples ``num_frames``
    frames ``stride`` apart (less for short clips, never below ``min_stride``), resizes to cover width x height
    with a centre crop, flips horizontally with probability ``flip_probability`` and builds the Plücker map
    relative to the first sampled frame.
    ``num_samples`` fixes the length of an epoch (default: one item per clip); clips are visited round-robin.
    ``seed`` makes item ``index`` a function of (seed, index) alone (so a resumed training run reads the same items
    as an uninterrupted one); without it each item draws from torch's global generator.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        width: int = 720,
        height: int = 480,
        num_frames: int = 49,
        stride: int = 1,
        flip_probability: float = 0.5,
        use_captions: bool = True,
        num_samples: int | None = None,
        min_stride: int = 1,
        seed: int | None = None,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder {self.root} does not exist")
        if height % 16 or width % 16:
            raise ValueError(f"width and height must be multiples of 16, got {width}x{height}")
        if not 0.0 <= flip_probability <= 1.0:
            raise ValueError(f"flip_probability must be in [0, 1], got {flip_probability}")
        if not 1 <= min_stride <= stride:
            raise ValueError(f"min_stride must be between 1 and stride={stride}, got {min_stride}")
        self.height, self.width = height, width
        self.num_frames, self.stride, self.min_stride = num_frames, stride, min_stride
        self.flip_probability = flip_probability
        self.use_captions = use_captions
        self.captions = load_captions(self.root) if use_captions else {}
        self.clip_names = self.list_clips()
        if not self.clip_names:
            raise FileNotFoundError(f"{self.root}: no clips found ({type(self).__name__} layout)")
        self.num_samples = len(self.clip_names) if num_samples is None else num_samples
        self.seed = seed

    @abstractmethod
    def list_clips(self) -> list[str]:
        """Names of the clips in the dataset folder, sorted."""

    @abstractmethod
    def open_clip(self, name: str) -> ClipFiles:
        """Open one clip; raise ValueError / FileNotFoundError naming the clip if its files are missing or disagree."""

    def clip_captions(self, name: str) -> tuple[str, dict[int, str]]:
        """The clip's caption from the dataset's ``captions.json`` and its own per-frame captions (both empty
        when ``use_captions`` is off)."""
        if not self.use_captions:
            return "", {}
        return self.captions.get(name, ""), load_frame_captions(self.root / name)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict:
        if self.seed is not None:
            return self.sample(index, np.random.default_rng([self.seed, index]))
        seed = int(torch.randint(0, 2**62, ()).item())
        return self.sample(index, np.random.default_rng(seed))

    def sample(self, index: int, rng: np.random.Generator, flip: bool | None = None) -> dict:
        """One training item from clip ``index % len(clips)``; ``flip`` forces or forbids the mirror augmentation.

        Returns ``video`` and ``depth`` [3, F, H, W] in [-1, 1] (depth = disparity repeated on 3 channels),
        ``plucker`` [24, (F-1)//4+1, H, W], ``camera`` (the trajectory the Plücker map was built from),
        ``prompt``, ``clip`` and ``frame_ids``.
        """
        clip = self.open_clip(self.clip_names[index % len(self.clip_names)])
        try:
            positions = sample_clip_indices(len(clip.camera), self.num_frames, self.stride, rng, self.min_stride)
        except ValueError as error:
            raise ValueError(f"clip {clip.name!r}: {error}") from error
        frame_ids = clip.frame_ids[positions]
        rgb = clip.rgb.read(frame_ids)
        depth = clip.depth.read(frame_ids)
        mismatch = aspect_mismatch(rgb.shape, depth.shape)
        if mismatch:
            raise ValueError(f"clip {clip.name!r}: {mismatch} ({clip.depth.path}, {clip.rgb.path})")
        video = cover_crop_frames(rgb, width=self.width, height=self.height)
        disparity = cover_crop_frames(depth.mean(axis=-1, keepdims=True).round().astype(np.uint8), width=self.width,
                                      height=self.height)
        camera = CameraTrajectory(c2w=clip.camera.c2w[positions], intrinsics=clip.camera.intrinsics[positions])
        camera = camera.relative().cover_crop((rgb.shape[2], rgb.shape[1]), (self.width, self.height))
        if flip is None:
            flip = bool(rng.random() < self.flip_probability)
        if flip:
            video = video.flip(-1)
            disparity = disparity.flip(-1)
            camera = mirror_trajectory(camera)
        plucker = pack_plucker(camera.plucker(width=self.width, height=self.height, dtype=torch.float32))
        return {
            "video": video,
            "depth": disparity.expand(3, -1, -1, -1).contiguous(),
            "plucker": plucker,
            "camera": camera,
            "prompt": clip.prompt_for(frame_ids),
            "clip": clip.name,
            "frame_ids": frame_ids,
        }


def check_frame_counts(clip: ClipFiles) -> None:
    """Raise ValueError naming the clip when the RGB frames, depth frames and cameras disagree."""
    if len(clip.depth) != len(clip.rgb):
        raise ValueError(f"clip {clip.name!r}: depth has {len(clip.depth)} frames ({clip.depth.path}) but RGB has "
                         f"{len(clip.rgb)} ({clip.rgb.path})")
    if len(clip.frame_ids) != len(clip.camera):
        raise ValueError(f"clip {clip.name!r}: {len(clip.camera)} cameras for {len(clip.frame_ids)} frame ids")
    if len(clip.frame_ids) and (clip.frame_ids.min() < 0 or clip.frame_ids.max() >= len(clip.rgb)):
        raise ValueError(f"clip {clip.name!r}: camera frame ids reach {clip.frame_ids.max()} but the clip has "
                         f"{len(clip.rgb)} frames")
