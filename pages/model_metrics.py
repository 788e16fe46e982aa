"""Model metrics: every figure here is read from the bundles' own files, none is typed in."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

import skin_core as sc

BENCH_FILE = Path(__file__).resolve().parent.parent / "bench" / "results.json"
SCORE = "%.3f"


@st.cache_data
def bench_results() -> dict:
    return json.loads(BENCH_FILE.read_text()) if BENCH_FILE.is_file() else {}


def test_metrics(bundle: sc.ModelBundle, variant: str) -> dict:
    return (bundle.metrics("test") or {}).get(variant, {})


def comparison(bundles: list[sc.ModelBundle]) -> pd.DataFrame:
    latency = {r["bundle"]: r for r in bench_results().get("bundles", [])}
    rows = []
    for b in bundles:
        unknown, known = test_metrics(b, "without_metadata"), test_metrics(b, "with_metadata")
        served = latency.get(b.name, {}).get("served_path_ms", {})
        rows.append({
            "Bundle": b.name, "Backbone": b.architecture, "Parameters (M)": b.card["parameters"] / 1e6,
            "Size (MB)": b.size_mb, "Input (px)": b.input_size,
            "Test bal. acc. (no metadata)": unknown.get("balanced_accuracy"),
            "Test bal. acc. (with metadata)": known.get("balanced_accuracy"),
            "Macro AUC (no metadata)": unknown.get("macro_auc"),
            "Melanoma recall (no metadata)": unknown.get("per_class", {}).get("mel", {}).get("recall"),
            "ECE (no metadata)": unknown.get("ece"),
            "Latency p50 (ms)": served.get("p50"),
        })
    return pd.DataFrame(rows)


def curves(history: pd.DataFrame):
    pairs = [("loss", "Loss"), ("accuracy", "Accuracy"), ("balanced_accuracy", "Balanced accuracy")]
    columns = st.columns(len(pairs))
    for column, (key, title) in zip(columns, pairs):
        long = history.melt(id_vars="epoch", value_vars=[key, f"val_{key}"], var_name="split", value_name=title)
        long["split"] = long["split"].map({key: "train", f"val_{key}": "validation"})
        figure = px.line(long, x="epoch", y=title, color="split", markers=True, title=title, height=280)
        figure.update_layout(margin=dict(l=10, r=10, t=40, b=10), legend_title=None)
        column.plotly_chart(figure, width="stretch")


def per_class_table(metrics: dict) -> pd.DataFrame:
    table = pd.DataFrame(metrics["per_class"]).T
    table.index = [f"{sc.CLASS_NAMES[c]} ({c})" for c in table.index]
    table = table.rename(columns=str.capitalize)
    table["Support"] = table["Support"].astype(int)
    return table


def bundle_json(bundle: sc.ModelBundle, file_name: str) -> dict | None:
    file = bundle.path / file_name
    return json.loads(file.read_text()) if file.is_file() else None


def table(rows: list[dict], columns: dict[str, tuple[str, str | None]]) -> None:
    """One table helper for every optional file: ``columns`` maps key -> (heading, number format or None for text).

    A key missing from a row leaves its cell empty, since the files' writers may not fill every field.
    """
    frame = pd.DataFrame([{heading: row.get(key) for key, (heading, _) in columns.items()} for row in rows])
    st.dataframe(frame, hide_index=True, column_config={
        heading: st.column_config.NumberColumn(format=number) for heading, number in columns.values() if number})


def referral_rule(referral: dict) -> str:
    """The card's referral rule in a sentence; only ``score`` and ``threshold`` are sure to be there."""
    how = [f"on the {referral['chosen_on']} split"] if "chosen_on" in referral else []
    if "target_sensitivity" in referral:
        how.append(f"for ≥ {referral['target_sensitivity']:.0%} melanoma sensitivity")
    score = sc.referral.SCORES.get(referral["score"], referral["score"])
    return (f"Refer when the {score} ≥ **{referral['threshold']:.3f}**"
            + (f" (chosen {' '.join(how)})." if how else "."))


def confusion(metrics: dict):
    """Counts and the share of each true class (row) in every cell; colour follows the row share."""
    counts = np.asarray(metrics["confusion_matrix"])
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure = go.Figure(go.Heatmap(
        z=shares, x=list(sc.CLASSES), y=list(sc.CLASSES), colorscale="Blues", zmin=0, zmax=1,
        colorbar=dict(title="Row share"), texttemplate="%{text}", textfont=dict(size=14),
        text=[[f"{n}<br>{share:.0%}" for n, share in zip(*row)] for row in zip(counts, shares)],
        hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>"))
    figure.update_layout(title="Confusion matrix (images, and % of each true class)", height=620,
                         xaxis=dict(title="Predicted", side="bottom"), yaxis=dict(title="True", autorange="reversed"),
                         margin=dict(l=10, r=10, t=40, b=10))
    return figure


def roc(metrics: dict):
    figure = go.Figure()
    for name, points in metrics["roc_curves"].items():
        auc = metrics["per_class"][name]["auc"]
        figure.add_trace(go.Scatter(x=points["fpr"], y=points["tpr"], mode="lines", name=f"{name} (AUC {auc:.3f})"))
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), showlegend=False))
    figure.update_layout(title="ROC curves, one class vs rest", xaxis_title="1 - specificity",
                         yaxis_title="Sensitivity", height=420, margin=dict(l=10, r=10, t=40, b=10))
    return figure


def reliability(metrics: dict):
    bins = pd.DataFrame([b for b in metrics["reliability"] if b["count"]])
    figure = go.Figure()
    figure.add_trace(go.Bar(x=bins["confidence"], y=bins["accuracy"], width=1 / len(metrics["reliability"]),
                            name="accuracy in bin", marker_color="#3a7ca5"))
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), name="perfect"))
    figure.update_layout(title=f"Reliability (ECE {metrics['ece']:.3f}, after temperature scaling)",
                         xaxis_title="Confidence", yaxis_title="Accuracy", height=420,
                         xaxis_range=[0, 1], yaxis_range=[0, 1], margin=dict(l=10, r=10, t=40, b=10))
    return figure


st.title("Model metrics")
st.caption("Read from each bundle's history.csv, metrics_val.json and metrics_test.json. The test split "
           "(15% of lesions, never used for any choice) is evaluated once, with the patients' metadata and "
           "with every field unknown.")

shipped = sc.list_bundles()
if not shipped:
    st.error("No model bundles are installed.")
    st.stop()

st.header("All models side by side")
st.dataframe(comparison(shipped), hide_index=True,
             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in
                            ["Test bal. acc. (no metadata)", "Test bal. acc. (with metadata)",
                             "Macro AUC (no metadata)", "Melanoma recall (no metadata)", "ECE (no metadata)"]})
bench = bench_results()
if bench:
    with st.expander("Speed on this server (`python -m skin_core bench`)"):
        st.markdown(BENCH_FILE.with_suffix(".md").read_text())

for bundle in shipped:
    st.header(f"{bundle.architecture}: {bundle.name}")
    card = bundle.card
    if bundle.is_ensemble:
        st.caption(f"Ensemble of {', '.join(card['members'])}: {card['combination']}. "
                   f"{card['parameters'] / 1e6:.1f} M parameters, {bundle.input_size}px input, "
                   f"temperature {bundle.temperature:.2f}, {card['date'][:10]}.")
    else:
        st.caption(f"{card['parameters'] / 1e6:.1f} M parameters, {bundle.input_size}px input, trained "
                   f"{card['training']['epochs_run']} epochs (best {card['training']['best_epoch']}), "
                   f"temperature {bundle.temperature:.2f}, {card['date'][:10]}.")
    history = bundle.history()
    if history is not None:
        curves(history)
    split = st.radio("Split", ["test", "val"], horizontal=True, key=f"split-{bundle.name}")
    variant = st.radio("Metadata", ["without_metadata", "with_metadata"], horizontal=True,
                       format_func=lambda v: v.replace("_", " "), key=f"variant-{bundle.name}")
    metrics = (bundle.metrics(split) or {}).get(variant)
    if not metrics:
        st.info(f"No {split} metrics yet: run `python -m skin_core evaluate {bundle.path.name} --split {split}`.")
    else:
        a, b, c, d = st.columns(4)
        a.metric("Balanced accuracy", f"{metrics['balanced_accuracy']:.3f}")
        b.metric("Macro F1", f"{metrics['macro_f1']:.3f}")
        c.metric("Macro AUC", f"{metrics['macro_auc']:.3f}")
        d.metric("Accuracy", f"{metrics['accuracy']:.3f}")
        if "balanced_accuracy_95ci" in metrics:
            lo, hi = metrics["balanced_accuracy_95ci"]
            alo, ahi = metrics["macro_auc_95ci"]
            st.caption(f"Bootstrap 95% intervals: balanced accuracy {lo:.3f} to {hi:.3f}; "
                       f"macro AUC {alo:.3f} to {ahi:.3f}.")
        st.dataframe(per_class_table(metrics), column_config={
            c: st.column_config.NumberColumn(format=SCORE)
            for c in ["Precision", "Recall", "Specificity", "F1", "Auc"]})
        st.plotly_chart(confusion(metrics), width="stretch")
        left, right = st.columns(2)
        left.plotly_chart(roc(metrics), width="stretch")
        right.plotly_chart(reliability(metrics), width="stretch")

    referral = card.get("referral")
    if referral:
        st.subheader("Melanoma referral threshold")
        st.markdown(referral_rule(referral))
        table([{"split": name, "sensitivity": referral.get(f"{key}_sensitivity"),
                "specificity": referral.get(f"{key}_specificity")}
               for key, name in [("val", "validation"), ("test", "test")]],
              {"split": ("Split", None), "sensitivity": ("Melanoma sensitivity", SCORE),
               "specificity": ("Specificity (non-melanoma not referred)", SCORE)})

    shifts = bundle_json(bundle, "metrics_shift_test.json")
    if shifts:
        st.subheader("Robustness to image shifts (test split)")
        table(shifts["shifts"], {"name": ("Shift", None), "description": ("What changes", None),
                                 "balanced_accuracy": ("Balanced accuracy", SCORE),
                                 "balanced_accuracy_drop": ("Drop vs clean", SCORE), "macro_auc": ("Macro AUC", SCORE),
                                 "melanoma_sensitivity": ("Melanoma sensitivity", SCORE),
                                 "melanoma_specificity": ("Melanoma specificity", SCORE)})
        st.caption(f"Worst shift: {shifts.get('worst_shift', '?')}. Sensitivity and specificity at the referral "
                   f"threshold. Made by `python -m skin_core evaluate weights/{bundle.name} "
                   "--data ../shared/data/ham10000 --split test --shifts`.")

    external = bundle_json(bundle, "metrics_external.json")
    if external:
        st.subheader("Other clinics' photos (external sets)")
        table([{**entry, "counts": ", ".join(f"{dx} {n}" for dx, n in entry.get("counts", {}).items())}
               for entry in external["sets"].values()],
              {"name": ("Set", None), "n_images": ("Images", "%d"), "counts": ("Images per diagnosis", None),
               "melanoma_auc": ("Melanoma AUC", SCORE), "balanced_accuracy": ("Balanced accuracy (its classes)", SCORE),
               "melanoma_sensitivity": ("Melanoma sensitivity (referral)", SCORE),
               "melanoma_specificity": ("Melanoma specificity (referral)", SCORE),
               "argmax_melanoma_sensitivity": ("Melanoma sensitivity (top class)", SCORE)})
        st.caption(f"Referral: melanoma named when the referral score crosses the threshold; top class: only when "
                   f"melanoma is the most likely diagnosis. Made by `python -m skin_core external "
                   f"weights/{bundle.name} --data ../shared/data`.")

    attention = bundle_json(bundle, "attention_in_lesion.json")
    if attention:
        st.subheader("Do the heat-maps fall on the lesion?")
        table([{**method, "ci95": "{:.3f} to {:.3f}".format(*method["ci95"]) if "ci95" in method else None}
               for method in attention["methods"]],
              {"name": ("Method", None), "share_in_lesion": ("Share of heat in the lesion", SCORE),
               "ci95": ("95% interval", None), "grid": ("Map grid", None), "ms_per_image": ("ms per image", "%.1f")})
        chosen = (f" (chosen on {attention.get('n_images_val', '?')} validation images)"
                  if attention.get("chosen_on") == "val" else "")
        st.caption(f"Mean share of each map's heat inside the lesion's outline on {attention.get('n_images', '?')} "
                   f"{attention.get('split', 'test')} images; baseline: {attention.get('baseline', '?')}; the app "
                   f"shows {attention.get('default_method', '?')} by default{chosen}. Made by `python -m skin_core "
                   f"heatmaps weights/{bundle.name} --data ../shared/data/ham10000`.")
