#!/usr/bin/env bash
# Both stages on 4 GPUs with DeepSpeed ZeRO-2 (effective batch 4 x 2 = 8), as published.
# Other GPU counts: change num_processes in accelerate_zero2.yaml and keep
# num_processes x gradient_accumulation_steps = 8 (set both files' accumulation to the same value).
set -euo pipefail
cd "$(dirname "$0")/../.."
CONFIG=examples/train/accelerate_zero2.yaml
dualcam check-dataset data/realestate10k --num-frames 61 --min-stride 2
accelerate launch --config_file "$CONFIG" -m diffsynth_dualcam train --config examples/train/stage1_decoupled.yaml
accelerate launch --config_file "$CONFIG" -m diffsynth_dualcam train --config examples/train/stage2_fusion.yaml
