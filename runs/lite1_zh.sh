#!/bin/sh
# EfficientNet-Lite1 with the zero-head Lite0 member's recipe (issue 12: a stronger third ensemble member?).
# Resumes from runs/lite1-zerohead/training/backup if interrupted.
set -e
. .venv/bin/activate
date
nice -n 5 python -m skin_core train --backbone EfficientNetLite1 --init runs/pretrained/efficientnet_lite1_imagenet_notop.weights.h5 \
    --preprocessing tf --data ../shared/data/ham10000 --isic2017 ../shared/data/isic2017 --image-size 192 --colour-constancy 6 \
    --augmentation paper-photometric --monitor-metadata unknown --blank-probability 0.25 --lr-schedule cosine \
    --learning-rate 1e-3 --adam-epsilon 0.1 --epochs 9 --patience 9 --zero-head --out runs/lite1-zerohead
date
