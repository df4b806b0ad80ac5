# muffin-v-chihuahua: the page on port 8080, the model run by ONNX Runtime (no TensorFlow in the image).
#
#   make package-docker                           # stages the dataset into the context, then `docker build`
#   make run-docker                               # http://127.0.0.1:8080
#   make package-docker CONTAINER_ENGINE=podman   # the Podman route of ../shared/CONTAINERS.md
#
# Stages: data-builder (photos, SHA-256 checked) -> model-builder (TensorFlow: .h5, .onnx, card)
#         -> app-builder (the wheel) -> runtime (a venv with the wheel and its runtime dependencies only)
#         -> page -> app (the default target) | frontend (the page asking the service)
#         -> service (the model over HTTP).
# The pip cache lives in a build cache mount, never in a layer. Dependencies come from the hash-checked
# locks in requirements/ (`make lock`).

ARG BASE_IMAGE=python:3.11-slim
# The runtime's lock: app.txt (everything the wheel requires: the app image), or one role's own, with only what
# that role imports: service-image.txt (no Streamlit), frontend-image.txt (no ONNX Runtime).
ARG LOCK=app.txt
# false: the front end, which asks the service and never loads a model, leaves the model files out.
ARG KEEP_MODEL=true

# --- data-builder: the dataset from the build context -> verified package data (stdlib only) --------
FROM ${BASE_IMAGE} AS data-builder
# A folder inside the build context (`make package-docker` stages it there, checked, from DATASET).
ARG DATASET=build/docker-dataset
WORKDIR /src
COPY builders/__init__.py builders/data.py builders/
COPY ${DATASET} /dataset
RUN python3 -m builders.data --source /dataset --dest /data

# --- model-builder: ImageNet backbone + head -> model/*.h5, *.onnx, card.json, imagenet_classes.json --
FROM ${BASE_IMAGE} AS model-builder
WORKDIR /src
COPY requirements/build.txt requirements/
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv /venv \
    && /venv/bin/pip install --disable-pip-version-check --require-hashes -r requirements/build.txt
COPY builders/ builders/
# Only the runtime modules the builders import (the same decoding, engines and rule as the app): a change
# to the page, the CLI or the service does not retrain the model.
COPY muffin_v_chihuahua/__init__.py muffin_v_chihuahua/images.py muffin_v_chihuahua/card.py muffin_v_chihuahua/classifier.py \
     muffin_v_chihuahua/engines.py muffin_v_chihuahua/cpus.py muffin_v_chihuahua/environment.py \
     muffin_v_chihuahua/evidence.py muffin_v_chihuahua/uploads.py muffin_v_chihuahua/
COPY --from=data-builder /data /data
# auto | inception-v3 | efficientnet-lite0 (auto: InceptionV3 when its weights can be downloaded).
ARG BACKBONE=auto
ENV TF_CPP_MIN_LOG_LEVEL=2
RUN --mount=type=cache,target=/root/.keras \
    /venv/bin/python -m builders.model --backbone "${BACKBONE}" --data /data --out /model

# --- app-builder: sources + the two artefacts -> the wheel, checked against its model card ----------
# On the model builder: its venv has the locked setuptools and wheel, so the wheel builds without an unchecked
# download (--no-build-isolation).
FROM model-builder AS app-builder
WORKDIR /src
COPY setup.py setup.cfg pyproject.toml MANIFEST.in README.md ./
COPY builders/ builders/
COPY muffin_v_chihuahua/ muffin_v_chihuahua/
COPY --from=data-builder /data muffin_v_chihuahua/data
COPY --from=model-builder /model muffin_v_chihuahua/model
# /dist: the wheel, the lock the runtime installs its dependencies from, and SHA256SUMS of both.
RUN /venv/bin/pip wheel --disable-pip-version-check --no-deps --no-build-isolation -w /dist . \
    && /venv/bin/python -m builders.verify_wheel /dist/muffin_v_chihuahua-*.whl
# LOCK comes after the wheel, so that the images built with different locks share one wheel build.
ARG LOCK
COPY requirements/${LOCK} /dist/
RUN sha256sum /dist/muffin_v_chihuahua-*.whl "/dist/${LOCK}" > /dist/SHA256SUMS

# --- runtime: a venv with the wheel and the dependencies its role imports (LOCK, KEEP_MODEL) ------------------
FROM ${BASE_IMAGE} AS runtime
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# The wheel is bind-mounted, not copied: the photos exist once, in site-packages. Buildah (1.28 here)
# reuses a cached RUN even when a bind-mounted stage changed; copying the checksums of the wheel and
# lock first makes it rerun whenever they change (and records what the venv was made from).
COPY --from=app-builder /dist/SHA256SUMS /opt/muffin-v-chihuahua.sha256
ARG LOCK
ARG KEEP_MODEL
# The lock holds every dependency the role imports, so the wheel goes in with --no-deps: one wheel for every
# role, as people install it. The venv keeps the runtime only: pip and setuptools leave once the wheel is in,
# and in the front end the model files (removed in this same layer, or they would still take their space).
RUN --mount=type=bind,from=app-builder,source=/dist,target=/dist \
    --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv "${VIRTUAL_ENV}" \
    && pip install --disable-pip-version-check --require-hashes -r "/dist/${LOCK}" \
    && pip install --disable-pip-version-check --no-deps /dist/muffin_v_chihuahua-*.whl \
    && if [ "${KEEP_MODEL}" = false ]; then rm -r "${VIRTUAL_ENV}"/lib/python3*/site-packages/muffin_v_chihuahua/model; fi \
    && python -m pip uninstall --yes --quiet setuptools pip \
    && useradd --create-home --uid 10001 --user-group app
# Configuration is environment, not edits: the engine and its precision (auto: the gated int8 model; float32 the
# other choice), the service's limits, INFERENCE_URL; STREAMLIT_*.
# ORT_DISABLE_TELEMETRY: ONNX Runtime's telemetry (on Linux since 1.2x) would write a device id and an event
# database under ~/.cache, which a read-only root filesystem refuses, and send them; this turns it all off.
ENV MUFFIN_V_CHIHUAHUA_ENGINE=onnx \
    MUFFIN_V_CHIHUAHUA_PRECISION=auto \
    ORT_DISABLE_TELEMETRY=1 \
    STREAMLIT_SERVER_HEADLESS=true \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /home/app

# --- page: the Streamlit page on 8080 (the model embedded, unless INFERENCE_URL names a service) ----------
FROM runtime AS page
EXPOSE 8080
# No curl in the base: the venv's Python asks Streamlit's own health endpoint.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/_stcore/health', timeout=4)"]
CMD ["muffin-v-chihuahua", "run-demo", "--server.port", "8080", "--server.address", "0.0.0.0"]

# --- frontend: the page asking the model service at INFERENCE_URL; it never loads a model ----------------
# Built with --build-arg LOCK=frontend-image.txt --build-arg KEEP_MODEL=false: no ONNX Runtime, no model files.
FROM page AS frontend
ENV INFERENCE_URL=http://ml-service:8000

# --- service: the model alone, over HTTP (built with --build-arg LOCK=service-image.txt) ------------------
FROM runtime AS service
EXPOSE 8000
# GET / answers 503 while the model loads and 200 once it can predict.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/', timeout=4)"]
CMD ["muffin-v-chihuahua", "serve", "--host", "0.0.0.0", "--port", "8000"]

# --- batch: `muffin-v-chihuahua batch` on a Ray cluster's nodes (built with --build-arg LOCK=ray.txt) -------
# KubeRay runs `ray start` in it on every node (deploy/kubernetes/batch); alone, it shows how batch is called.
FROM runtime AS batch
CMD ["muffin-v-chihuahua", "batch", "--help"]

# --- app: the published image, the page with the model embedded (the last stage: the default target) ---
FROM page AS app
