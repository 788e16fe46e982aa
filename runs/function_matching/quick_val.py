"""Validation balanced accuracy and AUCs of a function-matching student's saved weights, without writing a bundle:
`PYTHONPATH=. python runs/function_matching/quick_val.py OUT/training [--start]` (--start: the weights the run
started from, i.e. its warm start, instead of its current student.weights.h5). Clean HAM10000 val only."""

import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

import skin_core  # noqa: F401  (registers the layers)
from skin_core import data
from skin_core.bundle import ModelBundle
from skin_core.function_matching import DistillConfig, build_student
from skin_core.patient import UNKNOWN_PATIENT

work = Path(sys.argv[1])
config = DistillConfig(**json.loads((work / "config.json").read_text()))
student = build_student(config)
if "--start" in sys.argv:
    student.set_weights(ModelBundle.open(config.warm_start).load_network().get_weights())
else:
    student.load_weights(work / "student.weights.h5")
rows = data.split_table(data.read_ham10000("../shared/data/ham10000"), "val")
x = data.load_images(rows["path"], config.image_size, ModelBundle.open(config.teacher).detail_side).astype(np.float32)
y = data.labels(rows)
unknown = np.repeat(UNKNOWN_PATIENT.encode()[None], len(y), axis=0)
for name, metadata in (("patients", data.encode_metadata(rows)), ("unknown", unknown)):
    p = student.predict({"image": x, "metadata": metadata}, batch_size=64, verbose=0)
    print(f"val, metadata {name}: balanced accuracy {balanced_accuracy_score(y, p.argmax(1)):.3f}, "
          f"macro AUC {roc_auc_score(y, p, multi_class='ovr'):.3f}, melanoma AUC {roc_auc_score(y == 4, p[:, 4]):.3f}")
