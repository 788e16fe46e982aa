"""Issue 14's latency target: a candidate's served latency beside MobileNetV2's, in one run on one machine.

`python -m skin_core bench` times only the bundles under weights/, where an unmeasured candidate may not go;
this times any bundle folders with the same function (skin_core.bench.bench_bundle), in the order given.

    PYTHONPATH=. python runs/function_matching/latency.py weights/mobilenetv2-192 runs/fm-mobilenetv3large-192-warm
"""
import json
import sys

from skin_core.bench import bench_bundle, machine, sample_photo
from skin_core.bundle import ModelBundle

photo = sample_photo()
print(json.dumps(machine()))
print("| bundle | input | served p50 / p95 (ms) | bare tf.function p50 (ms) | batch 32 (img/s) | params |")
print("|---|---|---|---|---|---|")
for folder in sys.argv[1:]:
    r = bench_bundle(ModelBundle.open(folder), photo, repeats=50)
    print(f"| `{r['bundle']}` | {r['input_size']} | {r['served_path_ms']['p50']:.1f} / {r['served_path_ms']['p95']:.1f} "
          f"| {r['bare_tf_function_ms']['p50']:.1f} | {r['batch32_images_per_s']:.0f} | {r['parameters'] / 1e6:.1f} M |",
          flush=True)
