"""The Streamlit page: demo photos and uploads, each with the model's verdict.

Started by `muffin-v-chihuahua run-demo` (python -m streamlit run <this file>). Streamlit reruns this
script on every interaction; the model is loaded once per process by st.cache_resource.
With INFERENCE_URL set, the page is a front end: the service there (`muffin-v-chihuahua serve`) predicts.
Else MUFFIN_V_CHIHUAHUA_MODEL_DIR names the model folder (`run-demo --model-dir`; default: the package's).
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import streamlit as st
from PIL import Image

from muffin_v_chihuahua import __version__, demo, engines, heatmaps, images, remote
from muffin_v_chihuahua.classifier import Classifier, ModelFilesError, Prediction, model_dir_from_environment

DEMO_COUNT = 3
OVERLAY_SIDE = 1024  # px: the overlay is drawn on a copy no larger than a column shows it


class Model(Protocol):
    """What the page asks of a model: the embedded Classifier and remote.RemoteClassifier both answer it."""

    @property
    def card(self) -> dict[str, Any]: ...
    @property
    def engine(self) -> str: ...
    @property
    def input_size(self) -> tuple[int, int]: ...
    def predict(self, batch: Sequence[np.ndarray], heatmap: bool = False) -> list[Prediction]: ...


EMOJI = {"chihuahua": "🐶", "muffin": "🍪", "neither": "🤷"}
EVIDENCE_HELP = (
    "Evidence: how much of ImageNet's probability lies on what the dataset's photos of the head's class look like "
    "to ImageNet (the model card lists those classes). Too little, and the photo is neither."
)


@st.cache_resource(show_spinner="Loading the model…")
def load_classifier(engine: str, model_dir: Path | None) -> Classifier:
    started = time.monotonic()
    classifier = Classifier(engine=engine, model_dir=model_dir)
    # One line per load in the server's log: every browser session shares this one model.
    print(
        f"muffin-v-chihuahua: model loaded ({classifier.engine}) in {time.monotonic() - started:.2f} s",
        file=sys.stderr,
        flush=True,
    )
    return classifier


# Front-end mode. A failure raises, and st.cache_resource never caches an exception, so the next run asks
# again; a working client is kept a minute (then its connections are closed), so a newly released model's card
# shows within a minute.
@st.cache_resource(show_spinner="Asking the inference service…", ttl=60, on_release=remote.RemoteClassifier.close)
def connect_to_service(url: str) -> remote.RemoteClassifier:
    return remote.RemoteClassifier(url)


def shuffle_demo_photos() -> None:
    st.session_state.demo_photos = random.sample(demo.photos(), DEMO_COUNT)


def show_prediction(prediction: Prediction, truth: str | None = None) -> None:
    # "neither" has no probability (the head knows two classes): it shows how little evidence there is instead.
    shown = prediction.evidence if prediction.probability is None else prediction.probability
    verdict = f"**{prediction.verdict}** {EMOJI.get(prediction.verdict, '')} {shown:.1%}"
    if prediction.probability is None:
        verdict += " evidence"
    if truth is not None:
        verdict += " ✅" if prediction.verdict == truth else f" ❌ (it is a {truth})"
    st.markdown(verdict)
    if prediction.reason:
        st.markdown(f"_{prediction.reason}_")
    labels = " · ".join(f"{label.name} {label.probability:.0%}" for label in prediction.imagenet)
    st.caption(f"ImageNet: {labels} · evidence {prediction.evidence:.0%}", help=EVIDENCE_HELP)


def shown(picture: Image.Image, prediction: Prediction, caption: str) -> tuple[Image.Image, str]:
    """The picture and caption to show: with the heatmap overlaid when the prediction carries one."""
    if prediction.heatmap is None:
        return picture, caption
    looked = heatmaps.overlay(picture, prediction.heatmap, longest_side=OVERLAY_SIDE)
    return looked, f"{caption} · where the model looked for a {prediction.heatmap_class}"


def show_demo(classifier: Model, heatmap: bool) -> None:
    st.subheader("Three demo photos")
    st.button("Shuffle & predict", on_click=shuffle_demo_photos, type="primary")
    if "demo_photos" not in st.session_state:
        shuffle_demo_photos()
    photos = st.session_state.demo_photos
    pictures = [images.open_rgb(photo.file.read_bytes(), classifier.input_size) for photo in photos]
    predictions = classifier.predict([images.to_array(p, classifier.input_size) for p in pictures], heatmap)
    for column, photo, picture, prediction in zip(st.columns(DEMO_COUNT), photos, pictures, predictions, strict=True):
        with column:
            image, caption = shown(picture, prediction, f"{photo.name} (true label: {photo.label})")
            st.image(image, caption=caption, width="stretch")
            show_prediction(prediction, truth=photo.label)


def show_uploads(classifier: Model, heatmap: bool) -> None:
    st.subheader("Your own photos")
    limit_mb = min(st.get_option("server.maxUploadSize"), images.MAX_UPLOAD_MB)
    # No `type=` filter: Streamlit would refuse other names with a traceback; the decoder judges the
    # content instead and names the file and the reason.
    uploads = st.file_uploader(
        f"JPEG, PNG, WebP, GIF, BMP or TIFF, up to {limit_mb} MB each", accept_multiple_files=True
    )
    for upload in uploads or []:
        try:
            picture = images.open_rgb(upload.getvalue(), classifier.input_size)
        except images.ImageError as error:
            st.error(f"{upload.name}: {error}")
            continue
        [prediction] = classifier.predict([images.to_array(picture, classifier.input_size)], heatmap)
        left, right = st.columns([1, 2])
        image, caption = shown(picture, prediction, upload.name)
        left.image(image, caption=caption, width="stretch")
        with right:
            show_prediction(prediction)


def show_model_card(classifier: Model) -> None:
    card = classifier.card
    with st.expander("Model card"):
        st.markdown(
            f"- backbone: **{card['backbone']}**, input {card['input_size'][0]}×{card['input_size'][1]}\n"
            f"- cross-validated accuracy: **{card['evaluation']['accuracy']:.1%}** "
            f"on {card['evaluation']['photos']} photos\n"
            f"- engine: **{classifier.engine}**\n"
            f"- model file: `{card['files'][classifier.engine]['file']}`, "
            f"SHA-256 `{card['files'][classifier.engine]['sha256']}`\n"
            f"- app version {__version__}, model version {card['model_version']} (built {card['built_at']})"
        )
        st.markdown(demo.credit())


def show_service_error(error: remote.ServiceError) -> None:
    """Front-end mode: which service, what happened, and a way to ask again (the page recovers by itself)."""
    st.error(f"No predictions: {error}.")
    st.button("Try again")


st.set_page_config(page_title="Muffin or chihuahua", page_icon="🐶", layout="wide")
st.title("Muffin 🍪 or chihuahua 🐶")
inference_url = os.environ.get(remote.URL_VARIABLE, "").strip()
model: Model
try:
    if inference_url:
        model = connect_to_service(inference_url)
    else:
        model = load_classifier(os.environ.get(engines.ENGINE_VARIABLE, "auto"), model_dir_from_environment())
except (engines.EngineUnavailable, ModelFilesError) as error:
    st.error(f"The model cannot run here: {error}")
    st.stop()
except remote.ServiceError as error:
    show_service_error(error)
    st.stop()
heatmap = st.toggle(
    "Show where the model looked",
    help="Colours each photo by how much each part of it counted towards the verdict (a class activation map)",
)
try:
    show_demo(model, heatmap)
    show_uploads(model, heatmap)
    show_model_card(model)
except remote.ServiceError as error:  # the service went away after the page connected to it
    show_service_error(error)
