"""Does the seeded metadata blanking draw a new stream each epoch? (README, "Lite0's unsteady training").

256 synthetic records, seed 1, blank probability 0.25: prints the share of blanked records in each of 3 passes.
Usage: PYTHONPATH=. python runs/epoch_repeat.py"""
import numpy as np

from skin_core import data
from skin_core.patient import UNKNOWN_PATIENT

n = 256
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (n, 32, 32, 3)).astype(np.uint8)
metadata = np.repeat(np.asarray(UNKNOWN_PATIENT.encode())[None], n, 0).astype(np.float32)
metadata[:, 0], metadata[:, 1] = 0.5, 0  # a known age; blanking sets the age-missing flag (column 1) back to 1
labels = rng.integers(0, 7, n)
for augmentation in ["paper", "paper-photometric"]:
    dataset = data.make_dataset(images, metadata, labels, 32, True, 0.25, 1, 0.0, augmentation)
    for epoch in range(3):
        blanked = np.concatenate([batch["metadata"].numpy()[:, 1] > 0.5 for batch, _ in dataset])
        print(f"{augmentation} pass {epoch}: blank share {blanked.mean():.3f}")
