"""A small ray-cast scene with known geometry, to test pose estimation against ground truth.

The scene is a textured room (seen from inside) holding a few textured boxes. Every face carries a tileable
multi-scale noise texture, which gives SIFT plenty of stable blobs at every scale; faces differ in brightness so
that edges show. Rendering is vectorised numpy: one ray per sub-pixel, slab intersection with every box.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter
from tqdm.auto import tqdm

from diffsynth_dualcam.camera import CameraTrajectory

# Axis-aligned boxes as (lower corner, upper corner), OpenCV world axes (y down). A camera at the origin looking
# along +z sees the far wall at depth 8 and boxes between depth 2 and 6.
DEFAULT_ROOM = ((-4.0, -2.0, -4.0), (4.0, 1.5, 8.0))
DEFAULT_BOXES = (
    ((-1.8, 0.1, 2.9), (-0.6, 1.5, 4.1)),
    ((0.6, -0.5, 4.3), (2.0, 1.5, 5.7)),
    ((-0.1, -1.1, 2.2), (0.5, -0.5, 2.8)),
)


@dataclass
class SyntheticRender:
    """Rendered clip: ``frames`` uint8 [F, H, W, 3] and ``depth`` float32 [F, H, W] (camera z, scene units)."""

    frames: np.ndarray
    depth: np.ndarray


def noise_texture(size: int, rng: np.random.Generator, sigmas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)) -> np.ndarray:
    """Tileable colour texture [size, size, 3] in [0, 1]: white noise blurred at several scales, each band
    normalised to unit variance and summed, so that features exist at every scale."""
    texture = np.zeros((size, size, 3))
    for sigma in sigmas:
        band = gaussian_filter(rng.standard_normal((size, size, 3)), sigma=(sigma, sigma, 0), mode="wrap")
        texture += band / band.std()
    texture = (texture - texture.mean()) / (3.0 * texture.std())
    return np.clip(texture + 0.5, 0.0, 1.0)


class SyntheticScene:
    """A textured room with boxes inside; ``render`` draws it from any trajectory whose cameras stay inside the
    room and outside the boxes.

    Args:
        seed: seed of the textures and face brightness.
        room: (lower, upper) corners of the room, seen from inside.
        boxes: (lower, upper) corners of each solid box.
        texture_size: side of each face texture in texels (textures tile).
        texels_per_unit: texture density; 64 puts about one texel per pixel at depth 3 for a 256-pixel image.
    """

    def __init__(
        self,
        seed: int = 0,
        room: tuple = DEFAULT_ROOM,
        boxes: tuple = DEFAULT_BOXES,
        texture_size: int = 256,
        texels_per_unit: float = 64.0,
    ) -> None:
        self.room = np.asarray(room, dtype=np.float64)
        self.boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 2, 3)
        if np.any(self.room[1] <= self.room[0]) or np.any(self.boxes[:, 1] <= self.boxes[:, 0]):
            raise ValueError("room and boxes need every upper corner coordinate above the lower one")
        rng = np.random.default_rng(seed)
        num_faces = 6 * (1 + len(self.boxes))
        self.textures = np.stack([noise_texture(texture_size, rng) for _ in range(num_faces)]).astype(np.float32)
        self.face_brightness = rng.uniform(0.55, 1.0, size=num_faces).astype(np.float32)
        self.texels_per_unit = texels_per_unit

    def render(
        self,
        trajectory: CameraTrajectory,
        *,
        width: int = 256,
        height: int = 256,
        supersample: int = 2,
        progress: bool = False,
    ) -> SyntheticRender:
        """Draw every camera of ``trajectory`` (``c2w`` [F,4,4] OpenCV, ``intrinsics`` [F,4] normalised)."""
        if height <= 0 or width <= 0 or supersample <= 0:
            raise ValueError(f"height, width and supersample must be positive, got {height}, {width}, {supersample}")
        c2w = np.asarray(trajectory.c2w, dtype=np.float64)
        intrinsics = np.asarray(trajectory.intrinsics, dtype=np.float64)
        frames = np.empty((len(c2w), height, width, 3), dtype=np.uint8)
        depth = np.empty((len(c2w), height, width), dtype=np.float32)
        for index in tqdm(range(len(c2w)), desc="render", disable=not progress):
            colour, z = self._render_view(c2w[index], intrinsics[index], supersample, width=width, height=height)
            frames[index] = np.round(colour * 255.0).astype(np.uint8)
            depth[index] = z
        return SyntheticRender(frames=frames, depth=depth)

    def _render_view(
        self, c2w: np.ndarray, intrinsics: np.ndarray, supersample: int, *, width: int, height: int
    ) -> tuple[np.ndarray, np.ndarray]:
        fx, fy, cx, cy = intrinsics * np.array([width, height, width, height])
        offsets = (np.arange(supersample) + 0.5) / supersample
        u = (np.arange(width)[:, None] + offsets[None]).reshape(-1)
        v = (np.arange(height)[:, None] + offsets[None]).reshape(-1)
        vv, uu = np.meshgrid(v, u, indexing="ij")
        # Camera-space directions with z = 1, so the ray parameter of a hit is its depth.
        directions_camera = np.stack([(uu - cx) / fx, (vv - cy) / fy, np.ones_like(uu)], axis=-1).reshape(-1, 3)
        directions = directions_camera @ c2w[:3, :3].T
        origin = c2w[:3, 3]
        if np.any(origin <= self.room[0]) or np.any(origin >= self.room[1]):
            raise ValueError(f"camera centre {origin.tolist()} lies outside the room {self.room.tolist()}")

        with np.errstate(divide="ignore", invalid="ignore"):
            inverse = 1.0 / directions
            t_lower = (self.room[0] - origin) * inverse
            t_upper = (self.room[1] - origin) * inverse
        t_far = np.maximum(t_lower, t_upper)
        hit_axis = np.argmin(t_far, axis=1)
        hit_t = t_far[np.arange(len(t_far)), hit_axis]
        hit_face = 2 * hit_axis + (directions[np.arange(len(directions)), hit_axis] > 0)

        for box_index, (lower, upper) in enumerate(self.boxes):
            if np.all(origin > lower) and np.all(origin < upper):
                raise ValueError(f"camera centre {origin.tolist()} lies inside box {box_index}")
            with np.errstate(invalid="ignore"):
                t_lower = (lower - origin) * inverse
                t_upper = (upper - origin) * inverse
            t_near = np.minimum(t_lower, t_upper)
            entry_axis = np.argmax(t_near, axis=1)
            t_entry = t_near[np.arange(len(t_near)), entry_axis]
            t_exit = np.min(np.maximum(t_lower, t_upper), axis=1)
            closer = (t_entry > 0) & (t_entry <= t_exit) & (t_entry < hit_t)
            hit_t = np.where(closer, t_entry, hit_t)
            # A ray entering through the lower face of an axis travels towards +axis.
            entry_face = 6 * (box_index + 1) + 2 * entry_axis + (directions[np.arange(len(directions)), entry_axis] < 0)
            hit_face = np.where(closer, entry_face, hit_face)

        points = origin + hit_t[:, None] * directions
        axis = (hit_face % 6) // 2
        # Texture coordinates: the two world coordinates along the face.
        first = np.where(axis == 0, points[:, 1], points[:, 0])
        second = np.where(axis == 2, points[:, 1], points[:, 2])
        colour = self._sample(hit_face, first * self.texels_per_unit, second * self.texels_per_unit)
        colour *= self.face_brightness[hit_face][:, None]
        colour = colour.reshape(height, supersample, width, supersample, 3).mean(axis=(1, 3))
        depth = hit_t.reshape(height, supersample, width, supersample).mean(axis=(1, 3))
        return colour, depth

    def _sample(self, face: np.ndarray, row: np.ndarray, column: np.ndarray) -> np.ndarray:
        """Bilinear, wrapping texture lookup at fractional texel coordinates."""
        size = self.textures.shape[1]
        row0, column0 = np.floor(row), np.floor(column)
        row_weight, column_weight = (row - row0)[:, None], (column - column0)[:, None]
        r0, c0 = row0.astype(np.int64) % size, column0.astype(np.int64) % size
        r1, c1 = (r0 + 1) % size, (c0 + 1) % size
        texture = self.textures
        top = texture[face, r0, c0] * (1 - column_weight) + texture[face, r0, c1] * column_weight
        bottom = texture[face, r1, c0] * (1 - column_weight) + texture[face, r1, c1] * column_weight
        return top * (1 - row_weight) + bottom * row_weight
