import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

SHARED = ROOT.parent / "shared"
HAM10000 = SHARED / "data" / "ham10000"
MOBILENET_V2_WEIGHTS = SHARED / "weights" / "mobilenet_v2_imagenet_notop.weights.h5"


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """A small HAM10000-shaped folder and its own lesion split file."""
    from synthetic import make_dataset

    from skin_core import data

    root = make_dataset(tmp_path_factory.mktemp("ham"), per_class=10)
    split = data.make_split(data.read_ham10000(root), fractions=(0.5, 0.25, 0.25))
    split.to_csv(root / "split.csv", index=False)
    return root
