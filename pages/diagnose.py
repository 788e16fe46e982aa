"""Diagnose: upload a dermoscopy photo, enter what is known of the patient, read the model's view."""

import gc
import hashlib
import logging
from datetime import datetime

import streamlit as st

import skin_core as sc

log = logging.getLogger("skin_app")
UPLOAD_TYPES = ["jpg", "jpeg", "png", "tif", "tiff", "bmp", "webp", "gif", "heic"]


@st.cache_resource(show_spinner="Loading the model (once per server)…")
def classifier(bundle_path: str) -> sc.Classifier:
    model = sc.load_classifier(bundle_path)
    model.explainer()  # the default heat-map's graph, traced here rather than for the first doctor
    # TensorFlow, Keras and the model are ~470k long-lived objects; frozen, they leave the collector's
    # rounds, so the full collection Streamlit runs after every script run costs ~1 ms, not ~0.3 s of CPU.
    gc.collect()
    gc.freeze()
    return model


@st.cache_resource
def bundles() -> list[sc.ModelBundle]:
    return sc.list_bundles()


@st.cache_resource
def default_bundle_name() -> str:
    return sc.default_bundle().name


def describe(bundle: sc.ModelBundle) -> str:
    """The caption under the model choice: what the model is and how it did on the held-out test split."""
    test = (bundle.metrics("test") or {}).get("without_metadata", {})
    score = (f", balanced accuracy {test['balanced_accuracy']:.2f} on the held-out test split (mean recall over "
             "the seven diagnoses, patient details unknown)") if test else ""
    return f"{bundle.architecture}, {bundle.input_size}px{score}."


def show_probabilities(prediction: sc.Prediction) -> None:
    """All seven diagnoses as labelled bars, most likely first, malignant or pre-malignant names in red.

    Native progress bars rather than a chart library: a plotly figure cost the doctor's browser ~1.8 s more CPU
    per result on the 2-core machine (bench --load 1), pushing upload -> result from ~1.6 s to ~3 s.
    """
    st.subheader("All seven diagnoses")
    st.caption(":red[Red]: malignant or pre-malignant.")
    for code, probability in prediction.ranked:
        name = f"{sc.CLASS_NAMES[code]} ({code})"
        label = f":red[{name}]" if code in sc.MALIGNANT else name
        st.progress(min(max(float(probability), 0.0), 1.0), text=f"{label}: **{probability:.1%}**")


def show_referral(prediction: sc.Prediction, bundle: sc.ModelBundle) -> None:
    """The melanoma referral line, whatever the top class: red when it fires, a neutral caption when not."""
    statement = sc.referral_statement(prediction, bundle)
    if statement is None:
        return
    if prediction.refer:
        st.error(f"**{sc.referral.REFERRAL_MESSAGE}**  \n:small[{statement}]", icon=":material/priority_high:")
    else:
        st.caption(statement)


def show_result(prediction: sc.Prediction, patient: sc.Patient, cams: dict, model: sc.Classifier,
                created: datetime, method: str, opacity: float, colour_scale: str) -> None:
    """Probabilities, differential, grouping, both overlays and the case report; heat-maps are cached in ``cams``."""
    if patient.is_unknown:
        st.caption("No patient details were given; the model used the photo alone.")
    probabilities_column, summary_column = st.columns([3, 2], gap="large")
    with probabilities_column:
        show_probabilities(prediction)
    with summary_column:
        st.subheader("Differential (top 3)")
        for rank, (code, probability) in enumerate(prediction.ranked[:3], start=1):
            st.markdown(f"{rank}. **{sc.CLASS_NAMES[code]}** ({code}): {probability:.1%}")
        malignant = prediction.malignant_probability
        st.metric("Malignant or pre-malignant (mel + bcc + akiec)", f"{malignant:.1%}")
        st.metric("Benign (nv + bkl + df + vasc)", f"{1 - malignant:.1%}")

    st.subheader("Where the model looked")
    if method not in cams:
        with st.spinner(f"Computing {method}…"):
            cams[method] = model.explainer(method)(prediction.image, patient, prediction.top)
    heatmap = cams[method]
    attention_overlay = sc.overlay(prediction.image, prediction.attention_map, opacity, colour_scale)
    cam_overlay = sc.overlay(prediction.image, heatmap, opacity, colour_scale)
    original_column, attention_column, cam_column = st.columns(3)
    original_column.image(prediction.image, caption="Original", width="stretch")
    attention_column.image(attention_overlay, caption="Soft-attention map (the model's own)", width="stretch")
    cam_column.image(cam_overlay, caption=f"{method} for {sc.CLASS_NAMES[prediction.top]}", width="stretch")
    original_column.download_button(
        "Download case report (PDF)", file_name=f"case_report_{created:%Y%m%d_%H%M}.pdf", mime="application/pdf",
        data=lambda: sc.case_report_pdf(prediction, patient, model.bundle, {method: heatmap}, created,
                                        opacity=opacity, colour_scale=colour_scale),
        on_click="ignore", icon=":material/picture_as_pdf:")
    # PNGs are encoded only when asked for (~0.15 s of CPU each, on every rerun if done here).
    attention_column.download_button("Download attention overlay (PNG)", lambda: sc.png_bytes(attention_overlay),
                                     "attention_overlay.png", "image/png", on_click="ignore")
    cam_column.download_button(f"Download {method} overlay (PNG)", lambda: sc.png_bytes(cam_overlay),
                               f"{method.lower().replace('+', 'p').replace('-', '')}_overlay.png", "image/png",
                               on_click="ignore")
    st.caption("Red: regions that weighed most; blue: least. Heat-maps show what drove the model, not where "
               "the lesion is malignant.")
    views = model.bundle.views
    averaged = (f" Probabilities are the mean over the photo and {views - 1} flipped or turned copies of it; "
                "the maps read the photo as uploaded." if views > 1 else "")
    st.caption(f"Model: {prediction.model_name} ({prediction.architecture}) on {prediction.device}; "
               f"analysis took {prediction.seconds * 1000:.0f} ms.{averaged}")


st.title("Skin lesion decision support")
st.info(
    "Decision support, not a diagnosis. The model estimates how likely each of seven diagnoses is for a "
    "dermoscopy photo. Final diagnosis rests with the clinician and, where in doubt, histopathology.",
    icon=":material/info:",
)

available = bundles()
if not available:
    st.error("No trained model is installed on this server. Please contact your administrator.")
    st.stop()

with st.sidebar:
    st.header("Model")
    names = [b.name for b in available]
    choice = st.selectbox("Model", names, index=names.index(default_bundle_name()))
    bundle = available[names.index(choice)]
    st.caption(f"{describe(bundle)} Default for this server: {default_bundle_name()} "
               f"({'GPU' if sc.gpu_available() else 'CPU'})")
    st.header("Heat-maps")
    default_method = classifier(str(bundle.path)).default_heatmap_method
    method = st.radio("Explanation method", sc.HEATMAP_METHODS, index=sc.HEATMAP_METHODS.index(default_method),
                      key="heatmap_method")
    opacity = st.slider("Overlay opacity", 0.0, 1.0, 0.45, 0.05)
    colour_scale = st.selectbox("Colour scale", ["jet", "inferno", "viridis", "magma"])

upload_column, form_column = st.columns([3, 2], gap="large")
with upload_column:
    upload = st.file_uploader("Dermoscopy photo", type=UPLOAD_TYPES,
                              help="JPEG, PNG, TIFF, BMP, WebP or GIF. The photo stays in memory and is not saved.")
image = None
if upload is not None:
    try:
        image = sc.load_image(upload.getvalue())
    except sc.InvalidImage as error:
        upload_column.error(str(error), icon=":material/broken_image:")
    else:
        upload_column.image(image, caption=f"{upload.name} ({image.shape[1]} x {image.shape[0]} px)", width=360)

with form_column, st.form("patient"):
    st.subheader("Patient")
    age = st.number_input("Age (years)", min_value=0, max_value=120, value=None, step=1,
                          placeholder="unknown", help="Leave empty if unknown.", key="age")
    sex = st.selectbox("Sex", sc.SEXES[::-1], format_func=str.capitalize, key="sex")
    site = st.selectbox("Body site", (sc.UNKNOWN,) + tuple(s for s in sc.SITES if s != sc.UNKNOWN),
                        format_func=str.capitalize, key="site")
    submitted = st.form_submit_button("Analyse", type="primary", disabled=image is None,
                                      width="stretch")

if submitted and image is not None:
    try:
        patient = sc.Patient.from_fields(age=age, sex=sex, site=site)
        with st.spinner("Analysing the photo…"):
            prediction = classifier(str(bundle.path)).predict(image, patient)
    except sc.SkinCoreError as error:
        st.error(str(error))
    except Exception as error:  # never show a traceback to the doctor; log only the error type
        log.error("prediction failed: %s", type(error).__name__)
        st.error("The analysis failed unexpectedly. Please try again; if it persists, contact support.")
    else:
        st.session_state["result"] = {
            "upload": hashlib.sha256(upload.getvalue()).hexdigest(), "patient": patient,
            "bundle": str(bundle.path), "prediction": prediction, "cams": {}, "created": datetime.now().astimezone(),
        }

result = st.session_state.get("result")
if result and upload is not None and result["upload"] == hashlib.sha256(upload.getvalue()).hexdigest():
    prediction: sc.Prediction = result["prediction"]
    patient: sc.Patient = result["patient"]
    model = classifier(result["bundle"])
    st.divider()
    st.header("Result")
    if prediction.not_lesion_reasons:
        st.error("**This does not look like a dermoscopy photo of a skin lesion**: "
                 + "; ".join(prediction.not_lesion_reasons)
                 + ". No diagnosis is offered. Please upload a dermoscopic close-up of the lesion.",
                 icon=":material/hide_image:")
        holder = st.expander("Show the model's output anyway (not meaningful for this photo)")
    else:
        holder = st.container()
    with holder:
        show_referral(prediction, model.bundle)
        reasons = prediction.uncertainty_reasons()
        if reasons and not prediction.not_lesion_reasons:
            st.warning("**The model is unsure about this lesion**: " + "; ".join(reasons)
                       + ". Please treat this result with caution and consider specialist review.",
                       icon=":material/warning:")
        show_result(prediction, patient, result["cams"], model, result["created"], method, opacity, colour_scale)
