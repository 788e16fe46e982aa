"""`python -m skin_core export`: the SavedModel, loaded by TensorFlow alone as TF Serving would load it,
gives the Keras model's calibrated probabilities and its attention map."""

import json
import subprocess
import sys

import keras
import numpy as np
from synthetic import lesion_image

from skin_core.bundle import list_bundles
from skin_core.cli import main
from skin_core.evaluation import calibrated_probabilities
from skin_core.images import resize_for_model
from skin_core.patient import UNKNOWN_PATIENT, Patient

# A fresh interpreter with TensorFlow only: no skin_core, no Keras custom objects, as on a TF Serving host.
SERVE = """
import sys, numpy as np, tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
inputs = np.load(sys.argv[2])
outputs = serve(image=tf.constant(inputs["image"]), metadata=tf.constant(inputs["metadata"]))
np.savez(sys.argv[3], **{name: value.numpy() for name, value in outputs.items()})
"""


def test_export_serves_the_calibrated_keras_outputs(tmp_path):
    bundle = min(list_bundles(), key=lambda b: b.size_mb)
    assert main(["export", str(bundle.path), "--out", str(tmp_path / "skin")]) == 0
    target = tmp_path / "skin" / "1"
    assert (target / "saved_model.pb").is_file()
    assert json.loads((target / "assets.extra" / "card.json").read_text()) == bundle.card
    assert main(["export", str(bundle.path), "--out", str(tmp_path / "skin")]) == 2, "never overwrites a version"

    rng = np.random.default_rng(3)
    images = np.stack([resize_for_model(np.asarray(lesion_image(c, rng)), bundle.input_size, bundle.detail_side)
                       for c in (0, 4, 5)]).astype(np.float32)
    metadata = np.stack([Patient.from_fields(54, "female", "back").encode(), UNKNOWN_PATIENT.encode(),
                         Patient.from_fields(None, "male", None).encode()]).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", image=images, metadata=metadata)
    subprocess.run([sys.executable, "-c", SERVE, str(target), str(tmp_path / "inputs.npz"), str(tmp_path / "out.npz")],
                   cwd=tmp_path, check=True, timeout=900)
    served = np.load(tmp_path / "out.npz")

    model = bundle.load_model()
    np.testing.assert_allclose(served["probabilities"], calibrated_probabilities(model, bundle, images, metadata),
                               atol=1e-4)
    attention = keras.Model(model.inputs, model.get_layer(bundle.card["layers"]["attention"]).output[1])
    expected = attention.predict([images, metadata], verbose=0)
    assert served["attention_map"].shape == expected.shape and expected.ndim == 3
    np.testing.assert_allclose(served["attention_map"], expected, atol=1e-4)
