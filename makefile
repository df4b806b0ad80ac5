# muffin-v-chihuahua: `make` lists the targets. The two set-up commands: `make run-app` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
BACKBONE ?= auto
PORT ?= 8080
# A dataset folder, or an http(s) URL of an archive (then DATASET_SHA256 pins it).
DATASET ?= $(firstword $(wildcard ../shared/datasets/muffin-v-chihuahua))
DATASET_SHA256 ?=
VENV ?= .venv
APP_VENV ?= .venv-app
PYTEST_ARGS ?=
# `make lock UPGRADE=1` moves every pin to the newest version its range allows; plain `make lock` keeps the pins.
UPGRADE ?=
# TensorFlow's C++ start-up chatter (oneDNN, CPU features) buries the build's own lines; errors still show.
export TF_CPP_MIN_LOG_LEVEL ?= 2

VERSION = $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' muffin_v_chihuahua/__init__.py)
WHEEL = dist/muffin_v_chihuahua-$(VERSION)-py3-none-any.whl
DATA_STAMP = muffin_v_chihuahua/data/SHA256SUMS
MODEL_CARD = muffin_v_chihuahua/model/card.json
# Every venv installs a hash-locked requirements/*.txt with --require-hashes, then this project with --no-deps.
PIP_FLAGS = --quiet --disable-pip-version-check
# dev.txt resolves everything together; the other locks take its versions (-c), so a package has one version in all.
# The locks name no index or find-links: each machine's pip configuration supplies its own.
PIP_COMPILE = CUSTOM_COMPILE_COMMAND='make lock' $(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
	--strip-extras --no-emit-index-url --no-emit-find-links --no-build-isolation

# Debian packages the tests use: Podman and friends build and run the images, Chromium drives the page.
SYSTEM_PACKAGES = podman buildah runc debootstrap uidmap chromium fonts-noto-color-emoji

.PHONY: help system-deps lock lint format k8s-validate data model package-wheel verify-wheel install-app run-app test bench \
	bench-batch bench-scaling clean

help: ## list the targets
	@awk -F ':.*## ' '/^[a-z0-9-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

system-deps: ## install the Debian packages the tests need (Podman, Chromium) when missing
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "system-deps: installing$$(printf ' %s' $$missing)"; \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq $$missing; \
	fi

# The dev lock holds the app's [keras,service] dependencies too; --no-build-isolation builds with its setuptools.
$(VENV)/.installed: requirements/dev.txt setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) --require-hashes -r requirements/dev.txt
	$(VENV)/bin/pip install $(PIP_FLAGS) --no-deps --no-build-isolation -e .
	touch $@

lock: $(VENV)/.installed ## refresh requirements/*.txt from setup.cfg and requirements/*.in (UPGRADE=1: newest in range)
	$(PIP_COMPILE) $(if $(filter 1,$(UPGRADE)),--upgrade) --extra keras --extra service --extra ray -o requirements/dev.txt setup.cfg requirements/dev.in
	$(PIP_COMPILE) -c requirements/dev.txt -o requirements/build.txt requirements/build.in
	$(PIP_COMPILE) -c requirements/dev.txt -o requirements/app.txt setup.cfg
	$(PIP_COMPILE) -c requirements/dev.txt --extra keras -o requirements/keras.txt setup.cfg
	$(PIP_COMPILE) -c requirements/dev.txt --extra service -o requirements/service.txt setup.cfg
	$(PIP_COMPILE) -c requirements/dev.txt --extra ray -o requirements/ray.txt setup.cfg
	$(PIP_COMPILE) -c requirements/dev.txt -o requirements/service-image.txt requirements/service-image.in
	$(PIP_COMPILE) -c requirements/dev.txt -o requirements/frontend-image.txt requirements/frontend-image.in
	$(PIP_COMPILE) $(if $(filter 1,$(UPGRADE)),--upgrade) -o requirements/client.txt requirements/client.in

lint: $(VENV)/.installed ## ruff (lint rules and formatting) and mypy, configured in pyproject.toml
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.installed ## apply ruff's fixes and formatting to the tree
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The manifests, rendered as `kubectl kustomize` renders them and validated strictly (an unknown field fails)
# against one Kubernetes version's schemas, bundled in kubernetes-validate: no cluster needed.
K8S_VERSION ?= 1.32.0
K8S_OVERLAYS = embedded split split-model-volume
# The RayJob (deploy/kubernetes/batch) is KubeRay's kind, which kubernetes-validate does not know: it renders here,
# and tests/test_kubernetes.py checks its fields against KubeRay's v1 API and its pod templates against K8S_VERSION.
K8S_RENDERED = build/kubernetes

k8s-validate: $(VENV)/.installed ## render deploy/kubernetes's overlays with kubectl, validate them for K8S_VERSION
	@command -v kubectl >/dev/null || { echo "k8s-validate: kubectl is missing; install it \
	(https://kubernetes.io/docs/tasks/tools/) to render deploy/kubernetes with 'kubectl kustomize'"; exit 1; }
	@mkdir -p $(K8S_RENDERED)
	@for overlay in $(K8S_OVERLAYS); do \
		kubectl kustomize deploy/kubernetes/overlays/$$overlay > $(K8S_RENDERED)/$$overlay.yaml || exit 1; \
		$(VENV)/bin/kubernetes-validate --strict --quiet -k $(K8S_VERSION) $(K8S_RENDERED)/$$overlay.yaml || exit 1; \
		echo "k8s-validate: $$overlay renders and validates against Kubernetes $(K8S_VERSION)"; \
	done
	@kubectl kustomize deploy/kubernetes/batch > $(K8S_RENDERED)/batch.yaml
	@echo "k8s-validate: batch (a KubeRay RayJob) renders; make test checks it"

data: $(DATA_STAMP) ## copy the labelled photos into the package, SHA-256 checked (DATASET=folder|URL)
$(DATA_STAMP): $(VENV)/.installed builders/data.py
	@test -n "$(DATASET)" || { echo "data: set DATASET to a dataset folder or archive URL"; exit 1; }
	$(VENV)/bin/python -m builders.data --source "$(DATASET)" --sha256 "$(DATASET_SHA256)" --dest muffin_v_chihuahua/data

model: $(MODEL_CARD) ## build the model file and its card (BACKBONE=auto|inception-v3|efficientnet-lite0)
$(MODEL_CARD): $(DATA_STAMP) $(wildcard builders/*.py)
	$(VENV)/bin/python -m builders.model --backbone $(BACKBONE) --data muffin_v_chihuahua/data --out muffin_v_chihuahua/model

package-wheel: $(WHEEL) ## build the wheel: code, model, card, class names and photos
# Every file the wheel packs (code in every subpackage, model files, photos) and what says how to pack it: an edit
# anywhere under the package makes a new wheel for run-app and bench.
PACKAGED_FILES = $(shell find muffin_v_chihuahua -type f -not -path '*/__pycache__/*')
$(WHEEL): $(MODEL_CARD) $(PACKAGED_FILES) setup.cfg setup.py pyproject.toml MANIFEST.in
	rm -rf build dist/*.whl
	$(VENV)/bin/python -m pip wheel --quiet --no-deps --no-build-isolation -w dist .

verify-wheel: $(WHEEL) ## check the wheel holds the model with its card's SHA-256 and every photo
	$(VENV)/bin/python -m builders.verify_wheel $(WHEEL)

install-app: $(APP_VENV)/.installed ## a fresh virtual environment with the wheel only
$(APP_VENV)/.installed: $(WHEEL) requirements/app.txt
	rm -rf $(APP_VENV)
	$(PYTHON) -m venv $(APP_VENV)
	$(APP_VENV)/bin/pip install $(PIP_FLAGS) --require-hashes -r requirements/app.txt
	$(APP_VENV)/bin/pip install $(PIP_FLAGS) --no-deps $(WHEEL)
	touch $@

run-app: verify-wheel install-app ## the main job: data, model, wheel, then the page on PORT (8080)
	$(APP_VENV)/bin/muffin-v-chihuahua run-demo --server.port $(PORT)

# lint comes first: a style or type error fails in seconds, before the data, the model and the wheel are built;
# then the manifests, as fast.
test: $(VENV)/.installed lint k8s-validate system-deps data model verify-wheel ## lint, then run the tests (unit, page, integration)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: system-deps $(VENV)/.installed data model install-app bench-batch ## measure speed, memory and size -> docs/benchmarks.md
	$(VENV)/bin/python -m benchmarks.benchmark --app-venv $(APP_VENV) --wheel $(WHEEL) --python $(PYTHON) --out docs/benchmarks.md

bench-batch: $(VENV)/.installed data model ## batch on Ray against predict on 2,000 photos, the cluster's start-up and memory -> docs/scaling.md
	$(VENV)/bin/python -m benchmarks.batch --out docs/scaling.md

clean: ## remove built artefacts and virtual environments
	rm -rf build dist *.egg-info muffin_v_chihuahua/data muffin_v_chihuahua/model $(VENV) $(APP_VENV) test-artifacts

# ---------------------------------------------------------------------------------------------------
# Containers: the multi-stage `dockerfile` -> an image that serves the page on port 8080.
# `make package-docker run-docker` uses Docker with no extra flags. CONTAINER_ENGINE=podman takes the
# route measured in ../shared/CONTAINERS.md for machines with no Docker engine and no Docker Hub: a
# Debian base image made with debootstrap, chroot isolation, the host's CA bundle for pip, the docker
# format (it keeps HEALTHCHECK), and runc with lowered ulimits to run.
# ---------------------------------------------------------------------------------------------------
CONTAINER_ENGINE ?= docker
IMAGE ?= muffin-v-chihuahua
# The dataset is staged (SHA-256 checked) inside the build context, where the dockerfile's data-builder finds it.
DOCKER_DATASET = build/docker-dataset
# Extra `run` options, e.g. DOCKER_RUN_ARGS="--detach --name demo"; the page is published on loopback only.
DOCKER_RUN_ARGS ?=
PUBLISH_ADDRESS ?= 127.0.0.1
PODMAN_BASE_IMAGE = localhost/python-base:3.11
PODMAN_ROOTFS = build/python-base-rootfs

ifeq ($(CONTAINER_ENGINE),podman)
ENGINE_FLAGS = --runtime runc
BUILD_FLAGS = --isolation chroot --format docker --build-arg BASE_IMAGE=$(PODMAN_BASE_IMAGE) \
	-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro
RUN_FLAGS = --ulimit nofile=4096:4096 --ulimit nproc=4096:4096
BASE_IMAGE_TARGET = podman-base-image
endif

DOCKER_BUILD = $(CONTAINER_ENGINE) build $(BUILD_FLAGS) --build-arg BACKBONE=$(BACKBONE) \
	--build-arg DATASET=$(DOCKER_DATASET) -f dockerfile
# run-services names its two containers CONTAINER_PREFIX-service and CONTAINER_PREFIX-frontend, and runs both
# with the root filesystem read-only and only /tmp writable, as docker-compose.yaml does.
READ_ONLY_ROOT = --read-only --tmpfs /tmp
CONTAINER_PREFIX ?= muffin-v-chihuahua

.PHONY: package-docker run-docker package-services package-batch run-services docker-dataset podman-base-image

docker-dataset: # stage DATASET (SHA-256 checked) into the build context
	@test -n "$(DATASET)" || { echo "package-docker: set DATASET to a dataset folder or archive URL"; exit 1; }
	rm -rf $(DOCKER_DATASET)
	$(PYTHON) -m builders.data --source "$(DATASET)" --sha256 "$(DATASET_SHA256)" --dest $(DOCKER_DATASET)

package-docker: $(BASE_IMAGE_TARGET) docker-dataset ## build the app image IMAGE (CONTAINER_ENGINE=docker|podman, BACKBONE)
	$(DOCKER_BUILD) --target app -t $(IMAGE) .

run-docker: ## run the image package-docker built: the page on PUBLISH_ADDRESS:PORT (127.0.0.1:8080)
	$(CONTAINER_ENGINE) $(ENGINE_FLAGS) run --rm $(RUN_FLAGS) $(DOCKER_RUN_ARGS) -p $(PUBLISH_ADDRESS):$(PORT):8080 $(IMAGE)

# Each role's image holds only what that role imports (requirements/*-image.in): no Streamlit in the service,
# no ONNX Runtime and no model in the front end.
package-services: $(BASE_IMAGE_TARGET) docker-dataset ## build the second mode's images: IMAGE-service and IMAGE-frontend
	$(DOCKER_BUILD) --target service --build-arg LOCK=service-image.txt -t $(IMAGE)-service .
	$(DOCKER_BUILD) --target frontend --build-arg LOCK=frontend-image.txt --build-arg KEEP_MODEL=false \
		-t $(IMAGE)-frontend .

package-batch: $(BASE_IMAGE_TARGET) docker-dataset ## build IMAGE-batch: the app with the [ray] extra, for Ray's nodes
	$(DOCKER_BUILD) --target batch --build-arg LOCK=ray.txt -t $(IMAGE)-batch .

# Docker runs docker-compose.yaml. Podman runs the page inside the service container's network namespace:
# the two share a private loopback, and only the page is published. (A pod would do the same, but its
# infra container cannot take the lowered ulimits this machine needs.)
run-services: ## run the model service and the page that asks it: the page on PUBLISH_ADDRESS:PORT
ifeq ($(CONTAINER_ENGINE),podman)
	podman rm -f $(CONTAINER_PREFIX)-frontend >/dev/null 2>&1 || true
	podman rm -f $(CONTAINER_PREFIX)-service >/dev/null 2>&1 || true
	podman $(ENGINE_FLAGS) run -d $(RUN_FLAGS) $(READ_ONLY_ROOT) --name $(CONTAINER_PREFIX)-service \
		-p $(PUBLISH_ADDRESS):$(PORT):8080 $(IMAGE)-service
	podman $(ENGINE_FLAGS) run --rm $(RUN_FLAGS) $(READ_ONLY_ROOT) $(DOCKER_RUN_ARGS) --name $(CONTAINER_PREFIX)-frontend \
		--network container:$(CONTAINER_PREFIX)-service -e INFERENCE_URL=http://127.0.0.1:8000 $(IMAGE)-frontend
else
	IMAGE=$(IMAGE) PORT=$(PORT) $(CONTAINER_ENGINE) compose up
endif

# benchmarks/scaling.py runs the image with Podman (the options the split overlay's manifest gives its container).
bench-scaling: $(VENV)/.installed package-services ## Podman: one service pod's req/s, latency, peak at the manifest's limits -> docs/scaling.md
	$(VENV)/bin/python -m benchmarks.scaling --image $(IMAGE)-service --out docs/scaling.md

podman-base-image: ## Podman only: make localhost/python-base:3.11 from Debian with debootstrap, once
	@if podman image exists $(PODMAN_BASE_IMAGE); then echo "podman-base-image: $(PODMAN_BASE_IMAGE) exists"; else \
		set -e; rm -rf $(PODMAN_ROOTFS); \
		debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
			bookworm $(PODMAN_ROOTFS) http://deb.debian.org/debian; \
		tar -C $(PODMAN_ROOTFS) -c . | podman import - $(PODMAN_BASE_IMAGE); \
		rm -rf $(PODMAN_ROOTFS); \
	fi
