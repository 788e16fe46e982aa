"""Command line: train, evaluate, predict, split."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys


@contextlib.contextmanager
def quiet_tensorflow_start():
    """Keep TensorFlow's C++ start-up lines (oneDNN, cudart_stub, cpu_feature_guard, cuInit, absl) out
    of ``python -m skin_core``'s output unless ``--verbose``; the app and the tests are left alone.

    TF_CPP_MIN_LOG_LEVEL=3, read once at TensorFlow's import, silences the later lines (cuInit), but
    the libraries write the others while loading whatever it says (tensorflow#100442), so fd 2 goes
    to /dev/null for the block and is restored after it (a Python traceback from it still prints).
    skin_core/__init__.py wraps its first TensorFlow import in this; ``sys.argv[0]`` is "-m" only
    while ``python -m`` imports the package it runs.
    """
    if sys.argv[:1] != ["-m"] or "--verbose" in sys.argv:
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _train(args) -> int:
    from .training import TrainConfig, train

    fields = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None}
    train(TrainConfig(**fields))
    return 0


def _distill(args) -> int:
    from .function_matching import DistillConfig, distill, finish

    if not args.finish:
        fields = {k: v for k, v in vars(args).items() if k in DistillConfig.__dataclass_fields__ and v is not None}
        if args.minutes is not None:
            fields["epochs"] = None
        distill(DistillConfig(**fields))
    if not args.train_only:
        bundle = finish(args.out, args.data, args.split_file)
        print(f"bundle written to {bundle.path} (T={bundle.temperature:.3f})")
    return 0


def _evaluate(args) -> int:
    from .bundle import ModelBundle
    from .evaluation import evaluate_bundle, evaluate_shifts

    bundle = ModelBundle.open(args.bundle)
    result = evaluate_bundle(bundle, args.data, args.split, args.split_file, args.bootstrap)
    for variant in ("with_metadata", "without_metadata"):
        m = result[variant]
        print(f"{args.split} {variant}: balanced accuracy {m['balanced_accuracy']:.4f}, macro F1 {m['macro_f1']:.4f}, "
              f"macro AUC {m['macro_auc']:.4f}, melanoma recall {m['per_class']['mel']['recall']:.4f}, "
              f"ECE {m['ece_uncalibrated']:.4f} -> {m['ece']:.4f} (T={result['temperature']:.3f})"
              + _referral_text(m["referral"]))
    if result["without_metadata"]["referral"] and args.split == "test":
        point = result["without_metadata"]["referral"]
        bundle.update_card(referral={**bundle.card["referral"], "test_sensitivity": point["sensitivity"],
                                     "test_specificity": point["specificity"]})
    print(f"wrote {args.bundle}/metrics_{args.split}.json")
    if args.shifts:
        _print_shifts(evaluate_shifts(bundle, args.data, args.split, args.split_file), args.bundle)
    return 0


def _print_shifts(shifts: dict, bundle_path) -> None:
    print(f"{'shift':<20} {'bal.acc':>7} {'drop':>6} {'AUC':>6} {'mel sens':>8} {'mel spec':>8}  (metadata unknown)")
    for row in shifts["shifts"]:
        print(f"{row['name']:<20} {row['balanced_accuracy']:7.4f} {row['balanced_accuracy_drop']:6.3f} "
              f"{row['macro_auc']:6.4f} {_number(row['melanoma_sensitivity']):>8} {_number(row['melanoma_specificity']):>8}")
    print(f"worst shift: {shifts['worst_shift']}; wrote {bundle_path}/metrics_shift_{shifts['split']}.json")


def _ensemble(args) -> int:
    from .ensemble import make_ensemble

    bundle = make_ensemble(args.members, args.out, args.data, args.split_file, args.views)
    print(f"wrote {bundle.path} (members {', '.join(bundle.card['members'])}, T={bundle.temperature:.3f}); "
          f"next: evaluate --shifts, referral, external, heatmaps as for any bundle")
    return 0


def _compare(args) -> int:
    import json
    from pathlib import Path

    from .bundle import ModelBundle
    from .evaluation import compare_on_validation

    result = compare_on_validation([ModelBundle.open(b) for b in args.bundles], args.data, args.split_file, args.tta)
    print("| candidate | val BA clean | val BA shifted (mean) | worst shift | val macro AUC | val mel AUC "
          "| referral spec. (sens >= 0.95 under every shift) |\n|---|---|---|---|---|---|---|")
    for r in result["candidates"]:
        print(f"| {r['candidate']} | {r['balanced_accuracy_clean']:.3f} | {r['balanced_accuracy_shifted_mean']:.3f} "
              f"| {r['worst_shift']} {r['balanced_accuracy_worst']:.3f} | {r['macro_auc_clean']:.3f} "
              f"| {r['melanoma_auc_clean']:.3f} | {r['referral_specificity_clean']:.3f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _number(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _referral_text(point) -> str:
    if not point:
        return ""
    return f", referral ({point['score']} >= {point['threshold']:.4f}) sensitivity {point['sensitivity']:.4f} specificity {point['specificity']:.4f}"


def _referral(args) -> int:
    from .bundle import ModelBundle
    from .evaluation import choose_referral

    referral, shifts = choose_referral(ModelBundle.open(args.bundle), args.data, args.isic2017, args.split_file,
                                       args.sensitivity)
    for name, point in referral["val_conditions"].items():
        print(f"{name:<40} sensitivity {point['sensitivity']:.4f} specificity {point['specificity']:.4f}")
    others = ", ".join(f"{k}: threshold {v['threshold']:.4f}, clean val specificity {v['val_specificity']:.4f}"
                       for k, v in referral["alternatives"].items())
    print(f"chose {referral['score']} >= {referral['threshold']:.4f} ({others}); stored in {args.bundle}/card.json")
    _print_shifts(shifts, args.bundle)
    return 0


def _external(args) -> int:
    from .bundle import ModelBundle
    from .evaluation import evaluate_external

    result = evaluate_external(ModelBundle.open(args.bundle), args.data)
    for key, m in result["sets"].items():
        print(f"{m['name']}: {m['n_images']} images, melanoma AUC {m['melanoma_auc']:.4f}, balanced accuracy "
              f"{m['balanced_accuracy']:.4f} over {'/'.join(m['classes'])}, argmax melanoma sensitivity "
              f"{m['argmax_melanoma_sensitivity']:.4f}, at the referral rule sensitivity "
              f"{_number(m['melanoma_sensitivity'])} specificity {_number(m['melanoma_specificity'])}")
    print(f"wrote {args.bundle}/metrics_external.json")
    return 0


def _predict(args) -> int:
    from tqdm import tqdm

    from .classifier import load_classifier
    from .errors import SkinCoreError
    from .patient import Patient
    from .predict import expand_inputs, predict_files, read_metadata_csv

    fields = {"age": args.age, "sex": args.sex, "site": args.site}
    try:
        Patient.from_fields(**fields)  # refuse bad command-line fields before any work
        metadata = read_metadata_csv(args.metadata) if args.metadata else None
        classifier = load_classifier(args.model)
    except (SkinCoreError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    paths, skipped = expand_inputs(args.images)
    for path, reason in skipped:
        print(f"skipped {path.name}: {reason}", file=sys.stderr)

    def report(path, row):
        if row.get("error"):
            tqdm.write(f"skipped {path.name}: {row['error']} (error row)", file=sys.stderr)
        elif args.verbose:
            tqdm.write(f"{path.name}: {row['prediction']} {float(row[row['prediction']]):.0%}, refer "
                       f"{row.get('refer', '-')}, not_dermoscopy {row['not_dermoscopy']}, "
                       f"uncertain {row['uncertain']}", file=sys.stderr)

    progress = sys.stderr.isatty() and not (args.quiet or args.verbose)
    errors = predict_files(classifier, paths, args.out, fields, metadata, progress=progress, report=report)
    print(f"wrote {len(paths)} rows to {args.out}: {len(paths) - errors} predicted with {classifier.name}, "
          f"{errors} unreadable (error rows), {len(skipped)} non-image files skipped")
    return 0


def _export(args) -> int:
    from .classifier import find_bundle
    from .errors import SkinCoreError
    from .export import CARD_FILE, export_savedmodel

    try:
        target = export_savedmodel(find_bundle(args.bundle), args.out, args.version)
    except SkinCoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {target} (SavedModel, signature serving_default) and {target / CARD_FILE}")
    return 0


def _split(args) -> int:
    from .data import make_split, read_ham10000

    split = make_split(read_ham10000(args.data))
    split.to_csv(args.out, index=False)
    print(split.groupby(["dx", "split"]).size().unstack())
    return 0


def _report(args) -> int:
    from .report import models_table, update_readme

    if args.readme:
        update_readme(args.readme)
        print(f"updated the Models table in {args.readme}")
    else:
        print(models_table())
    return 0


def _fit_ood(args) -> int:
    from .bundle import ModelBundle
    from .ood_fit import fit_lesion_check

    r = fit_lesion_check(ModelBundle.open(args.bundle), args.data, args.split_file, args.val_budget)
    print(f"feature check on {r['feature_layer']} (fitted on {r['lesions']['train']} train lesions); thresholds: "
          f"image checks at the {r['image_percentile']} percentile of val lesions, feature distance at the "
          f"{r['feature_percentile']} percentile")
    print(f"warnings on {r['non_lesion_images']} non-lesion images ({r['non_lesion_images_derived']} derived): "
          f"{r['warning_rate_non_lesions']:.1%}; on the {r['non_lesion_images'] - r['non_lesion_images_tuning']} "
          f"held out of every choice (scikit-image's) {r['warning_rate_non_lesions_held_out']:.1%}, on the "
          f"{r['non_lesion_images_tuning']} tuning ones {r['warning_rate_non_lesions_tuning']:.1%}; originals "
          f"{r['warning_rate_non_lesions_original']:.1%}, derived {r['warning_rate_non_lesions_derived']:.1%}; "
          f"without the feature check {r['warning_rate_non_lesions_without_feature_check']:.1%}")
    print(f"false warnings on lesions: val {r['false_warning_rate_val_lesions']:.1%}, "
          f"test {r['false_warning_rate_test_lesions']:.1%} "
          f"(test with the patients' metadata {r['false_warning_rate_test_lesions_with_metadata']:.1%})")
    for group, rates in r["per_check"].items():
        print(f"  {group}: " + ", ".join(f"{name} {rate:.1%}" for name, rate in rates.items()))
    print(f"missed: {', '.join(r['non_lesions_missed']) or 'none'}")
    print(f"wrote {args.bundle}/ood_report.json, ood_features.npz and card.json['ood']")
    return 0


def _bench(args) -> int:
    from .bench import BENCH_DIR, markdown, run

    if args.profile:
        from .loadtest import profile_markdown, profile_session

        profile = profile_session()
        print(profile_markdown(profile))
        print(profile["top"])
    if args.load:
        from pathlib import Path

        from .loadtest import run_load

        out = Path(args.out or BENCH_DIR)
        result = run_load(args.load, out, timeout_s=args.load_timeout, photo_folder=args.photos,
                          reduced_motion=args.reduced_motion)
        print((out / "load.md").read_text())
        for error in result["errors"]:
            print(f"session failed: {error}", file=sys.stderr)
        return 0 if result["answered"] == result["sessions"] else 1
    if not args.profile:
        print(markdown(run(args.repeats, args.out or BENCH_DIR, training=args.training)))
    return 0


def _tta(args) -> int:
    from .bundle import ModelBundle
    from .evaluation import measure_tta

    r = measure_tta(ModelBundle.open(args.bundle), args.data, "val", args.split_file)
    for views in (4, 8):
        print(f"{views} views: val balanced accuracy {r['balanced_accuracy']:.4f} -> {r[f'balanced_accuracy_tta{views}']:.4f}; "
              f"macro AUC {r['macro_auc']:.4f} -> {r[f'macro_auc_tta{views}']:.4f}; "
              f"{r['ms_per_image']:.1f} -> {r[f'ms_per_image_tta{views}']:.1f} ms per image (batched)")
    return 0


def _heatmaps(args) -> int:
    from .bundle import ModelBundle
    from .heatmap_eval import evaluate_heatmaps

    r = evaluate_heatmaps(ModelBundle.open(args.bundle), args.data, args.limit, args.split_file)
    print(f"share of each map's mass inside the lesion, {r['split']} split, n = {r['n_images']} photos "
          f"(95% bootstrap CI); the default is chosen on val (n = {r['n_images_val']}, last column)")
    print(f"{'method':<38} {'share':>6} {'95% CI':>15} {'grid':>17} {'ms/photo':>9}  gain over a centred blob of its "
          f"spread: test [95% CI] (sigma)   val")
    for m in r["methods"]:
        own, val = r["against_own_blob"].get(m["name"]), r["val_gain_over_own_blob"].get(m["name"])
        gain = f"{own['gain']:+.3f} [{own['ci95'][0]:+.3f}, {own['ci95'][1]:+.3f}] (sigma {own['sigma_px']:.0f} px)" if own else ""
        val_gain = f"   {val['gain']:+.3f}" if val else ""
        print(f"{m['name']:<38} {m['share_in_lesion']:6.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}] {m['grid']:>17} "
              f"{m['ms_per_image']:9.1f}  {gain}{val_gain}")
    print(f"default (chosen on val): {r['default_method']}; "
          f"wrote {args.bundle}/attention_in_lesion.json and card.json['heatmap']")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .data import AUGMENTATIONS, SPLIT_FILE
    from .images import VIEWS

    parser = argparse.ArgumentParser(prog="python -m skin_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model and write a bundle (resumes if --out has a backup)")
    t.add_argument("--backbone", required=True, help="a name from the registry, e.g. MobileNetV3Large")
    t.add_argument("--data", required=True, help="HAM10000 folder (metadata CSV + images)")
    t.add_argument("--out", required=True, help="bundle directory to write")
    t.add_argument("--init", default="none", help="imagenet | none | path to a no-top .weights.h5 file")
    t.add_argument("--preprocessing", choices=["tf", "torch", "caffe", "none"],
                   help="input scaling; default: the registry's; required with --init PATH "
                        "(torch for torchvision conversions such as ../shared/weights)")
    t.add_argument("--image-size", type=int)
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--learning-rate", type=float, default=1e-3)
    t.add_argument("--adam-epsilon", type=float, default=0.1)
    t.add_argument("--patience", type=int, default=8)
    t.add_argument("--lr-patience", type=int, default=3)
    t.add_argument("--meta-units", type=int, default=4096)
    t.add_argument("--heads", type=int, default=16)
    t.add_argument("--blank-probability", type=float, default=0.1)
    t.add_argument("--label-smoothing", type=float, default=0.0)
    t.add_argument("--mixup-alpha", type=float, default=0.0, help="mixup Beta(alpha, alpha); 0: off")
    t.add_argument("--bn-momentum", type=float, help="batch-norm momentum override (e.g. 0.9 from scratch)")
    start = t.add_mutually_exclusive_group()  # a warm start's weights would replace the zeroed classifier
    start.add_argument("--zero-head", action="store_true",
                       help="start the classifier at zero: equal probabilities, not confident random guesses")
    start.add_argument("--warm-start", help="bundle of the same backbone and size whose weights start training")
    t.add_argument("--teacher", help="bundle to distil from (knowledge distillation)")
    t.add_argument("--distill-weight", type=float, default=0.7, help="share of the teacher's term in the loss")
    t.add_argument("--distill-temperature", type=float, default=2.0)
    t.add_argument("--lr-schedule", choices=["plateau", "cosine"], default="plateau")
    t.add_argument("--augmentation", choices=list(AUGMENTATIONS), default="paper",
                   help="; ".join(f"{name}: {a.description}" for name, a in AUGMENTATIONS.items()))
    t.add_argument("--colour-constancy", type=float, default=0.0,
                   help="Minkowski power of a Shades of Gray layer at the input (6 as the ISIC winners; 0: none)")
    t.add_argument("--detail-side", type=int, help="training images' detail level in px (default: measured)")
    t.add_argument("--isic2017", help="ISIC 2017 folder: its train split is trained on beside HAM10000")
    t.add_argument("--monitor-metadata", choices=["patients", "unknown"], default="patients",
                   help="validation records for choosing the checkpoint: the patients' or all unknown")
    t.add_argument("--split-file", default=str(SPLIT_FILE))
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--verbose", type=int, choices=[0, 1, 2])
    t.set_defaults(run=_train)

    d = sub.add_parser("distill", help="function matching: a student learns only a teacher bundle's "
                       "probabilities on shared strong views (any Keras backend; JAX on a GPU)")
    d.add_argument("--teacher", required=True, help="bundle (or ensemble) to match")
    d.add_argument("--backbone", required=True, help="the student, a name from the registry")
    d.add_argument("--data", required=True, help="HAM10000 folder: train images to match on, val for --finish")
    d.add_argument("--out", required=True, help="bundle directory to write")
    d.add_argument("--image-size", type=int, default=192, help="the teacher's input size")
    length = d.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=300, help="length of the cosine schedule")
    length.add_argument("--minutes", type=float, help="instead of --epochs: fit the schedule to this wall time")
    d.add_argument("--batch-size", type=int, default=256)
    d.add_argument("--learning-rate", type=float, default=2e-3)
    d.add_argument("--weight-decay", type=float, default=0.02)
    d.add_argument("--blank-probability", type=float, default=0.5)
    d.add_argument("--mixup-alpha", type=float, default=1.0)
    d.add_argument("--colour-constancy", type=float, default=6.0)
    d.add_argument("--warm-start", help="bundle of the student's backbone whose weights start the run (sizes may differ)")
    d.add_argument("--meta-units", type=int, default=4096)
    d.add_argument("--heads", type=int, default=16)
    d.add_argument("--split-file", default=str(SPLIT_FILE))
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--verbose", type=int, choices=[0, 1, 2], default=0)
    stage = d.add_mutually_exclusive_group()
    stage.add_argument("--train-only", action="store_true", help="stop after training (no validation images here)")
    stage.add_argument("--finish", action="store_true", help="only write the bundle from OUT/training")
    d.set_defaults(run=_distill)

    e = sub.add_parser("evaluate", help="write metrics_<split>.json into a bundle")
    e.add_argument("bundle")
    e.add_argument("--data", required=True)
    e.add_argument("--split", choices=["val", "test"], required=True)
    e.add_argument("--split-file", default=str(SPLIT_FILE))
    e.add_argument("--bootstrap", type=int, default=1000, help="resamples for the 95%% intervals (0: none)")
    e.add_argument("--shifts", action="store_true",
                   help="also score the split under the fixed shifts of skin_core/shifts.py (metrics_shift_<split>.json)")
    e.set_defaults(run=_evaluate)

    c = sub.add_parser("compare", help="validation proxy table: bundles alone and averaged (ensemble), clean and shifted")
    c.add_argument("bundles", nargs="+")
    c.add_argument("--data", required=True, help="HAM10000 folder")
    c.add_argument("--split-file", default=str(SPLIT_FILE))
    c.add_argument("--out", help="also write the table as JSON here")
    c.add_argument("--tta", action="store_true", help="each bundle averaged over the 8 flips and quarter turns")
    c.set_defaults(run=_compare)

    n = sub.add_parser("ensemble", help="serve several bundles as one: the mean of their calibrated probabilities")
    n.add_argument("members", nargs="+", help="bundle folders beside --out")
    n.add_argument("--out", required=True, help="the ensemble bundle folder to write (e.g. weights/NAME)")
    n.add_argument("--data", required=True, help="HAM10000 folder: the ensemble's temperature is fitted on val")
    n.add_argument("--views", type=int, default=1, choices=range(1, VIEWS + 1), metavar=f"1-{VIEWS}",
                   help="test-time augmentation: average over this many flips and turns of each photo (1: none)")
    n.add_argument("--split-file", default=str(SPLIT_FILE))
    n.set_defaults(run=_ensemble)

    f = sub.add_parser("referral", help="choose the melanoma referral threshold on validation and store it in the card; "
                                        "rewrites the val shift tests (metrics_shift_val.json) at it")
    f.add_argument("bundle")
    f.add_argument("--data", required=True, help="HAM10000 folder")
    f.add_argument("--isic2017", help="ISIC 2017 folder: its val split joins the validation conditions")
    f.add_argument("--split-file", default=str(SPLIT_FILE))
    f.add_argument("--sensitivity", type=float, default=0.95, help="melanoma sensitivity to keep in every condition")
    f.set_defaults(run=_referral)

    x = sub.add_parser("external", help="external test sets (ISIC 2017 test, Derm7pt): writes metrics_external.json")
    x.add_argument("bundle")
    x.add_argument("--data", required=True, help="folder holding isic2017/ and derm7pt/ (e.g. ../shared/data)")
    x.set_defaults(run=_external)

    p = sub.add_parser("predict", help="classify images into a CSV (unreadable images become error rows)")
    p.add_argument("images", nargs="+", help="image files or folders (a folder's non-image files are named and skipped)")
    p.add_argument("--model", help="bundle folder or name (default: the app's model for this device)")
    p.add_argument("--out", required=True, help="CSV to write")
    p.add_argument("--age", help="patient age in years (0-120); omit for unknown")
    p.add_argument("--sex", help="male | female | unknown")
    p.add_argument("--site", help="body site, e.g. 'lower extremity' | unknown")
    p.add_argument("--metadata", help="CSV with columns image, age, sex, site (per image)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (shown only when stderr is a terminal)")
    p.add_argument("--verbose", action="store_true", help="TensorFlow's start-up logs and one line per image")
    p.set_defaults(run=_predict)

    xp = sub.add_parser("export", help="write a bundle as a TensorFlow SavedModel for TF Serving (OUT/VERSION/)")
    xp.add_argument("bundle", help="bundle folder or name")
    xp.add_argument("--out", required=True, help="model base path, e.g. serving/skin; the SavedModel goes to OUT/VERSION/")
    xp.add_argument("--version", type=int, default=1, help="version folder (TF Serving serves the highest)")
    xp.set_defaults(run=_export)

    s = sub.add_parser("split", help="regenerate the lesion-grouped split CSV (deterministic)")
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(run=_split)

    o = sub.add_parser("fit-ood", help="fit the 'not a dermoscopy photo' check (features: train lesions, thresholds: "
                                       "val lesions) and report its rates on val, test and non-lesion images")
    o.add_argument("bundle")
    o.add_argument("--data", required=True)
    o.add_argument("--split-file", default=str(SPLIT_FILE))
    o.add_argument("--val-budget", type=float, default=0.02,
                   help="largest share of val lesions the combined check may flag; the feature threshold is "
                        "the strictest that keeps it")
    o.set_defaults(run=_fit_ood)

    b = sub.add_parser("bench", help="latency, cold start, memory and throughput of every shipped bundle")
    b.add_argument("--repeats", type=int, default=50)
    b.add_argument("--out", default=None, help="folder for results.json and results.md (default: bench/)")
    b.add_argument("--training", action="store_true", help="also time training batches (pipeline vs compute)")
    b.add_argument("--load", type=int, metavar="N",
                   help="instead: N concurrent browser sessions (Playwright + chromium) against `streamlit run app.py`, "
                        "each uploading a photo and pressing Analyse; writes results.json ('load') and load.md")
    b.add_argument("--load-timeout", type=float, default=600, help="seconds a load-test session may take")
    b.add_argument("--reduced-motion", action="store_true",
                   help="with --load: the pages ask for reduced motion (no spinner animations drawn on the shared "
                        "cores; in a clinic the browsers run on the doctors' own computers)")
    b.add_argument("--photos", help="with --load: a folder of real dermoscopy JPEGs to upload (e.g. ../shared/data/ham10000/images)")
    b.add_argument("--profile", action="store_true",
                   help="instead: profile one analysed app session (AppTest, after a warm-up) and print its CPU costs")
    b.set_defaults(run=_bench)

    a = sub.add_parser("tta", help="measure 8-fold test-time augmentation on the validation split")
    a.add_argument("bundle")
    a.add_argument("--data", required=True)
    a.add_argument("--split-file", default=str(SPLIT_FILE))
    a.set_defaults(run=_tta)

    h = sub.add_parser("heatmaps", help="share of each heat-map's mass inside the lesion (HAM10000 masks): the default "
                                        "method chosen on val, every figure measured on test; writes "
                                        "attention_in_lesion.json and the default method into the card")
    h.add_argument("bundle")
    h.add_argument("--data", required=True, help="HAM10000 folder with masks/ISIC_*_segmentation.png")
    h.add_argument("--limit", type=int, default=300,
                   help="photos drawn from each of the val and test splits, deterministically (0: all)")
    h.add_argument("--split-file", default=str(SPLIT_FILE))
    h.set_defaults(run=_heatmaps)

    r = sub.add_parser("report", help="print the Models table from the bundles' metrics (or update README)")
    r.add_argument("--readme", help="rewrite the table between the models markers in this file")
    r.set_defaults(run=_report)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
