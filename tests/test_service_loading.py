"""The model loaded in the background (muffin_v_chihuahua/service/loading.py): ModelLoader.ready and ModelNotReady before,
after and when the load fails, the identity it reports, the loader it is given, and the default loader."""

from __future__ import annotations

import pytest

from muffin_v_chihuahua.classifier import ModelFilesError
from muffin_v_chihuahua.service.loading import ModelLoader, ModelNotReady, load_classifier
from muffin_v_chihuahua.service.settings import Settings
from tests.servers import CARD, PACKAGE
from tests.stub_classifier import StubClassifier


def test_not_ready_until_loaded_then_the_classifier_and_its_identity():
    stub = StubClassifier()
    model = ModelLoader(lambda: stub)
    with pytest.raises(ModelNotReady) as loading:
        model.ready()
    assert not loading.value.failed and loading.value.headers == {"Retry-After": "1"}
    assert "loading" in loading.value.detail and not model.done.is_set()
    model.load()
    assert model.done.is_set() and model.ready() is stub and model.error is None
    assert stub.batches == [1]  # one prediction before it is ready: the model answers
    assert model.identity["model_file"] == CARD["files"]["onnx"]["file"]
    assert model.identity["model_sha256"] == stub.model_sha256 and model.identity["input_size"] == [32, 24]


def test_a_load_that_fails_is_not_ready_for_good_and_says_why():
    def damaged():
        raise ModelFilesError(PACKAGE / "model" / "card.json", "is damaged")

    model = ModelLoader(damaged)
    model.load()
    assert model.done.is_set() and model.classifier is None
    with pytest.raises(ModelNotReady) as failed:
        model.ready()
    assert failed.value.failed and failed.value.headers == {}
    assert failed.value.detail.startswith("the model could not be loaded: ModelFilesError: ")
    assert "card.json is damaged" in failed.value.detail


def test_the_default_loader_loads_the_model_the_settings_name():
    classifier = load_classifier(Settings(engine="onnx", precision="float32", neither_threshold=0.5))
    assert classifier.engine == "onnx" and classifier.neither_rule.threshold == 0.5
