"""How often mixup's partner (the batch neighbour) has the same diagnosis, with batches sorted by table row (the
first 8 epochs of runs/fm-mobilenetv3large-192-warm) and in shuffled order (since): 50 simulated epochs of batch 64
over the HAM10000 train split. `PYTHONPATH=. python runs/function_matching/mixup_pairs.py`"""

import numpy as np

from skin_core import data

rows = data.split_table(data.read_ham10000("../shared/data/ham10000"), "train")
lesion, dx = rows["lesion_id"].to_numpy(), rows["dx"].to_numpy()
rng = np.random.default_rng(0)
shares = {"same lesion, sorted": [], "same diagnosis, sorted": [], "same diagnosis, shuffled": []}
for _ in range(50):
    order = rng.permutation(len(dx))
    for b in range(len(dx) // 64):
        shuffled = order[b * 64:(b + 1) * 64]
        ordered = np.sort(shuffled)
        shares["same lesion, sorted"].append(np.mean(lesion[ordered] == lesion[np.roll(ordered, 1)]))
        shares["same diagnosis, sorted"].append(np.mean(dx[ordered] == dx[np.roll(ordered, 1)]))
        shares["same diagnosis, shuffled"].append(np.mean(dx[shuffled] == dx[np.roll(shuffled, 1)]))
for name, values in shares.items():
    print(f"{name}: {np.mean(values):.4f}")
