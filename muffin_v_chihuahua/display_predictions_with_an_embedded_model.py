"""The Streamlit page: demo photos, uploads and a camera photo, each with the model's verdict; the uploads'
verdicts as CSV.

Started by `muffin-v-chihuahua run-demo` (page_server: `streamlit run <this file>`). Streamlit reruns this
script on every interaction; the model is loaded once per process (page_model), and photo_predictions
predicts only the photos it has not seen, a bounded number at once (prediction_slots).
With INFERENCE_URL set, the page is a front end: the service there (`muffin-v-chihuahua serve`) predicts.
Else MUFFIN_V_CHIHUAHUA_MODEL_DIR names the model folder (`run-demo --model-dir`; default: the package's).
The name is the seed's, kept though the page also runs as a front end: the design sketch and users' scripts run
this file by that name.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence

import streamlit as st
from PIL import Image
from streamlit.runtime.uploaded_file_manager import UploadedFile

from muffin_v_chihuahua import (
    __version__,
    demo,
    heatmaps,
    images,
    page_model,
    prediction_slots,
    remote,
    verdicts_csv,
)
from muffin_v_chihuahua.classifier import Prediction
from muffin_v_chihuahua.environment import INFERENCE_URL_VARIABLE
from muffin_v_chihuahua.photo_predictions import PhotoClassifier, Result, predict_photos, shared_cache
from muffin_v_chihuahua.uploads import MAX_UPLOAD_MB

DEMO_COUNT = 3
CSV_FILE = "muffin-v-chihuahua-verdicts.csv"
OVERLAY_SIDE = 1024  # px: the overlay is drawn on a copy no larger than a column shows it
EMOJI = {"chihuahua": "🐶", "muffin": "🍪", "neither": "🤷"}
EVIDENCE_HELP = (
    "Evidence: the head's class's probability against the likeliest thing ImageNet knows that is not it (a bagel, "
    "a French bulldog...). Too little, and the photo is neither (the model card's threshold)."
)


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


def predicted(model: PhotoClassifier, photos: Sequence[bytes], section: str, heatmap: bool) -> list[Result] | None:
    """One result per photo (photo_predictions: new ones in one batch, each content once), or None after saying
    that the model is busy, with a button to ask again."""
    slots, wait = prediction_slots.from_environment()
    try:
        return predict_photos(model, photos, shared_cache(), slots, wait, heatmap=heatmap)
    except prediction_slots.Busy as error:
        st.warning(f"No predictions: {error}.")
        st.button("Try again", key=f"try-again-{section}")
        return None


def show_photo(picture: Image.Image, prediction: Prediction, caption: str) -> None:
    """The picture, with the heatmap overlaid when the prediction carries one."""
    if prediction.heatmap is not None:
        picture = heatmaps.overlay(picture, prediction.heatmap, longest_side=OVERLAY_SIDE)
        caption = f"{caption} · where the model looked for a {prediction.heatmap_class}"
    st.image(picture, caption=caption, width="stretch")


def show_demo(classifier: PhotoClassifier, heatmap: bool) -> None:
    st.subheader("Three demo photos")
    st.button("Shuffle & predict", on_click=shuffle_demo_photos, type="primary")
    if "demo_photos" not in st.session_state:
        shuffle_demo_photos()
    photos = st.session_state.demo_photos
    results = predicted(classifier, [photo.file.read_bytes() for photo in photos], "demo", heatmap)
    if results is None:
        return
    # Columns stack on a narrow screen (Streamlit puts them one under the other below 640 px).
    for column, photo, result in zip(st.columns(DEMO_COUNT), photos, results, strict=True):
        with column:
            if isinstance(result, images.ImageError):
                st.error(f"{photo.name}: {result}")
                continue
            show_photo(result.picture, result.prediction, f"{photo.name} (true label: {photo.label})")
            show_prediction(result.prediction, truth=photo.label)


def chosen_photos() -> list[UploadedFile]:
    """The uploads, then the camera's photo, if any: the uploader and the camera side by side (stacked on a phone)."""
    limit_mb = min(st.get_option("server.maxUploadSize"), MAX_UPLOAD_MB)
    uploader, camera = st.columns(2)
    # No `type=` filter: Streamlit would refuse other names with a traceback; the decoder judges the
    # content instead and names the file and the reason.
    uploads = uploader.file_uploader(
        f"JPEG, PNG, WebP, GIF, BMP or TIFF, up to {limit_mb} MB each", accept_multiple_files=True
    )
    # The camera starts only when asked: rendering st.camera_input asks the browser for the camera at once.
    with camera:
        photo = st.camera_input("Take a photo") if st.toggle("📷 Use the camera", key="camera") else None
    return [*(uploads or []), *([photo] if photo is not None else [])]


def show_uploads(classifier: PhotoClassifier, heatmap: bool) -> None:
    st.subheader("Your own photos")
    files = chosen_photos()
    results = predicted(classifier, [file.getvalue() for file in files], "uploads", heatmap) if files else None
    if results is None:
        return
    verdicts = []
    for file, result in zip(files, results, strict=True):
        if isinstance(result, images.ImageError):
            st.error(f"{file.name}: {result}")
            continue
        left, right = st.columns([1, 2])
        with left:
            show_photo(result.picture, result.prediction, file.name)
        with right:
            show_prediction(result.prediction)
        verdicts.append((file.name, result.prediction))
    if verdicts:
        st.download_button(
            "Download these verdicts (CSV)",
            verdicts_csv.text(verdicts),
            file_name=CSV_FILE,
            mime="text/csv",
            on_click="ignore",  # a download changes nothing on the page: no rerun
        )


def show_model_card(classifier: PhotoClassifier) -> None:
    card = classifier.card
    with st.expander("Model card"):
        st.markdown(
            f"- backbone: **{card.backbone}**, input {card.input_size[0]}×{card.input_size[1]}\n"
            f"- cross-validated accuracy: **{card.evaluation['accuracy']:.1%}** "
            f"on {card.evaluation['photos']} photos\n"
            f"- engine: **{classifier.engine}**\n"
            f"- model file: `{card.files[classifier.engine].file}`, "
            f"SHA-256 `{card.files[classifier.engine].sha256}`\n"
            f"- app version {__version__}, model version {card.model_version} (built {card.built_at})"
        )
        st.markdown(demo.credit())


def show_service_error(error: remote.ServiceError) -> None:
    """Front-end mode: which service, what happened, and a way to ask again (the page recovers by itself)."""
    st.error(f"No predictions: {error}.")
    st.button("Try again")


st.set_page_config(page_title="Muffin or chihuahua", page_icon="🐶", layout="wide")
st.title("Muffin 🍪 or chihuahua 🐶")
inference_url = os.environ.get(INFERENCE_URL_VARIABLE, "").strip()
model: PhotoClassifier
try:
    prediction_slots.from_environment()  # a bad setting is said once, up front, not in each section
    if inference_url:
        model = connect_to_service(inference_url)
    else:
        with st.spinner("Loading the model…"):  # shown only if it takes over half a second: not once it is loaded
            model = page_model.classifier_from_environment()
except page_model.CANNOT_LOAD as error:  # prediction_slots' SettingError among them
    st.error(f"The model cannot run here: {error}")
    st.stop()
except remote.ServiceError as error:
    show_service_error(error)
    st.stop()
heatmap = st.toggle(
    "Show where the model looked",
    key="heatmap",
    help="Colours each photo by how much each part of it counted towards the verdict (a class activation map)",
)
try:
    show_demo(model, heatmap)
    show_uploads(model, heatmap)
    show_model_card(model)
except remote.ServiceError as error:  # the service went away after the page connected to it
    show_service_error(error)
