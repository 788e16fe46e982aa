"""Heat-maps on the shipped bundles: the compiled maths against tf-keras-vis, shapes, grids, sharing,
and where the served map points on a drawn lesion; the overlay helpers, the lesion-share measure and the
`heatmaps` command's choice of the default on validation (test only measured)."""

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tensorflow as tf
from synthetic import lesion_image

import skin_core as sc
from skin_core import explain
from skin_core import heatmap_eval
from skin_core.heatmap_eval import bootstrap_ci, centred_gaussian, second_moment, share_in_mask

BUNDLES = [b.name for b in sc.list_bundles() if not b.is_ensemble]  # ensembles: tests/test_ensemble.py


@pytest.fixture(scope="module", params=BUNDLES)
def classifier(request):
    return sc.load_classifier(request.param)


def photo(seed: int = 0, size=(200, 150)) -> np.ndarray:
    return np.asarray(lesion_image(4, np.random.default_rng(seed), size))


def model_inputs(classifier, image):
    x, meta = classifier.model_inputs(image, sc.Patient.from_fields(55, "female", "back"))
    return x.astype(np.float32), meta.astype(np.float32)


@pytest.mark.parametrize("plus_plus", [False, True])
def test_compiled_cam_matches_tf_keras_vis(classifier, plus_plus):
    """Same layer, same class, same inputs: our one-graph Grad-CAM(++) is tf-keras-vis' to float precision."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    x, meta = model_inputs(classifier, photo())
    reference = (GradcamPlusPlus if plus_plus else Gradcam)(classifier.model, model_modifier=ReplaceToLinear(), clone=True)
    ours = classifier.explainer("Grad-CAM++" if plus_plus else "Grad-CAM")
    target = np.eye(len(sc.CLASSES), dtype=np.float32)[sc.CLASSES.index("mel")]
    for layer, mine in [(ours.layer, ours), (explain.finer_layer(classifier.model), None)]:
        mine = mine or (explain.GradCamPlusPlus if plus_plus else explain.GradCam)(classifier, layer)
        expected = reference(CategoricalScore([sc.CLASSES.index("mel")]), [x, meta], penultimate_layer=layer,
                             seek_penultimate_conv_layer=False, expand_cam=False, normalize_cam=True)
        eager = mine._cam(*map(tf.constant, (x, meta, target))).numpy()
        np.testing.assert_allclose(eager, np.asarray(expected)[0], atol=1e-4)  # the maths, on the same activations
        # The compiled graph fuses ops (oneDNN), moving the activations by ~5e-6 relative; Grad-CAM++'s alpha
        # denominators 2g^2 + g^3 * sum(A) can cancel to 0.3 % of their terms and amplify that to 4.4e-4 on
        # EfficientNet-Lite0's 12x12 grid. Plain Grad-CAM moved 4e-6 on one machine and 2.6e-4 on another
        # (mobilenetv2-192-robust; within 1e-4 with TF_ENABLE_ONEDNN_OPTS=0): oneDNN picks kernels by processor. A wrong
        # formula moves the map by ~0.1.
        got = mine._compiled(x, meta, target).numpy()
        np.testing.assert_allclose(got, eager, atol=1e-3)


@pytest.mark.parametrize("method", explain.METHODS)
def test_maps_are_0_to_1_at_the_photo_size(classifier, method):
    for image in (photo(1), photo(2, (600, 450)), photo(3, (97, 131))):
        heatmap = classifier.explainer(method)(image)
        assert heatmap.shape == image.shape[:2] and heatmap.dtype == np.float32
        assert np.isfinite(heatmap).all() and 0 <= heatmap.min() and heatmap.max() <= 1 and heatmap.max() > 0.5


def test_finer_grid_is_at_least_12_by_12_and_finer_than_features(classifier):
    fine, coarse = (classifier.explainer(m).grid for m in ("Grad-CAM (finer grid)", "Grad-CAM"))
    rows, cols = map(int, fine.split("x"))
    assert min(rows, cols) >= explain.FINER_GRID_SIDE and rows > int(coarse.split("x")[0])


def test_multi_grid_layercam_is_the_product_of_each_grids_layercam(classifier):
    """'LayerCAM (n grids agreeing)': the finer grid, then each next finer one, and the map is the product of
    each grid's own LayerCAM on the photo, scaled to peak 1."""
    image = photo(5)
    for count in (2, 3):
        product = classifier.explainer(f"LayerCAM ({count} grids agreeing)")
        assert product.layers == explain.finer_layers(classifier.model, count)
        assert product.layers[0] == explain.finer_layer(classifier.model)
        sides = [explain.spatial_side(classifier.model.get_layer(name)) for name in product.layers]
        assert sides == sorted(set(sides)) and product.grid == "+".join(f"{s}x{s}" for s in sides)
        expected = np.prod([explain.LayerCam(classifier, name)(image, None, "mel") for name in product.layers], axis=0)
        np.testing.assert_allclose(product(image, None, "mel"), expected / expected.max(), atol=1e-4)


def test_explainers_are_built_once_and_shared_across_threads(classifier):
    method = classifier.default_heatmap_method
    assert method in explain.METHODS and classifier.explainer() is classifier.explainer(method)
    images = [photo(seed) for seed in range(6)]
    sequential = [classifier.explainer()(im, None, "nv") for im in images]
    with ThreadPoolExecutor(6) as pool:
        parallel = list(pool.map(lambda im: classifier.explainer()(im, None, "nv"), images))
    for a, b in zip(sequential, parallel):
        np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="Unknown heat-map method"):
        classifier.explainer("Saliency")


def test_default_class_is_the_predicted_one(classifier):
    image = photo(4)
    explainer = classifier.explainer("Grad-CAM")
    np.testing.assert_allclose(explainer(image), explainer(image, None, classifier.predict(image).top), atol=1e-5)


def off_centre_lesion(seed: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The drawn lesion rolled to one of four off-centre spots, with its centre (row, column)."""
    image = photo(seed, (300, 225))
    dy, dx = [(-55, -80), (55, 80), (-55, 80), (55, -80)][seed % 4]
    return np.roll(image, (dy, dx), axis=(0, 1)), (225 // 2 + dy, 300 // 2 + dx)


def test_served_map_points_at_an_off_centre_lesion_more_than_a_centred_blob():
    """On a drawn, off-centre dark blob the served heat-map puts more of its mass near the blob than a
    centred Gaussian of the map's own spread does (the app's default bundle, predicted class)."""
    classifier = sc.load_classifier()
    yy, xx = np.mgrid[:225, :300]
    for seed in range(4):
        image, (cy, cx) = off_centre_lesion(seed)
        near = (np.hypot(yy - cy, xx - cx) < 60).astype(np.float32)
        heatmap = classifier.explainer()(image)
        blob = centred_gaussian(image.shape[:2], np.sqrt(second_moment(heatmap) / 2))
        assert share_in_mask(heatmap, near) > share_in_mask(blob, near) + 0.1, seed


def test_lesion_share_measure():
    mask = np.zeros((150, 200), np.float32)
    mask[50:100, 75:125] = 1
    assert share_in_mask(mask, mask) == 1 and share_in_mask(1 - mask, mask) == 0
    assert share_in_mask(np.zeros_like(mask), mask) == pytest.approx(mask.mean())  # a blank map counts as uniform
    assert second_moment(centred_gaussian((301, 301), 10)) == pytest.approx(2 * 10 ** 2, rel=1e-3)
    low, high = bootstrap_ci(np.r_[np.zeros(50), np.ones(50)])
    assert low < 0.5 < high


def test_resize_map_offset_moves_the_cells_down_and_right():
    cell = np.zeros((6, 6), np.float32)
    cell[2, 2] = 1
    plain, moved = explain.resize_map(cell, (192, 192)), explain.resize_map(cell, (192, 192), explain.cell_offset(192, 6))
    peak = lambda m: np.unravel_index(np.argmax(m), m.shape)  # noqa: E731
    assert peak(plain) == (79, 79) and peak(moved) == (95, 95)  # centre 32 * 2.5 - 0.5, then + (32 - 1) / 2


def test_overlay_blends_with_matplotlib_colours():
    from matplotlib import colormaps

    image = np.full((20, 30, 3), 100, np.uint8)
    ramp = np.tile(np.linspace(0, 1, 30, dtype=np.float32), (20, 1))
    for name in ("jet", "viridis"):
        expected = (colormaps[name](ramp)[..., :3] * 255)
        assert np.abs(explain.colorize(ramp, name).astype(float) - expected).max() <= 0.5
    np.testing.assert_array_equal(explain.overlay(image, ramp, opacity=0), image)
    np.testing.assert_array_equal(explain.overlay(image, ramp, opacity=1), explain.colorize(ramp))
    assert explain.overlay(image, np.zeros((3, 3)), 0.5).shape == image.shape  # small maps are resized first


def fake_measurement(gains: dict[str, float], n: int = 20) -> dict:
    """What ``heatmap_eval.measure`` returns, with each map's mean gain over its own blob set."""
    rng = np.random.default_rng(0)
    out = {}
    for name, gain in gains.items():
        blob = rng.uniform(0.4, 0.6, n)
        out[name] = {"shares": blob + gain, "blob_shares": blob, "grid": "12x12", "ms_per_image": 30.0,
                     "blob_ms_per_image": 0.1, "sigma_px": 25.0}
    return out


def test_default_is_chosen_on_val_and_every_reported_figure_is_test():
    val = fake_measurement({heatmap_eval.SOFT_ATTENTION: 0.3, "Grad-CAM": 0.05, "LayerCAM (finer grid)": 0.12})
    test = fake_measurement({heatmap_eval.SOFT_ATTENTION: 0.3, "Grad-CAM": 0.20, "LayerCAM (finer grid)": 0.10}, n=30)
    result, card = heatmap_eval.summarise(val, test)
    # the soft attention is measured but is not a method the app can serve; test would have picked Grad-CAM
    assert result["default_method"] == card["default"] == "LayerCAM (finer grid)"
    assert result["chosen_on"] == card["chosen_on"] == "val" and result["split"] == "test"
    assert result["n_images"] == 30 and result["n_images_val"] == card["n_images_val"] == 20
    assert card["val_gain"] == pytest.approx(0.12)
    assert card["share_in_lesion"] == pytest.approx(test["LayerCAM (finer grid)"]["shares"].mean())
    assert card["baseline"] == pytest.approx(test["LayerCAM (finer grid)"]["blob_shares"].mean())
    rows = {r["name"]: r for r in result["methods"]}
    assert list(rows)[-1] == heatmap_eval.BASELINE and rows["Grad-CAM"]["share_in_lesion"] == pytest.approx(
        test["Grad-CAM"]["shares"].mean())
    assert result["val_gain_over_own_blob"]["Grad-CAM"]["gain"] == pytest.approx(0.05)


def test_heatmaps_command_measures_val_then_test_and_writes_the_test_table(synthetic_data, tmp_path, monkeypatch):
    """The wiring of ``evaluate_heatmaps`` with the measuring stubbed: one deterministic subsample per split,
    the choice from val, the bundle's JSON and card from test (the page reads ``methods`` and ``n_images``)."""
    from skin_core import classifier as classifier_module

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.keras").write_bytes(b"")
    (bundle / "card.json").write_text(json.dumps({"architecture": "MobileNetV2", "input_size": 192,
                                                  "classes": list(sc.CLASSES), "temperature": 1.5}))
    stub = type("Stub", (), {"explainer": lambda self, name: name})()
    monkeypatch.setattr(classifier_module, "load_classifier", lambda path: stub)
    seen = []

    def fake_measure(classifier, table, data_dir, explainers, progress=True):
        (split,) = set(table["split"])
        seen.append((split, tuple(table["image_id"])))
        assert classifier is stub and list(explainers) == list(explain.METHODS) and len(table) == 5
        favourite = explain.METHODS[0] if split == "val" else explain.METHODS[1]
        return fake_measurement({name: 0.2 if name == favourite else 0.0 for name in explain.METHODS}, len(table))

    monkeypatch.setattr(heatmap_eval, "measure", fake_measure)
    split_file = synthetic_data / "split.csv"
    result = heatmap_eval.evaluate_heatmaps(sc.ModelBundle.open(bundle), synthetic_data, 5, split_file, progress=False)
    assert [split for split, _ in seen] == ["val", "test"]
    val_sample = heatmap_eval.subsample(synthetic_data, "val", 5, split_file)  # deterministic
    assert seen[0][1] == tuple(val_sample["image_id"])
    written = json.loads((bundle / "attention_in_lesion.json").read_text())
    card = json.loads((bundle / "card.json").read_text())
    assert written["default_method"] == card["heatmap"]["default"] == explain.METHODS[0] == result["default_method"]
    assert written["split"] == "test" and written["chosen_on"] == "val" and written["n_images"] == 5
    assert {"name", "share_in_lesion", "ci95", "grid", "ms_per_image"} <= set(written["methods"][0])
    assert card["temperature"] == 1.5 and card["heatmap"]["chosen_on"] == "val"  # the rest of the card survives
    assert card["heatmap"]["val_gain"] == pytest.approx(0.2)
