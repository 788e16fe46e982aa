"""Save a bundle's calibrated probabilities on a HAM10000 split, clean and under every shift (metadata unknown,
served views and temperature), plus ISIC 2017 val: the inputs of post-hoc decision-rule analyses (writes nothing
into the bundle). Usage: PYTHONPATH=. python runs/val_probabilities.py BUNDLE SPLIT OUT.npz"""
import sys

import numpy as np

from skin_core import data
from skin_core.bundle import ModelBundle
from skin_core.evaluation import (_split_rows, _unknown_metadata, calibrated_probabilities, decoded_images,
                                  prepared, shifted_probabilities)
from skin_core.shifts import SHIFTS

bundle, split, out = ModelBundle.open(sys.argv[1]), sys.argv[2], sys.argv[3]
model = bundle.load_model()
rows = _split_rows("../shared/data/ham10000", split)
y = data.labels(rows)
photos = decoded_images(rows["path"])
per_shift = shifted_probabilities(model, bundle, photos, _unknown_metadata(len(y)))
with_records = calibrated_probabilities(model, bundle, prepared(bundle, photos), data.encode_metadata(rows))
arrays = {"y": y, "shift_names": np.array([s.name for s in SHIFTS]), "per_shift": np.stack(per_shift),
          "with_records": with_records}
if split == "val":
    isic = data.read_isic2017("../shared/data/isic2017")
    isic = isic[isic["split"] == "val"].reset_index(drop=True)
    arrays["isic_val"] = calibrated_probabilities(model, bundle, prepared(bundle, decoded_images(isic["path"])),
                                                  _unknown_metadata(len(isic)))
    arrays["y_isic_val"] = data.labels(isic)
np.savez(out, **arrays)
print("wrote", out, {k: v.shape for k, v in arrays.items()})
