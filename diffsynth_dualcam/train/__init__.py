"""Two-stage training of DualCamCtrl (decoupled, then fusion) on DiffSynth's training framework."""
from .config import TrainConfig, load_config
from .losses import drop_topk_mse, dual_flow_matching_loss
from .module import DualCamTrainingModule, dit_for_stage, merged_dit

__all__ = [
    "DualCamTrainingModule", "TrainConfig", "dit_for_stage", "drop_topk_mse", "dual_flow_matching_loss",
    "load_config", "merged_dit",
]
