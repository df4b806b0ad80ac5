"""The model, loaded once in a background thread: the port opens at once, and health checks say the truth."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from muffin_v_chihuahua.classifier import Classifier
from muffin_v_chihuahua.service.settings import TEST_LOAD_DELAY_VARIABLE

log = logging.getLogger("uvicorn.error")  # uvicorn's configured logger: our lines appear beside its own


class Model:
    """The Classifier and its identity, filled in by a background thread; `classifier` is None until then."""

    def __init__(
        self,
        engine: str,
        load_delay: float = 0.0,
        model_dir: Path | None = None,
        precision: str = "auto",
        neither_threshold: float | None = None,
    ):
        self.requested_engine = engine
        self.neither_threshold = neither_threshold  # None: the card's
        self.requested_precision = precision
        self.model_dir = model_dir
        self.load_delay = load_delay
        self.classifier: Classifier | None = None
        self.identity: dict[str, Any] = {}
        self.error: str | None = None
        self.started = time.monotonic()
        self.done = threading.Event()  # set once the load has succeeded or failed (see `error`)

    def load(self) -> None:
        try:
            if self.load_delay:
                log.warning(
                    "%s=%s: waiting before loading the model (tests only)", TEST_LOAD_DELAY_VARIABLE, self.load_delay
                )
                time.sleep(self.load_delay)
            classifier = Classifier(
                self.requested_engine, self.model_dir, self.requested_precision, self.neither_threshold
            )
            # One prediction before the health check turns 200: the model answers (and the keras engine's
            # tf.function is traced now, not on a client's first request).
            width, height = classifier.input_size
            classifier.predict([np.zeros((height, width, 3), dtype=np.float32)])
            card = classifier.card
            model_file = card["files"][classifier.engine]["file"]
            self.identity = {
                "backbone": card["backbone"],
                "engine": classifier.engine,
                "model_version": classifier.model_version,
                "model_built_at": card.get("built_at"),
                "model_file": model_file,
                "model_sha256": classifier.model_sha256,
                "input_size": list(classifier.input_size),
                "class_names": list(card["class_names"]),
                "neither_threshold": classifier.neither_rule.threshold,
            }
            self.classifier = classifier  # last: from here on requests are served
            log.info("model loaded in %.1f s: %s", time.monotonic() - self.started, self.identity)
        except Exception as error:  # reported by the health check (503 "failed"); run() then stops the server
            self.error = f"{type(error).__name__}: {error}"
            log.exception("the model could not be loaded")
        finally:
            self.done.set()
