"""engines: onnx and keras compute the same thing; onnx runs without TensorFlow; a missing engine is named."""

import os
import subprocess
import sys

import numpy as np
import pytest

from muffin_v_chihuahua import cpus, engines, images
from muffin_v_chihuahua.classifier import Classifier
from tests.conftest import imported_after


def run_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_the_onnx_engine_never_imports_tensorflow():
    code = (
        "import numpy as np; from muffin_v_chihuahua.classifier import Classifier; "
        "c = Classifier(engine='onnx'); c.predict([np.zeros((224, 224, 3), np.float32)]); assert c.engine == 'onnx'"
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


def test_the_onnx_engine_runs_where_the_os_has_no_affinity_mask(monkeypatch, labelled_photos):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # as on macOS and Windows
    classifier = Classifier(engine="onnx")
    [prediction] = classifier.predict([images.decode(labelled_photos[0][1].read_bytes(), classifier.input_size)])
    assert prediction.verdict == labelled_photos[0][0]


def test_both_engines_give_the_same_predictions_on_the_dataset(labelled_photos):
    onnx, keras = Classifier(engine="onnx"), Classifier(engine="keras")
    batch = [images.decode(path.read_bytes(), onnx.input_size) for _, path in labelled_photos]
    for ours, theirs in zip(onnx.predict(batch), keras.predict(batch), strict=True):
        assert ours.verdict == theirs.verdict
        assert [label.name for label in ours.imagenet] == [label.name for label in theirs.imagenet]
        np.testing.assert_allclose(
            [ours.probability, *(label.probability for label in ours.imagenet)],
            [theirs.probability, *(label.probability for label in theirs.imagenet)],
            atol=1e-4,
            strict=False,
        )
