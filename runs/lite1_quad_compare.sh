#!/bin/sh
# Does Lite1 add anything beside the zero-head Lite0 (pair + both)? val, one view, metadata unknown.
set -e
. .venv/bin/activate
date
python -m skin_core compare weights/mobilenetv2-192 weights/mobilenetv2-192-robust runs/efficientnetlite0-192-zerohead runs/lite1-zerohead --data ../shared/data/ham10000 --out runs/lite1-zerohead/compare_quad_val.json
date
