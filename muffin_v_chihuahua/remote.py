"""The page's front-end mode: the model answers from an HTTP service (`muffin-v-chihuahua serve`).

RemoteClassifier has the surface the page uses from Classifier (predict(batch) -> [Prediction], card,
engine, input_size) and needs only the standard library and what the page already has (NumPy,
Pillow): the front end installs no HTTP client and never loads a model or an inference runtime.

The page hands predict() the model-input arrays it makes anyway (images.to_array at the service's
input_size); each goes over the wire as a lossless PNG. That array is 8-bit RGB resized by Pillow, so
the PNG holds exactly the numbers the embedded model would get (the service's images.to_array at the
same size changes nothing), while it is ~100 KB instead of an upload of up to 10 MB. The input size
still comes from the service, so a model with another input size is released without the front end.
"""

from __future__ import annotations

import io
import json
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from muffin_v_chihuahua.classifier import Prediction

URL_VARIABLE = "INFERENCE_URL"  # set (e.g. http://ml-service:8000): the page asks that service


class ServiceError(RuntimeError):
    """The inference service cannot be reached or answered an error; the message names it and says what happened."""


class RemoteClassifier:
    """The model behind the service at `url`: checks its health and reads its card when created."""

    def __init__(self, url: str, timeout: float = 10.0, predict_timeout: float = 120.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.predict_timeout = predict_timeout
        health = self._call("GET", "/")
        self.card: dict = self._call("GET", "/card")
        self.engine: str = health["engine"]
        self.input_size: tuple[int, int] = tuple(health["input_size"])  # (width, height)
        self.model_sha256: str = health["model_sha256"]
        self.max_files: int = int(health.get("max_files", 1))

    def predict(self, batch: Sequence[np.ndarray]) -> list[Prediction]:
        """Model input arrays (images.to_array at input_size) -> one Prediction each, from the service."""
        pngs = [self._png(array) for array in batch]
        predictions = []
        for start in range(0, len(pngs), self.max_files):
            chunk = pngs[start : start + self.max_files]
            body, content_type = _multipart([(f"image-{start + i}.png", png) for i, png in enumerate(chunk)])
            answer = self._call("POST", "/predict", body, content_type, self.predict_timeout)
            results = answer.get("predictions", [])
            if len(results) != len(chunk):
                raise ServiceError(
                    f"the inference service at {self.url} answered {len(results)} predictions for {len(chunk)} images"
                )
            predictions += [Prediction.from_dict(result) for result in results]
        return predictions

    def _png(self, array: np.ndarray) -> bytes:
        expected = (self.input_size[1], self.input_size[0], 3)
        if array.shape != expected:
            raise ValueError(f"expected an array of shape {expected}, got {array.shape}")
        picture = Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), "RGB")
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG", compress_level=1)  # lossless; level 1: fast, the network is local
        return buffer.getvalue()

    def _call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """One request; every failure becomes a ServiceError that names the service and what happened."""
        request = urllib.request.Request(
            self.url + path, data=body, method=method, headers={"Accept": "application/json"}
        )
        if content_type:
            request.add_header("Content-Type", content_type)
        where = f"the inference service at {self.url}"
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            detail = _detail(error)
            if error.code == 503:
                raise ServiceError(f"{where} is not ready: {detail or 'it answered 503'}") from None
            raise ServiceError(
                f"{where} answered {error.code} {error.reason}{': ' + detail if detail else ''}"
            ) from None
        except urllib.error.URLError as error:
            reason = error.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise ServiceError(f"{where} did not answer within {timeout or self.timeout:g} s") from None
            raise ServiceError(f"{where} cannot be reached: {reason}") from None
        except TimeoutError:
            raise ServiceError(f"{where} did not answer within {timeout or self.timeout:g} s") from None
        except (OSError, ValueError) as error:  # connection reset mid-answer, a malformed URL
            raise ServiceError(f"{where} failed: {error}") from None
        try:
            return json.loads(payload)
        except ValueError:
            raise ServiceError(f"{where} answered {path} with something that is not JSON") from None


def _detail(error: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(error.read()).get("detail", ""))
    except Exception:
        return ""


def _multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body with each file under the field `files`, and its content type."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, data in files:
        parts += [
            f"--{boundary}\r\n".encode(),
            f'Content-Disposition: form-data; name="files"; filename="{name}"\r\n'.encode(),
            b"Content-Type: image/png\r\n\r\n",
            data,
            b"\r\n",
        ]
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
