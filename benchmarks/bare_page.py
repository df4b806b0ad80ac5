"""The least page Streamlit serves: run-demo's cold start is measured against it (benchmarks/cold_starts.py), started
and waited for the same way. Three marks, as the demo page's three verdicts, so that the same wait ends on both."""

import streamlit as st

st.write("✅ ❌ ✅")
