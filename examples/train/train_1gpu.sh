#!/usr/bin/env bash
# Both stages on one GPU; effective batch 8 through 8 accumulated micro-batches.
set -euo pipefail
cd "$(dirname "$0")/../.."
dualcam check-dataset data/realestate10k --num-frames 61 --min-stride 2
dualcam train --config examples/train/stage1_decoupled.yaml --set train.gradient_accumulation_steps=8
dualcam train --config examples/train/stage2_fusion.yaml --set train.gradient_accumulation_steps=8
