#!/bin/sh
# Third member replaced by the zero-head Lite0: build, referral (with ISIC 2017 val), val metrics.
set -e
. .venv/bin/activate
E=weights/mobilenetv2-lite0zh-192-ensemble
date
python -m skin_core ensemble weights/mobilenetv2-192 weights/mobilenetv2-192-robust weights/efficientnetlite0-192-zerohead --out $E --views 4 --data ../shared/data/ham10000
date
python -m skin_core referral $E --data ../shared/data/ham10000 --isic2017 ../shared/data/isic2017
date
python -m skin_core evaluate $E --data ../shared/data/ham10000 --split val
date
