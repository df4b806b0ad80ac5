"""engines: onnx and keras compute the same thing; onnx runs without TensorFlow; a missing engine is named."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from muffin_v_chihuahua import cpus, engines, images
from muffin_v_chihuahua.classifier import Classifier
from tests.conftest import PACKAGE, imported_after


def run_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_the_onnx_engine_never_imports_tensorflow():
    code = (
        "import numpy as np; from muffin_v_chihuahua.classifier import Classifier; "
        "c = Classifier(engine='onnx'); c.predict([np.zeros((224, 224, 3), np.float32)]); assert c.engine == 'onnx-int8'"
    )
    assert imported_after(code, ("tensorflow", "keras", "tf2onnx")) == []


def test_auto_prefers_onnx_and_falls_back_to_keras():
    assert engines.resolve("auto") == "onnx"
    assert (
        run_python(
            "import sys; sys.modules['onnxruntime'] = None; from muffin_v_chihuahua import engines; "
            "print(engines.resolve('auto'))"
        )
        == "keras"
    )


def test_a_missing_engine_names_what_to_install():
    message = run_python(
        "import sys; sys.modules['tensorflow'] = None; from muffin_v_chihuahua import engines\n"
        "try: engines.resolve('keras')\nexcept engines.EngineUnavailable as e: print(e)"
    )
    assert "muffin-v-chihuahua[keras]" in message


def test_an_unknown_engine_is_refused():
    with pytest.raises(engines.EngineUnavailable, match="unknown engine"):
        engines.resolve("pytorch")


def test_onnx_runtime_uses_every_cpu_this_process_may_use():
    assert engines.OnnxEngine.session_options().intra_op_num_threads == cpus.usable()


def test_every_engine_gives_the_outputs_the_card_names(engine):
    classifier = Classifier(engine=engine)
    outputs = engines.load(engine, PACKAGE / "model" / classifier.card.files[engine].file).run(
        np.zeros((2, *classifier.input_size[::-1], 3), np.float32)
    )
    assert list(outputs._fields) == classifier.card.more["outputs"]
    features = classifier.neither_rule.references["muffin"].shape[1]  # the backbone's pooled channels
    assert [output.shape for output in outputs] == [
        (2, 1000),
        (2, 2),
        (2, *classifier.card.more["heatmap"]["shape"]),
        (2, 1000),
        (2, features),
    ]


def test_the_onnx_engine_runs_where_the_os_has_no_affinity_mask(monkeypatch, labelled_photos):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # as on macOS and Windows
    classifier = Classifier(engine="onnx")
    [prediction] = classifier.predict([images.decode(labelled_photos[0][1].read_bytes(), classifier.input_size)])
    assert prediction.verdict == labelled_photos[0][0]


def test_both_engines_give_the_same_predictions_on_the_dataset_and_on_pictures_that_are_neither(labelled_photos):
    """Verdicts, probabilities, labels and heatmaps."""
    from sklearn.datasets import load_sample_images

    from builders.neither import negative_photos

    # Both float32: the int8 model's own gates are builders.quantize's (and test_classifier's).
    onnx, keras = Classifier(engine="onnx", precision="float32"), Classifier(engine="keras")
    photos = [path.read_bytes() for _, path in labelled_photos] + list(negative_photos().values())
    photos += [Path(path).read_bytes() for path in load_sample_images().filenames]
    batch = [images.decode(data, onnx.input_size) for data in photos]
    ours, theirs = onnx.predict(batch, heatmap=True), keras.predict(batch, heatmap=True)
    assert sum(p.verdict == "neither" for p in ours) >= 20  # the pictures that are neither are judged too
    for mine, other in zip(ours, theirs, strict=True):
        assert (mine.verdict, mine.reason) == (other.verdict, other.reason)
        assert (mine.probability is None) == (other.probability is None)
        assert [label.name for label in mine.imagenet] == [label.name for label in other.imagenet]
        np.testing.assert_allclose(
            [mine.probability or 0, mine.evidence, *(label.probability for label in mine.imagenet)],
            [other.probability or 0, other.evidence, *(label.probability for label in other.imagenet)],
            atol=1e-4,
            strict=False,
        )
        assert mine.heatmap_class == other.heatmap_class
        np.testing.assert_allclose(mine.heatmap, other.heatmap, atol=1e-4 * np.max(other.heatmap), strict=False)


CARD_FILES = {"keras": {}, "onnx": {}, "onnx-int8": {}}  # the entries a card built with its int8 model has


def test_auto_precision_is_the_fastest_model_the_card_has_for_the_engine():
    assert engines.model_file("onnx", "auto", CARD_FILES) == ("int8", "onnx-int8")
    assert engines.model_file("onnx", "auto", {"keras": {}, "onnx": {}}) == ("float32", "onnx")
    assert engines.model_file("keras", "auto", CARD_FILES) == ("float32", "keras")


def test_float32_is_one_choice_away():
    assert engines.model_file("onnx", "float32", CARD_FILES) == ("float32", "onnx")
    assert engines.model_file("onnx", "int8", CARD_FILES) == ("int8", "onnx-int8")


def test_an_unknown_precision_or_one_the_engine_cannot_run_is_refused():
    with pytest.raises(engines.EngineUnavailable, match=r"unknown precision 'int4': choose one of auto, int8, float32"):
        engines.model_file("onnx", "int4", CARD_FILES)
    with pytest.raises(engines.EngineUnavailable, match="the keras engine runs float32 models only, not int8"):
        engines.model_file("keras", "int8", CARD_FILES)
