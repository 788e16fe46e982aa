"""Issue 14's latency target: a candidate's served latency beside MobileNetV2's, in one run on one machine.

`python -m skin_core bench` times only the bundles under weights/, where an unmeasured candidate may not go;
this times any bundle folders with bench's own functions and prints bench's table, in the order given.

    PYTHONPATH=. python runs/function_matching/latency.py weights/mobilenetv2-192 runs/fm-mobilenetv3large-192-warm
"""
import sys

from skin_core.bench import bench_bundle, machine, markdown, sample_photo
from skin_core.bundle import ModelBundle

photo = sample_photo()
print(markdown({"machine": machine(),
                "bundles": [bench_bundle(ModelBundle.open(folder), photo, repeats=50) for folder in sys.argv[1:]]}))
