"""Plücker ray embeddings of camera poses, and their packing onto Wan latent frames."""
from __future__ import annotations

import numpy as np
import torch


def plucker_embedding(
    c2w: np.ndarray,
    pixel_intrinsics: np.ndarray,
    *,
    width: int,
    height: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Plücker map ``cat(o x d, d)`` of every pixel centre: [6, F, H, W].

    ``c2w`` is [F, 4, 4] camera-to-world (OpenCV axes) and ``pixel_intrinsics`` [F, 4] holds fx, fy, cx, cy in
    pixels. ``d`` is the unit ray through pixel centre (u + 0.5, v + 0.5) in world axes and ``o`` the camera centre.
    """
    dtype = dtype or torch.float32
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch dtype, got {dtype}")
    compute_dtype = torch.float64 if dtype == torch.float64 else torch.float32  # half types only for the result
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be positive, got height={height}, width={width}")
    c2w = np.asarray(c2w, dtype=np.float64)
    pixel_intrinsics = np.asarray(pixel_intrinsics, dtype=np.float64)
    rotation, centre = c2w[:, :3, :3], c2w[:, :3, 3]
    # Before normalisation the camera-space ray is (a_u, b_v, 1) with a_u = (u + 0.5 - cx) / fx and
    # b_v = (v + 0.5 - cy) / fy, so in world axes d = (a_u R[:, 0] + b_v R[:, 1] + R[:, 2]) / |(a_u, b_v, 1)| and
    # o x d has the same form with o x R[:, k]. Every channel is therefore (C0 a_u + C1 b_v + C2) / |(a_u, b_v, 1)|
    # with per-frame coefficients C: the broadcast sum of a [6, F, W] term in u and a [6, F, H] term in v writes the
    # output once, and one in-place multiply by the inverse norms finishes it. Fresh memory costs page faults, so
    # the only large buffers are the output and, when the intrinsics change per frame (a zoom), the [F, H, W]
    # inverse norms. Elementwise products rather than a matmul keep full float32 precision even where TF32 is on.
    direction_coefficients = rotation.transpose(0, 2, 1)  # [F, k, xyz]: column k of R
    moment_coefficients = np.cross(centre[:, None, :], direction_coefficients)  # [F, k, xyz]: o x R[:, k]
    coefficients = np.concatenate([moment_coefficients, direction_coefficients], axis=2).transpose(2, 0, 1)  # [6,F,3]
    coefficients = torch.from_numpy(np.ascontiguousarray(coefficients)).to(device=device, dtype=compute_dtype)

    fx, fy, cx, cy = (torch.from_numpy(pixel_intrinsics[:, i]).to(device=device, dtype=compute_dtype) for i in range(4))
    columns = torch.arange(width, device=device, dtype=compute_dtype) + 0.5
    rows = torch.arange(height, device=device, dtype=compute_dtype) + 0.5
    if (pixel_intrinsics == pixel_intrinsics[:1]).all():  # one set of rays serves every frame
        fx, fy, cx, cy = fx[:1], fy[:1], cx[:1], cy[:1]
    a = (columns[None, :] - cx[:, None]) / fx[:, None]  # [F or 1, W]
    b = (rows[None, :] - cy[:, None]) / fy[:, None]  # [F or 1, H]
    inverse_norm = torch.add((a * a)[:, None, :], (b * b + 1.0)[:, :, None]).rsqrt_()  # [F or 1, H, W]
    c0, c1, c2 = coefficients.unbind(dim=2)  # [6, F] each
    u_term = torch.addcmul(c2[..., None], c0[..., None], a)  # [6, F, W]: C2 + C0 a_u
    v_term = c1[..., None] * b  # [6, F, H]: C1 b_v
    embedding = torch.add(u_term[:, :, None, :], v_term[:, :, :, None])  # [6, F, H, W]
    return embedding.mul_(inverse_norm).to(dtype)


def pack_plucker(plucker: torch.Tensor) -> torch.Tensor:
    """Pack a [6, F, H, W] Plücker map (F = 4k + 1) onto latent frames: [24, k + 1, H, W].

    Frame 0 is repeated four times (4k + 4 frames), frames are grouped by four and channel ``4 * c + t`` holds
    Plücker channel ``c`` of the ``t``-th frame of the group.
    """
    if plucker.ndim != 4 or plucker.shape[0] != 6:
        raise ValueError(f"plucker must have shape [6, F, H, W], got {list(plucker.shape)}")
    num_frames, height, width = plucker.shape[1:]
    if num_frames % 4 != 1:
        below = num_frames - (num_frames - 1) % 4
        raise ValueError(
            f"plucker must have 4k+1 frames to pack onto latent frames, got {num_frames} "
            f"(nearest valid counts: {max(below, 1)} and {below + 4})"
        )
    num_latent_frames = (num_frames - 1) // 4 + 1
    # Position t of latent frame g holds video frame max(0, 4g + t - 3): strided copies, no padded intermediate.
    packed = plucker.new_empty(6, 4, num_latent_frames, height, width)
    packed[:, 3] = plucker[:, 0::4]
    for position in range(3):
        packed[:, position, 0] = plucker[:, 0]
        packed[:, position, 1:] = plucker[:, position + 1::4]
    return packed.reshape(24, num_latent_frames, height, width)
