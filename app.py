"""Skin lesion decision support: the Streamlit entry point (a router; each page is a script)."""

import sys

import streamlit as st
from streamlit.runtime.scriptrunner import script_runner


def close_matplotlib_figures() -> None:
    """What Streamlit does after every script run, less ``keras.backend.clear_session()``.

    Streamlit clears Keras' session after each run of any script once Keras is imported
    (``script_runner._clean_problem_modules``). That empties TensorFlow's kernel cache, so every later
    prediction and heat-map re-instantiates its compiled graph (about 0.4 s of CPU each instead of
    0.03 s), runs a full garbage collection over the ~470k objects of TensorFlow and the model
    (0.3 s), and resets TensorFlow's default graph while other sessions may be predicting. This app
    builds no Keras model in a script run (every model is a cached resource), so there is nothing to
    clear; matplotlib figures are still closed.
    """
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")


script_runner._clean_problem_modules = close_matplotlib_figures  # the module looks it up at each run's end

st.set_page_config(page_title="Skin lesion decision support", page_icon=":material/dermatology:", layout="wide")

pages = st.navigation(
    [
        st.Page("pages/diagnose.py", title="Diagnose", icon=":material/stethoscope:", default=True),
        st.Page("pages/model_metrics.py", title="Model metrics", icon=":material/monitoring:"),
    ]
)
pages.run()
