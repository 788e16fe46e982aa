#!/bin/sh
# Function matching on this 2-core CPU (TensorFlow backend), resumable: rerun the same line to continue
# (from OUT/training/backup on this machine, else from the committed student weights and history).
# Warm start from the 160 px MobileNetV3Large student: from scratch, 3 epochs (~10 min each) left validation
# balanced accuracy at chance (runs/function_matching/scratch_cpu_1204_history.csv; README).
cd "$(dirname "$0")/../.." && . .venv/bin/activate
exec sh -c 'echo 19 > /proc/self/autogroup 2>/dev/null; exec nice -n 19 "$@"' -- python -m skin_core distill --teacher weights/mobilenetv2-lite0-192-ensemble \
  --backbone MobileNetV3Large --warm-start weights/mobilenetv3large-160 --data ../shared/data/ham10000 \
  --out runs/fm-mobilenetv3large-192-warm --epochs 60 --batch-size 64 --learning-rate 5e-4 --train-only
