"""Flow-matching losses of the two branches."""
from __future__ import annotations

import torch


def drop_topk_mse(prediction: torch.Tensor, target: torch.Tensor, drop_topk: int = 0) -> torch.Tensor:
    """Mean squared error with the ``drop_topk`` largest per-element squared errors of each sample set to zero.

    The mean is still over every element, so dropping only removes the outliers' gradient and leaves the scale
    of the loss unchanged. Computed in float32.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {list(prediction.shape)} and target {list(target.shape)} differ in shape")
    if drop_topk < 0:
        raise ValueError(f"drop_topk must be >= 0, got {drop_topk}")
    squared_error = (prediction.float() - target.float()).square().flatten(1)  # [B, N]
    if drop_topk > 0:
        if drop_topk >= squared_error.shape[1]:
            raise ValueError(f"drop_topk={drop_topk} would drop every one of the {squared_error.shape[1]} elements")
        largest = squared_error.detach().topk(drop_topk, dim=1).indices
        squared_error = squared_error.scatter(1, largest, 0.0)
    return squared_error.mean()


def dual_flow_matching_loss(
    rgb_velocity: torch.Tensor,
    depth_velocity: torch.Tensor,
    rgb_target: torch.Tensor,
    depth_target: torch.Tensor,
    weight: torch.Tensor | float,
    drop_loss_topk: int = 0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """``weight * (MSE(rgb) + MSE_drop_topk(depth))`` and the two unweighted terms for logging."""
    rgb_loss = drop_topk_mse(rgb_velocity, rgb_target)
    depth_loss = drop_topk_mse(depth_velocity, depth_target, drop_loss_topk)
    loss = (rgb_loss + depth_loss) * weight
    return loss, {"rgb_loss": rgb_loss.item(), "depth_loss": depth_loss.item()}
