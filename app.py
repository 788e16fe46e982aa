"""Skin lesion decision support: the Streamlit entry point (a router; each page is a script)."""

import streamlit as st

st.set_page_config(page_title="Skin lesion decision support", page_icon=":material/dermatology:", layout="wide")

pages = st.navigation(
    [
        st.Page("pages/diagnose.py", title="Diagnose", icon=":material/stethoscope:", default=True),
        st.Page("pages/model_metrics.py", title="Model metrics", icon=":material/monitoring:"),
    ]
)
pages.run()
