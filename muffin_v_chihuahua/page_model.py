"""The page's embedded model: one Classifier per server process, shared by every browser session
(st.cache_resource), from the settings run-demo puts in the environment. page_server loads it as soon as the server
listens; the page asks for it on each run and finds it loaded."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import streamlit as st

from muffin_v_chihuahua import engines
from muffin_v_chihuahua.classifier import Classifier, ModelFilesError
from muffin_v_chihuahua.environment import (
    SettingError,
    engine_from_environment,
    model_dir_from_environment,
    neither_threshold_from_environment,
    precision_from_environment,
)

# What loading the model can raise, to say as one line (an engine missing, a model file that fails its card, a bad
# setting): page_server logs it, the page shows it.
CANNOT_LOAD = (engines.EngineUnavailable, ModelFilesError, SettingError)


# No spinner of its own: page_server calls it outside any page run, where Streamlit has no page to show one on.
@st.cache_resource(show_spinner=False)
def load_classifier(engine: str, precision: str, model_dir: Path | None, neither_threshold: float | None) -> Classifier:
    started = time.monotonic()
    classifier = Classifier(engine, model_dir, precision, neither_threshold)
    # One line per load in the server's log: every browser session shares this one model.
    print(
        f"muffin-v-chihuahua: model loaded ({classifier.engine}) in {time.monotonic() - started:.2f} s",
        file=sys.stderr,
        flush=True,
    )
    return classifier


def classifier_from_environment() -> Classifier:
    """The model the environment names (engine, precision, folder, threshold); a bad setting raises SettingError."""
    return load_classifier(
        engine_from_environment(),
        precision_from_environment(),
        model_dir_from_environment(),
        neither_threshold_from_environment(),
    )
