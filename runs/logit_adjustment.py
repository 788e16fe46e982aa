"""Post-hoc logit adjustment (Menon et al. 2021) of a bundle's calibrated probabilities, judged on validation
only: p_adj ~ p / prior^tau, prior = HAM10000 training class frequencies (tau = 0: the served argmax). Reads
runs/val_probabilities.py's npz and prints, metadata unknown unless said:
1. per tau: balanced accuracy clean, shifted mean, worst shift, with records; nv and mel recall; benign lesions
   named mel;
2. tau chosen on one half of val (best mean BA over the clean split and the 9 shifts), scored on the other
   (2-fold, 5 seeds);
3. the same for seven free per-class offsets (coordinate search for clean BA): whether a richer rule generalises.
Usage: PYTHONPATH=. python runs/logit_adjustment.py PROBS.npz"""
import sys

import numpy as np
import sklearn.metrics as skm
from sklearn.model_selection import StratifiedKFold

from skin_core import data
from skin_core.evaluation import _split_rows
from skin_core.vocab import CLASSES

NV, MEL = CLASSES.index("nv"), CLASSES.index("mel")
TAUS = np.round(np.arange(-0.6, 0.61, 0.1), 2)
OFFSETS = np.linspace(-1.5, 1.5, 31)

d = np.load(sys.argv[1])
y, names = d["y"], d["shift_names"]
log_p = np.log(np.clip(d["per_shift"], 1e-12, 1.0))  # (clean + 9 shifts, n, 7)
log_p_records = np.log(np.clip(d["with_records"], 1e-12, 1.0))
counts = np.bincount(data.labels(_split_rows("../shared/data/ham10000", "train")), minlength=len(CLASSES))
log_prior = np.log(counts / counts.sum())


def ba(scores, labels):
    return skm.balanced_accuracy_score(labels, scores.argmax(-1))


def shifted_mean(scores, labels):
    return float(np.mean([ba(s, labels) for s in scores[1:]]))


print("tau    clean  shifted  worst              records  nv recall   mel recall  benign named mel")
for tau in TAUS:
    adjusted = log_p - tau * log_prior
    scores = [ba(s, y) for s in adjusted]
    worst = int(np.argmin(scores[1:])) + 1
    predicted = adjusted[0].argmax(-1)
    nv_named_nv, mel_named_mel = predicted[y == NV] == NV, predicted[y == MEL] == MEL
    print(f"{tau:+.1f}  {scores[0]:.3f}  {np.mean(scores[1:]):.3f}    {names[worst]:12s} {scores[worst]:.3f}"
          f"  {ba(log_p_records - tau * log_prior, y):.3f}"
          f"    {nv_named_nv.mean():.2f} ({nv_named_nv.sum()})  {mel_named_mel.mean():.2f} ({mel_named_mel.sum()})"
          f"   {((y != MEL) & (predicted == MEL)).sum()}")


def fit_offsets(scores, labels, rounds=3):
    offsets = np.zeros(len(CLASSES))
    for _ in range(rounds):
        for c in range(len(CLASSES)):
            best, best_value = ba(scores + offsets, labels), offsets[c]
            for value in OFFSETS:
                trial = offsets.copy()
                trial[c] = value
                if (score := ba(scores + trial, labels)) > best + 1e-9:
                    best, best_value = score, value
            offsets[c] = best_value
    return offsets


def held_out(fit):
    """fit(train indices) -> additive logit offsets; mean over the folds of (clean before, after, shifted
    before, after) on the other half, and the spread of the clean gain."""
    rows = []
    for seed in range(5):
        for train, test in StratifiedKFold(2, shuffle=True, random_state=seed).split(log_p[0], y):
            offsets = fit(train)
            rows.append([ba(log_p[0][test], y[test]), ba(log_p[0][test] + offsets, y[test]),
                         shifted_mean(log_p[:, test], y[test]), shifted_mean(log_p[:, test] + offsets, y[test])])
    rows = np.array(rows)
    return rows.mean(0).round(3), (rows[:, 1] - rows[:, 0]).std().round(3)


chosen = []


def fit_tau(train):
    tau = TAUS[np.argmax([np.mean([ba(s, y[train]) for s in log_p[:, train] - t * log_prior]) for t in TAUS])]
    chosen.append(float(tau))
    return -tau * log_prior


means, spread = held_out(fit_tau)
print(f"tau on one half, scored on the other: chosen {chosen}; clean before/after, shifted before/after {means},"
      f" spread of the clean gain {spread}")
means, spread = held_out(lambda train: fit_offsets(log_p[0][train], y[train]))
print(f"seven offsets on one half, scored on the other: clean before/after, shifted before/after {means},"
      f" spread of the clean gain {spread}")
