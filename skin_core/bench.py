"""`python -m skin_core bench`: what the served path costs, per shipped bundle, measured in one run."""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .bundle import list_bundles, write_json

BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"

_COLD_START = """
import io, json, resource, sys, time
started = time.perf_counter()
import numpy as np
import skin_core as sc
classifier = sc.load_classifier(sys.argv[1])
prediction = classifier.predict(sys.stdin.buffer.read(), sc.Patient.from_fields(55, "female", "back"))
first = time.perf_counter() - started
classifier.explainer()(prediction.image)  # the served heat-map (the card's default method)
print(json.dumps({"cold_start_s": first, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _percentiles(times: list[float]) -> dict:
    ms = np.asarray(times) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)), "n": len(ms)}


def _timed(fn, repeats: int, warmup: int = 3) -> dict:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return _percentiles(times)


def sample_photo() -> bytes:
    """A 600 x 450 JPEG like the original HAM10000 release (drawn, so the bench needs no data)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    image = Image.new("RGB", (600, 450), (214, 170, 150))
    ImageDraw.Draw(image).ellipse([200, 130, 400, 320], fill=(110, 60, 45))
    noisy = np.clip(np.asarray(image, np.float32) + rng.normal(0, 8, (450, 600, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def machine() -> dict:
    import tensorflow as tf

    cpu = platform.processor()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "tensorflow": tf.__version__, "python": platform.python_version(),
            "gpu": bool(tf.config.list_physical_devices("GPU"))}


def bench_bundle(bundle, photo: bytes, repeats: int) -> dict:
    import tensorflow as tf

    import skin_core as sc

    cold = subprocess.run([sys.executable, "-c", _COLD_START, str(bundle.path)], input=photo,
                          capture_output=True, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    cold_result = json.loads(cold.stdout.decode().strip().splitlines()[-1])
    classifier = sc.load_classifier(str(bundle.path))
    patient = sc.Patient.from_fields(55, "female", "back")
    rgb = sc.load_image(photo)
    x, meta = classifier.model_inputs(rgb, patient)
    model = classifier.model
    compiled = tf.function(lambda a, b: model([a, b], training=False), jit_compile=False)
    batch = (np.repeat(x, 32, axis=0), np.repeat(meta, 32, axis=0))
    model.predict(list(batch), verbose=0)
    started = time.perf_counter()
    rounds = max(2, repeats // 10)
    for _ in range(rounds):
        model.predict(list(batch), batch_size=32, verbose=0)
    throughput = 32 * rounds / (time.perf_counter() - started)
    result = {
        "bundle": bundle.name, "architecture": bundle.architecture, "input_size": bundle.input_size,
        "parameters": int(model.count_params()), "file_mb": bundle.size_mb,
        "served_path_ms": _timed(lambda: classifier.predict(photo, patient), repeats),
        "bare_model_predict_ms": _timed(lambda: model.predict([x, meta], verbose=0), repeats),
        "bare_tf_function_ms": _timed(lambda: compiled(x, meta), repeats),
        "batch32_images_per_s": throughput,
        "heatmap_method": classifier.default_heatmap_method,
        "heatmap_ms": _timed(lambda: classifier.explainer()(rgb, patient, "mel"), max(3, repeats // 10), 1),
        **cold_result,
    }
    result["served_over_bare_compiled"] = result["served_path_ms"]["p50"] / result["bare_tf_function_ms"]["p50"]
    return result


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, TensorFlow {m['tensorflow']}, GPU: {m['gpu']}.", "",
             "| bundle | served p50 / p95 (ms) | bare predict p50 | bare tf.function p50 | served / bare | batch 32 (img/s) "
             "| served heat-map p50 (method) | cold start (s) | peak RSS (MB) | params | file (MB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["bundles"]:
        lines.append(
            f"| `{r['bundle']}` | {r['served_path_ms']['p50']:.1f} / {r['served_path_ms']['p95']:.1f} "
            f"| {r['bare_model_predict_ms']['p50']:.1f} | {r['bare_tf_function_ms']['p50']:.1f} "
            f"| {r['served_over_bare_compiled']:.2f} | {r['batch32_images_per_s']:.0f} "
            f"| {r['heatmap_ms']['p50']:.0f} ({r['heatmap_method']}) | {r['cold_start_s']:.1f} | {r['peak_rss_mb']:.0f} "
            f"| {r['parameters'] / 1e6:.1f} M | {r['file_mb']:.1f} |")
    if results.get("training"):
        lines += ["", "Training speed (synthetic batches of 32, augmentation on):", "",
                  "| bundle | input pipeline s/batch | train step s/batch | fit s/batch | pipeline share | est. epoch (min) |",
                  "|---|---|---|---|---|---|"]
        for t in results["training"]:
            lines.append(f"| `{t['bundle']}` | {t['pipeline_s_per_batch']:.3f} | {t['train_step_s_per_batch']:.3f} "
                         f"| {t['fit_s_per_batch']:.3f} | {t['pipeline_share']:.0%} | {t['estimated_epoch_min']:.1f} |")
    return "\n".join(lines) + "\n"


def run(repeats: int = 50, out_dir=BENCH_DIR, training: bool = False) -> dict:
    photo = sample_photo()
    results = {"machine": machine(), "repeats": repeats,
               "bundles": [bench_bundle(b, photo, repeats) for b in list_bundles()]}
    if training:
        results["training"] = [training_speed(b) for b in list_bundles()]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = out_dir / "results.json"
    if previous.is_file():  # keep the load test's runs (`bench --load N`, skin_core/loadtest.py)
        load = json.loads(previous.read_text()).get("load")
        if load:
            results["load"] = load
    write_json(out_dir / "results.json", results)
    (out_dir / "results.md").write_text(markdown(results))
    return results


def training_speed(bundle, batches: int = 8, batch_size: int = 32) -> dict:
    """Seconds per training batch: the input pipeline alone, the train step alone, and both together.

    On a CPU both compete for the same cores, so the pipeline's share is what it takes from a step.
    """
    import keras

    from . import data
    from .losses import WeightedCategoricalCrossentropy
    from .patient import META_DIM
    from .models import build_model

    card = bundle.card
    size = bundle.input_size
    n = batches * batch_size
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    metadata = np.zeros((n, META_DIM), np.float32)
    y = rng.integers(0, 7, n)
    pipeline = data.make_dataset(images, metadata, y, batch_size, training=True)
    model = build_model(bundle.architecture, size, "none", card["preprocessing"],
                        card["training"]["meta_units"], card["training"]["heads"])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=WeightedCategoricalCrossentropy([1.0] * 7))
    cached = list(pipeline)
    model.train_on_batch(*cached[0])  # trace once, outside the timings
    model.fit(pipeline.take(1), epochs=1, verbose=0)

    started = time.perf_counter()
    for _ in pipeline:
        pass
    pipeline_s = (time.perf_counter() - started) / batches
    started = time.perf_counter()
    for x, label in cached:
        model.train_on_batch(x, label)
    step_s = (time.perf_counter() - started) / batches
    started = time.perf_counter()
    model.fit(pipeline, epochs=1, verbose=0)
    together_s = (time.perf_counter() - started) / batches
    train_images = card["data_source"].get("train_images", 6975)
    return {
        "bundle": bundle.name, "architecture": bundle.architecture, "input_size": size,
        "pipeline_s_per_batch": pipeline_s, "train_step_s_per_batch": step_s, "fit_s_per_batch": together_s,
        "pipeline_share": pipeline_s / (pipeline_s + step_s),
        "estimated_epoch_min": together_s * train_images / batch_size / 60,
    }
