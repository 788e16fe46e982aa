"""How much of each ensemble's referral threshold rests on ISIC 2017 val's few melanomas (analysis, writes nothing
into any bundle). Clean HAM10000 val and ISIC 2017 val, metadata unknown, the bundle's served views and temperature.
Usage: PYTHONPATH=. python runs/referral_fragility.py FOLDER_OF_BUNDLES NAME..."""
import sys

import numpy as np

from skin_core import data
from skin_core.bundle import ModelBundle
from skin_core.evaluation import (_split_rows, _unknown_metadata, calibrated_probabilities, decoded_images,
                                  prepared)
from skin_core.referral import score, sensitivity_specificity, threshold_for_sensitivity
from skin_core.vocab import CLASSES

MEL = CLASSES.index("mel")
root, names = sys.argv[1], sys.argv[2:]
rows = _split_rows("../shared/data/ham10000", "val")
isic = data.read_isic2017("../shared/data/isic2017")
isic = isic[isic["split"] == "val"].reset_index(drop=True)
ham_photos, isic_photos = decoded_images(rows["path"]), decoded_images(isic["path"])
y_ham, y_isic = data.labels(rows), data.labels(isic)
for name in names:
    bundle = ModelBundle.open(f"{root}/{name}")
    model = bundle.load_model()
    kind = bundle.card["referral"]["score"]
    s_ham = score(calibrated_probabilities(model, bundle, prepared(bundle, ham_photos), _unknown_metadata(len(y_ham))), kind)
    s_isic = score(calibrated_probabilities(model, bundle, prepared(bundle, isic_photos), _unknown_metadata(len(y_isic))), kind)
    np.savez(f"runs/referral_scores_{name}.npz", ham=s_ham, y_ham=y_ham, isic=s_isic, y_isic=y_isic)
    m_ham, m_isic = y_ham == MEL, y_isic == MEL
    isic_mel = np.sort(s_isic[m_isic])
    pooled_s, pooled_m = np.concatenate([s_ham, s_isic]), np.concatenate([m_ham, m_isic])
    rules = {"card": bundle.card["referral"]["threshold"],
             "ISIC val alone (0.95 of its melanomas)": threshold_for_sensitivity(s_isic, m_isic, 0.95),
             "HAM val clean alone": threshold_for_sensitivity(s_ham, m_ham, 0.95),
             "HAM val clean + ISIC val pooled": threshold_for_sensitivity(pooled_s, pooled_m, 0.95)}
    print(f"{name} ({kind}; ISIC val melanomas {m_isic.sum()}, their lowest three scores {np.round(isic_mel[:3], 4)})")
    for rule, t in rules.items():
        ham, isic_point = sensitivity_specificity(s_ham, m_ham, t), sensitivity_specificity(s_isic, m_isic, t)
        print(f"  {rule:42s} t={t:.4f}  HAM val clean sens {ham['sensitivity']:.3f} spec {ham['specificity']:.3f}"
              f"  ISIC val sens {isic_point['sensitivity']:.3f} spec {isic_point['specificity']:.3f}")
