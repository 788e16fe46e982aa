"""Run `python -m skin_core distill` where TensorFlow is not installed (the lent GPU machine: JAX only).

``skin_core``'s serving modules import TensorFlow (Grad-CAM in explain.py) and pillow_heif (iPhone
uploads) when the package loads; the function-matching path calls neither. Empty stand-ins are present
only while the package loads, so Keras (imported first, JAX backend) never sees a TensorFlow, and any
real use of either fails loudly.
"""

import importlib.util
import sys
import types

import keras  # noqa: F401  (before the stand-ins: Keras must not see them)

absent = [name for name in ("tensorflow", "pillow_heif") if importlib.util.find_spec(name) is None]
for name in absent:
    sys.modules[name] = types.ModuleType(name)
    sys.modules[name].register_heif_opener = lambda: None  # the one call made at load (images.py)
import skin_core  # noqa: E402,F401

for name in absent:
    del sys.modules[name]

from skin_core.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
