import numpy as np
from skin_core import data
from skin_core.patient import UNKNOWN_PATIENT
n=256
rng=np.random.default_rng(0)
x=rng.integers(0,256,(n,32,32,3)).astype(np.uint8)
m=np.repeat(np.asarray(UNKNOWN_PATIENT.encode())[None],n,0).astype(np.float32); m[:,0]=np.arange(n)/1000+0.01; m[:,1]=0
y=rng.integers(0,7,n)
for aug in ["paper","paper-photometric"]:
    ds=data.make_dataset(x,m,y,32,True,0.25,1,0.0,aug)
    for ep in range(3):
        blanked=[];firstpix=[]
        for b,(xb,yb) in enumerate(ds):
            mm=xb["metadata"].numpy(); blanked.append(mm[:,1]>0.5)  # age-missing flag set by blanking
            firstpix.append(float(xb["image"].numpy()[0].mean()))
        bl=np.concatenate(blanked)
        print(aug, ep, "blank share", bl.mean().round(3), "positions hash", hash(bl.tobytes())%10**6, "first batch-0 image mean", round(firstpix[0],2))
