"""Post-hoc logit adjustment (Menon et al. 2021) of a bundle's calibrated probabilities, judged on validation
only: p_adj ~ p / prior^tau, prior = HAM10000 training class frequencies. Reads runs/val_probabilities.py's
npz. Prints balanced accuracy clean, shifted mean, worst shift and with records for each tau.
Usage: PYTHONPATH=. python runs/logit_adjustment.py PROBS.npz"""
import sys

import numpy as np
import sklearn.metrics as skm

from skin_core import data
from skin_core.evaluation import _split_rows

d = np.load(sys.argv[1])
y, per_shift, names = d["y"], d["per_shift"], d["shift_names"]
prior = np.bincount(data.labels(_split_rows("../shared/data/ham10000", "train")), minlength=7) / 1.0
prior /= prior.sum()


def adjusted(p, tau):
    q = p / prior ** tau
    return q / q.sum(-1, keepdims=True)


def ba(p):
    return skm.balanced_accuracy_score(y, p.argmax(-1))


print("tau    clean  shifted  worst              records  recall per class (clean)")
for tau in np.round(np.arange(-0.6, 0.61, 0.1), 2):
    scores = [ba(adjusted(p, tau)) for p in per_shift]
    worst = int(np.argmin(scores[1:])) + 1
    recall = skm.recall_score(y, adjusted(per_shift[0], tau).argmax(-1), average=None)
    print(f"{tau:+.1f}  {scores[0]:.3f}  {np.mean(scores[1:]):.3f}    {names[worst]:12s} {scores[worst]:.3f}"
          f"  {ba(adjusted(d['with_records'], tau)):.3f}    {np.round(recall, 2)}")
