#!/bin/sh
# The zero-head Lite0 member's own measures (as every shipped network has them).
set -e
. .venv/bin/activate
B=weights/efficientnetlite0-192-zerohead
D=../shared/data/ham10000
for step in "referral $B --data $D --isic2017 ../shared/data/isic2017" "evaluate $B --data $D --split val" \
            "evaluate $B --data $D --split test --shifts" "external $B --data ../shared/data" "fit-ood $B --data $D" \
            "tta $B --data $D" "heatmaps $B --data $D --limit 150"; do
  date; echo "== $step"; python -m skin_core $step
done
date
