"""Run the model file: `keras` (the .h5 through TensorFlow). The classifier does not know which engine it has."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

ENGINES = ("auto", "keras")


class EngineUnavailable(RuntimeError):
    """The chosen engine's libraries are not installed; the message names the extra to install."""


class Engine(Protocol):
    name: str

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W, 3) float32 RGB 0..255 -> (ImageNet probabilities (N, 1000), verdict probabilities (N, 2))."""


class KerasEngine:
    """The .h5 in TensorFlow, called through a tf.function: about twice as fast as model.predict per image."""

    name = "keras"

    def __init__(self, model_path: Path):
        try:
            import keras
            import tensorflow as tf
        except ImportError:
            raise EngineUnavailable(
                "the keras engine needs TensorFlow: pip install 'muffin-v-chihuahua[keras]'"
            ) from None
        model = keras.models.load_model(model_path, compile=False)
        self._call = tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        imagenet, verdict = self._call(batch)
        return imagenet.numpy(), verdict.numpy()


def load(name: str, model_dir: Path, card: dict) -> Engine:
    """The engine called `name` ('auto' picks the best one installed) for the model files in model_dir."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
    return KerasEngine(model_dir / card["files"]["keras"]["file"])
