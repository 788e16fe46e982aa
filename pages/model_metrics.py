"""Model metrics: every figure here is read from the bundles' own files, none is typed in."""

import json
from pathlib import Path

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

import skin_core as sc

BENCH_FILE = Path(__file__).resolve().parent.parent / "bench" / "results.json"


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
            "Size (MB)": b.model_file.stat().st_size / 1e6, "Input (px)": b.input_size,
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


def confusion(metrics: dict):
    matrix = pd.DataFrame(metrics["confusion_matrix"], index=sc.CLASSES, columns=sc.CLASSES)
    figure = px.imshow(matrix, text_auto=True, color_continuous_scale="Blues", aspect="equal",
                       labels=dict(x="Predicted", y="True", color="Images"), title="Confusion matrix")
    figure.update_layout(height=420, margin=dict(l=10, r=10, t=40, b=10))
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
        continue
    a, b, c, d = st.columns(4)
    a.metric("Balanced accuracy", f"{metrics['balanced_accuracy']:.3f}")
    b.metric("Macro F1", f"{metrics['macro_f1']:.3f}")
    c.metric("Macro AUC", f"{metrics['macro_auc']:.3f}")
    d.metric("Accuracy", f"{metrics['accuracy']:.3f}")
    if "balanced_accuracy_95ci" in metrics:
        lo, hi = metrics["balanced_accuracy_95ci"]
        alo, ahi = metrics["macro_auc_95ci"]
        st.caption(f"Bootstrap 95% intervals: balanced accuracy {lo:.3f} to {hi:.3f}; macro AUC {alo:.3f} to {ahi:.3f}.")
    st.dataframe(per_class_table(metrics), column_config={
        c: st.column_config.NumberColumn(format="%.3f") for c in ["Precision", "Recall", "Specificity", "F1", "Auc"]})
    left, middle, right = st.columns(3)
    left.plotly_chart(confusion(metrics), width="stretch")
    middle.plotly_chart(roc(metrics), width="stretch")
    right.plotly_chart(reliability(metrics), width="stretch")
