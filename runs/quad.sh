#!/bin/sh
# Four members: the served three plus the zero-head Lite0; build, referral (with ISIC 2017 val), val metrics.
set -e
. .venv/bin/activate
while pgrep -f "skin_core evaluate weights/mobilenetv2-lite0zh" > /dev/null; do sleep 10; done
E=weights/mobilenetv2-lite0x2-192-ensemble
date
python -m skin_core ensemble weights/mobilenetv2-192 weights/mobilenetv2-192-robust weights/efficientnetlite0-192 weights/efficientnetlite0-192-zerohead --out $E --views 4 --data ../shared/data/ham10000
date
python -m skin_core referral $E --data ../shared/data/ham10000 --isic2017 ../shared/data/isic2017
date
python -m skin_core evaluate $E --data ../shared/data/ham10000 --split val
date
