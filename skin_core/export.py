"""`python -m skin_core export`: a bundle as a TensorFlow SavedModel that TF Serving loads as-is.

The Streamlit app serves one clinic from one process; a SavedModel lets TF Serving replicas behind a
load balancer serve many, with no Python and none of this package's code on the server: the custom
layers are traced into plain TensorFlow ops and the bundle's temperature is applied in the graph.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .errors import BundleError

SIGNATURE = "serving_default"
CARD_FILE = Path("assets.extra") / "card.json"  # TF Serving ignores assets.extra; a server reads the classes here


def _network(bundle):
    """(image, metadata) -> [probabilities before the bundle's temperature, soft-attention map]; an ensemble's
    are its members' means (``models.ensemble_network``), and with test-time views the probabilities are
    their mean (``models.view_mean``), as ``bundle.load_model`` serves them."""
    import keras

    from .models import ensemble_network, view_mean

    if not bundle.is_ensemble:
        model = bundle.load_network()
        net = keras.Model(model.inputs, [model.outputs[0], model.get_layer(bundle.card["layers"]["attention"]).output[1]])
    else:
        members = bundle.members
        try:
            net = ensemble_network([m.load_network() for m in members], [m.temperature for m in members],
                                   [m.card["layers"]["attention"] for m in members])
        except ValueError as error:
            raise BundleError(f"{bundle.path}: {error}; export each member instead") from error
    return view_mean(net, bundle.views) if bundle.views > 1 else net


def serving_function(bundle):
    """(image, metadata) -> {"probabilities", "attention_map"}, as the Classifier computes them.

    image: float32 (n, S, S, 3), RGB 0..255 already resized to the card's input size (the caller
    runs ``images.resize_for_model`` or its equivalent: detail_side and the softening first, then the input size).
    probabilities: the network's softmax calibrated as ``evaluation.apply_temperature`` does,
    softmax(log(clip(p, 1e-12, 1)) / T). attention_map: the soft-attention layer's map (n, h, w),
    unscaled (the app scales each map to 0..1 before drawing it).
    """
    import tensorflow as tf

    net = _network(bundle)
    temperature = bundle.temperature
    size, features = net.inputs[0].shape[1], net.inputs[1].shape[1]

    def serve(image, metadata):
        probabilities, attention = net([image, metadata], training=False)
        logits = tf.math.log(tf.clip_by_value(probabilities, 1e-12, 1.0)) / temperature
        return {"probabilities": tf.nn.softmax(logits, axis=-1), "attention_map": attention}

    signature = [tf.TensorSpec((None, size, size, 3), tf.float32, name="image"),
                 tf.TensorSpec((None, features), tf.float32, name="metadata")]
    return net, serve, signature


def export_savedmodel(bundle, out_dir, version: int = 1) -> Path:
    """Write ``out_dir/<version>/`` (TF Serving's layout: a model base path holding numbered versions,
    the highest served) with the ``serving_default`` signature and a copy of card.json; returns it."""
    import keras

    target = Path(out_dir) / str(version)
    if target.exists():
        raise BundleError(f"{target} already exists; pass another --version (TF Serving serves the highest)")
    net, serve, signature = serving_function(bundle)
    archive = keras.export.ExportArchive()
    archive.track(net)
    archive.add_endpoint(SIGNATURE, serve, input_signature=signature)
    archive.write_out(str(target), verbose=False)
    (target / CARD_FILE).parent.mkdir(exist_ok=True)
    shutil.copyfile(bundle.path / "card.json", target / CARD_FILE)
    return target
