#!/bin/sh
# Function matching on a lent GPU (device `run`; JAX there, no TensorFlow). The working tree that travels
# must stay under 64 MiB: `prepare` zips the HAM10000 train images (27 MB) into .fm/, downloads the
# wheels the GPU image lacks into .whl/ (keras, namex, optree, fpdf2, defusedxml; 3 MB) and takes the two
# bundles the run does not need (26 MB) out of the tree and the index; `restore` puts them back.
# Then call device `run` with carry [".fm", ".whl", "runs/function_matching"] and the command printed by
# `command` (its files come back under $OUT/fm/training: student.weights.h5, history.csv, plan.json).
# First attempt (2026-12-04, runs/function_matching/gpu_attempt_1204.log): epoch 1 took 432 s (XLA compile
# and autotuning, likely twice: the last batch of 63 had another shape; only full batches now), so one
# epoch ran. The command below turns XLA's autotuning off (untested: it may cost step speed).
set -e
cd "$(dirname "$0")/../.."
ASIDE=/tmp/fm_aside
case "$1" in
prepare)
  . .venv/bin/activate
  mkdir -p .fm "$ASIDE"
  python - <<'PY'
import zipfile
from pathlib import Path
from skin_core import data
rows = data.split_table(data.read_ham10000("../shared/data/ham10000"), "train")
raw = (Path("../shared/data/ham10000") / data.METADATA_FILE).read_text().splitlines()
keep = set(rows["image_id"])
with zipfile.ZipFile(".fm/ham10000_train.zip", "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("ham10000/" + data.METADATA_FILE, "\n".join([raw[0], *(l for l in raw[1:] if l.split(",")[1] in keep)]) + "\n")
    for p in rows["path"]:
        z.write(p, "ham10000/images/" + p.name)
PY
  python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
    keras==3.15.1 namex==0.1.0 optree==0.20.0 fpdf2==2.8.9 defusedxml==0.7.1
  for b in weights/mobilenetv3large-160 runs/efficientnetlite0-192-zerohead; do
    mv "$b" "$ASIDE/" && git rm -r -q --cached "$b"; done ;;
restore)
  for b in weights/mobilenetv3large-160 runs/efficientnetlite0-192-zerohead; do
    mv "$ASIDE/$(basename "$b")" "$(dirname "$b")/" && git reset -q HEAD -- "$b"; done ;;
command)
  cat <<'CMD'
set -o pipefail; python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3; python3 -m zipfile -e .fm/ham10000_train.zip /tmp/fm || exit 4; export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1 XLA_FLAGS=--xla_gpu_autotune_level=0; timeout 550 python3 runs/function_matching/no_tensorflow.py distill --teacher weights/mobilenetv2-lite0-192-ensemble --backbone MobileNetV3Large --data /tmp/fm/ham10000 --out $OUT/fm --minutes 8.1 --batch-size 256 --train-only 2>&1 | grep -v "^I0000\|^W0000\|^WARNING: All" | tee $OUT/log.txt
CMD
  ;;
*) echo "usage: $0 prepare|restore|command"; exit 2 ;;
esac
