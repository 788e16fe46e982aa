#!/bin/sh
# After runs/lite1_zh.sh: the Lite1 member alone and as the served pair's third member (val, one view, metadata unknown).
set -e
. .venv/bin/activate
while pgrep -f "runs/lite1_zh.sh" >/dev/null; do sleep 20; done
date
python -m skin_core compare weights/mobilenetv2-192 weights/mobilenetv2-192-robust runs/lite1-zerohead --data ../shared/data/ham10000 --out runs/lite1-zerohead/compare_val.json
date
