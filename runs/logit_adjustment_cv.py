"""The logit adjustment's tau (runs/logit_adjustment.py) chosen on one half of HAM10000 val (best mean balanced
accuracy over the clean split and the 9 shifts) and scored on the other half (2-fold, 5 seeds).
Usage: PYTHONPATH=. python runs/logit_adjustment_cv.py PROBS.npz"""
import sys

import numpy as np, sklearn.metrics as skm
from sklearn.model_selection import StratifiedKFold
from skin_core import data
from skin_core.evaluation import _split_rows
d=np.load(sys.argv[1]); y=d['y']; P=d['per_shift']
prior=np.bincount(data.labels(_split_rows('../shared/data/ham10000','train')),minlength=7)/1.0; prior/=prior.sum()
adj=lambda p,t: p/prior**t
ba=lambda p,yy: skm.balanced_accuracy_score(yy,p.argmax(-1))
taus=np.round(np.arange(-0.6,0.61,0.1),2); res=[]
for seed in range(5):
    for tr,te in StratifiedKFold(2,shuffle=True,random_state=seed).split(P[0],y):
        t=taus[np.argmax([np.mean([ba(adj(P[k][tr],t),y[tr]) for k in range(10)]) for t in taus])]
        res.append([t, ba(P[0][te],y[te]), ba(adj(P[0][te],t),y[te]), np.mean([ba(P[k][te],y[te]) for k in range(1,10)]), np.mean([ba(adj(P[k][te],t),y[te]) for k in range(1,10)])])
r=np.array(res); print('chosen taus',r[:,0]); print('held-out half clean before/after, shifted before/after',r[:,1:].mean(0).round(3),'sd clean gain',(r[:,2]-r[:,1]).std().round(3))
