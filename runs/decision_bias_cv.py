"""Per-class logit offsets fitted for balanced accuracy on one half of HAM10000 val and scored on the other
(2-fold, 5 seeds; clean and mean of the 9 shifts, metadata unknown): how much of a post-hoc decision rule
with 7 free offsets survives to photos it was not fitted on. Reads runs/val_probabilities.py's npz.
Usage: python runs/decision_bias_cv.py PROBS.npz"""
import sys

import numpy as np
import sklearn.metrics as skm
from sklearn.model_selection import StratifiedKFold
d=np.load(sys.argv[1]); y=d['y']; P=d['per_shift']
L=np.log(np.clip(P,1e-12,1))
def ba(l,yy): return skm.balanced_accuracy_score(yy,l.argmax(-1))
def fit_bias(l,yy,rounds=3):
    b=np.zeros(7); grid=np.linspace(-1.5,1.5,31)
    for _ in range(rounds):
        for c in range(7):
            best=(ba(l+b,yy),b[c])
            for g in grid:
                bb=b.copy(); bb[c]=g; s=ba(l+bb,yy)
                if s>best[0]+1e-9: best=(s,g)
            b[c]=best[1]
    return b
res=[]
for seed in range(5):
    skf=StratifiedKFold(2,shuffle=True,random_state=seed)
    for tr,te in skf.split(L[0],y):
        b=fit_bias(L[0][tr],y[tr])
        res.append([ba(L[0][te],y[te]), ba(L[0][te]+b,y[te]), np.mean([ba(L[k][te],y[te]) for k in range(1,10)]), np.mean([ba(L[k][te]+b,y[te]) for k in range(1,10)])])
r=np.array(res); print('held-out half: clean before/after, shifted before/after', r.mean(0).round(3), 'sd of clean gain', (r[:,1]-r[:,0]).std().round(3))
