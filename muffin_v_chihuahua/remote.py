"""The page's front-end mode: the model answers from an HTTP service (`muffin-v-chihuahua serve`).

RemoteClassifier has the surface the page uses from Classifier (predict(batch) -> [Prediction], card,
engine, input_size) and needs only what the page already has (NumPy, Pillow, and requests, which
Streamlit installs): the front end never loads a model or an inference runtime. Each client keeps one
HTTP session, so its connections stay open and are reused; close() it (or use it in a with block) when done.

The page hands predict() the model-input arrays it makes anyway (images.to_array at the service's
input_size); each goes over the wire as a lossless PNG. That array is 8-bit RGB resized by Pillow, so
the PNG holds exactly the numbers the embedded model would get (the service's images.to_array at the
same size changes nothing), while it is ~100 KB instead of an upload of up to 10 MB. The input size
still comes from the service, so a model with another input size is released without the front end.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import numpy as np
import requests
from PIL import Image
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from muffin_v_chihuahua.card import ModelCard
from muffin_v_chihuahua.classifier import Prediction

CONNECT_RETRIES = 3
# Only a connection that could not be opened (refused, name not resolved, connect timeout) is tried again:
# nothing was sent, so no prediction is ever sent twice; any error once a request is sent is reported.
RETRY = Retry(
    total=None,  # only the counts below: with a total, urllib3 would also wait out a 503's Retry-After
    connect=CONNECT_RETRIES,
    read=False,
    other=False,
    backoff_factor=0.2,  # 0, 0.4 and 0.8 s before the three retries
)


class ServiceError(RuntimeError):
    """The inference service cannot be reached or answered an error; the message names it and says what happened."""


class RemoteClassifier:
    """The model behind the service at `url`: checks its health and reads its card when created."""

    def __init__(self, url: str, timeout: float = 10.0, predict_timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.predict_timeout = predict_timeout
        self._session = requests.Session()
        self._session.headers["Accept"] = "application/json"
        adapter = HTTPAdapter(max_retries=RETRY)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        try:
            health = self._call("GET", "/")
            self.card = ModelCard.from_dict(self._call("GET", "/card"), f"{self.url}/card")
            self.engine: str = health["engine"]
            self.input_size: tuple[int, int] = tuple(health["input_size"])  # (width, height)
            self.model_sha256: str = health["model_sha256"]
            self.max_files: int = int(health.get("max_files", 1))
        except Exception:
            self.close()  # a client that could not be made keeps no connection open
            raise

    def predict(self, batch: Sequence[np.ndarray], heatmap: bool = False) -> list[Prediction]:
        """Model input arrays (images.to_array at input_size) -> one Prediction each, from the service (with its
        heatmap if asked)."""
        pngs = [self._png(array) for array in batch]
        predictions = []
        for start in range(0, len(pngs), self.max_files):
            chunk = pngs[start : start + self.max_files]
            files = [("files", (f"image-{start + i}.png", png, "image/png")) for i, png in enumerate(chunk)]
            params = {"heatmap": "true"} if heatmap else None
            answer = self._call("POST", "/predict", files, self.predict_timeout, params)
            results = answer.get("predictions", [])
            if len(results) != len(chunk):
                raise ServiceError(
                    f"the inference service at {self.url} answered {len(results)} predictions for {len(chunk)} images"
                )
            predictions += [Prediction.from_dict(result) for result in results]
        return predictions

    def close(self) -> None:
        """Close the connections this client keeps open."""
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

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
        files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
        timeout: float | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """One request (multipart `files` and query `params`, if any); every failure becomes a ServiceError that names the service
        and what happened."""
        where = f"the inference service at {self.url}"
        timeout = timeout or self.timeout
        try:
            response = self._session.request(method, self.url + path, params=params, files=files, timeout=timeout)
        except requests.Timeout:  # before requests.ConnectionError: a connect timeout is both
            raise ServiceError(f"{where} did not answer within {timeout:g} s") from None
        except requests.ConnectionError as error:
            raise ServiceError(f"{where} cannot be reached: {_innermost(error)}") from None
        except requests.RequestException as error:  # a malformed URL, an answer cut short
            raise ServiceError(f"{where} failed: {error}") from None
        if response.status_code == 503:
            raise ServiceError(f"{where} is not ready: {_detail(response) or 'it answered 503'}")
        if not response.ok:
            detail = _detail(response)
            raise ServiceError(
                f"{where} answered {response.status_code} {response.reason}{': ' + detail if detail else ''}"
            )
        try:
            return response.json()
        except requests.JSONDecodeError:
            raise ServiceError(f"{where} answered {path} with something that is not JSON") from None


def _innermost(error: BaseException) -> BaseException:
    """requests wraps urllib3's error, which wraps the socket's: that one says it plainly ("Connection refused")."""
    while (inner := error.__cause__ or error.__context__) is not None:
        error = inner
    return error


def _detail(response: requests.Response) -> str:
    """The `detail` the service puts in an error answer, or ''."""
    try:
        return str(response.json().get("detail", ""))
    except (ValueError, AttributeError):  # not JSON, or JSON but not an object
        return ""
