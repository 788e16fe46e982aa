"""How much to soften a photo after bringing it down to the training detail level (images.DETAIL_SOFTENING).

Validation data only: HAM10000 val photos against 3x upscaled copies of themselves (plain bicubic, and
unsharp-masked as a camera would), and ISIC 2017 val (256 px, sharper than our HAM10000 copy).

    python -m bench.detail_softening --ham10000 ../shared/data/ham10000 --isic2017 ../shared/data/isic2017
"""

import argparse

import numpy as np
from PIL import Image, ImageFilter
from sklearn.metrics import roc_auc_score

import skin_core as sc
from skin_core import data, images
from skin_core.vocab import CLASSES


def upscaled(photo: np.ndarray, sharpen: bool) -> np.ndarray:
    """A 3x bigger copy of the photo, unsharp-masked when ``sharpen`` (as tests/test_robustness.py makes it)."""
    height, width = photo.shape[:2]
    big = Image.fromarray(photo).resize((3 * width, 3 * height), Image.Resampling.BICUBIC)
    return np.asarray(big.filter(ImageFilter.UnsharpMask(radius=2, percent=100, threshold=2)) if sharpen else big)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ham10000", required=True)
    parser.add_argument("--isic2017", required=True)
    parser.add_argument("--bundle", default=None, help="default: the served bundle")
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.5, 0.7, 1.0])
    args = parser.parse_args()

    classifier = sc.load_classifier(args.bundle)
    rows = data.split_table(data.read_ham10000(args.ham10000), "val").sample(args.photos, random_state=1)
    photos = [sc.load_image(path) for path in rows["path"]]
    isic = data.read_isic2017(args.isic2017)
    isic = isic[isic["split"] == "val"]
    isic_photos, dx = [sc.load_image(path) for path in isic["path"]], isic["dx"].to_numpy()
    originals = [classifier.predict(photo).probabilities for photo in photos]  # 200x150: never reduced
    print(f"{classifier.bundle.name}; HAM10000 val {len(photos)} photos; ISIC 2017 val {len(isic_photos)} photos")
    print("sigma | sharpened copy: median largest change | plain copy: median | ISIC val mel AUC | recall mel/nv/bkl")
    for sigma in args.sigmas:
        images.DETAIL_SOFTENING = sigma
        changes = {sharpen: np.median([np.abs(p - classifier.predict(upscaled(photo, sharpen)).probabilities).max()
                                       for p, photo in zip(originals, photos)]) for sharpen in (True, False)}
        probabilities = np.stack([classifier.predict(photo).probabilities for photo in isic_photos])
        predicted = np.array(CLASSES)[probabilities.argmax(1)]
        auc = roc_auc_score(dx == "mel", probabilities[:, CLASSES.index("mel")])
        recalls = " / ".join(f"{np.mean(predicted[dx == k] == k):.3f}" for k in ("mel", "nv", "bkl"))
        print(f"{sigma:5.1f} | {changes[True]:.4f} | {changes[False]:.4f} | {auc:.3f} | {recalls}", flush=True)


if __name__ == "__main__":
    main()
