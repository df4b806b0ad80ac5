"""Run the model file: `onnx` (ONNX Runtime, the default) or `keras` (the .h5 through TensorFlow), at a precision.

The classifier does not know which engine it has; TensorFlow is imported only by the keras engine.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Container
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from muffin_v_chihuahua import cpus

if TYPE_CHECKING:  # annotations only: run-demo imports this module and hands over to Streamlit without NumPy
    import numpy as np
    import numpy.typing as npt
    import onnxruntime

ENGINES = ("auto", "onnx", "keras")
# The precision is the model file's, not the runtime's, so it is its own choice: "auto" runs the fastest file the
# card names for the engine (the build names the int8 file only once it passed its gates, builders/quantize.py).
PRECISIONS = ("auto", "int8", "float32")
# Each engine's model files, as the card's "files" names them, fastest first. The keras engine runs the .h5 only.
MODEL_FILES = {"onnx": {"int8": "onnx-int8", "float32": "onnx"}, "keras": {"float32": "keras"}}


class EngineUnavailable(RuntimeError):
    """The chosen engine's libraries are not installed; the message names what to install."""


class ModelOutputs(NamedTuple):
    """What one run of the model gives, for a batch of N photos (the model card's "outputs", in order)."""

    imagenet: npt.NDArray[np.float32]  # ImageNet probabilities (N, 1000)
    verdict: npt.NDArray[np.float32]  # the head's class probabilities (N, classes)
    heatmap: npt.NDArray[np.float32]  # each class's activation map (N, rows, columns, classes), rows top to bottom
    imagenet_logits: npt.NDArray[np.float32]  # the ImageNet logits (N, 1000), for the "neither" rule
    features: npt.NDArray[np.float32]  # the backbone's pooled features (N, C), for the "neither" rule


class Engine(Protocol):
    def run(self, batch: npt.NDArray[np.float32]) -> ModelOutputs:
        """(N, H, W, 3) float32 RGB 0..255 -> the model's outputs."""


class OnnxEngine:
    """The .onnx in ONNX Runtime on the CPU: one session, as many threads as this process may use."""

    def __init__(self, model_path: Path) -> None:
        import onnxruntime

        self._session = onnxruntime.InferenceSession(
            str(model_path), self.session_options(), providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name

    @staticmethod
    def session_options() -> onnxruntime.SessionOptions:
        """The options of every session (benchmarks/benchmark.py profiles with the same ones)."""
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # The cores this process may use (a container's CPU set), not the host's count.
        options.intra_op_num_threads = cpus.usable()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ORT_ENABLE_ALL lays convolutions out in channel blocks (NCHWc): EfficientNet-Lite0 runs 1.6x faster than
        # with ORT_ENABLE_EXTENDED. The default spinning threads stay: without them EfficientNet-Lite0 took
        # 11.2 ms instead of 8.4 on an idle machine and gained nothing on a busy one (benchmarks/benchmark.py).
        return options

    def run(self, batch: npt.NDArray[np.float32]) -> ModelOutputs:
        return ModelOutputs(*self._session.run(None, {self._input: batch}))


class KerasEngine:
    """The .h5 in TensorFlow, called through a tf.function: about twice as fast as model.predict per image."""

    def __init__(self, model_path: Path) -> None:
        import keras
        import tensorflow as tf

        model = keras.models.load_model(model_path, compile=False)
        self._call = tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)

    def run(self, batch: npt.NDArray[np.float32]) -> ModelOutputs:
        return ModelOutputs(*(output.numpy() for output in self._call(batch)))


# What each engine imports, and how to install it.
REQUIREMENTS = {
    "onnx": ("onnxruntime", "pip install onnxruntime"),
    "keras": ("tensorflow", "pip install 'muffin-v-chihuahua[keras]'"),
}
ENGINE_TYPES: dict[str, Callable[[Path], Engine]] = {"onnx": OnnxEngine, "keras": KerasEngine}


def resolve(name: str) -> str:
    """The engine to use ('auto': onnx when ONNX Runtime is installed, else keras), checked to be installed."""
    if name not in ENGINES:
        raise EngineUnavailable(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
    if name == "auto":
        name = "onnx" if importlib.util.find_spec("onnxruntime") else "keras"
    module, install = REQUIREMENTS[name]
    if importlib.util.find_spec(module) is None:
        raise EngineUnavailable(f"the {name} engine needs {module}, which is not installed: {install}")
    return name


def model_file(engine: str, precision: str, card_files: Container[str]) -> tuple[str, str]:
    """(precision, the card's "files" entry) for engine (one resolve() returned) at precision ('auto': the fastest
    the card has; an entry the card lacks is the caller's to report)."""
    if precision not in PRECISIONS:
        raise EngineUnavailable(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    files = MODEL_FILES[engine]
    if precision == "auto":
        return next(((p, key) for p, key in files.items() if key in card_files), list(files.items())[-1])
    if precision not in files:
        raise EngineUnavailable(f"the {engine} engine runs {' or '.join(files)} models only, not {precision}")
    return precision, files[precision]


def load(name: str, model_file: Path) -> Engine:
    """The engine `name` (one resolve() returned) running model_file, the file the model card names for it."""
    return ENGINE_TYPES[name](model_file)
