"""Front-end mode: RemoteClassifier against a real service, and the page (AppTest) with INFERENCE_URL set.

The page must take its verdicts from the service and never load a model; with the service stopped it
says so plainly, naming the URL, and it recovers once the service answers again.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import muffin_v_chihuahua
from muffin_v_chihuahua import classifier as classifier_module
from muffin_v_chihuahua import images, remote
from muffin_v_chihuahua.environment import INFERENCE_URL_VARIABLE
from tests.conftest import imported_after
from tests.servers import CARD, Relay, ServiceProcess, free_port, serving_app

pytestmark = pytest.mark.service

PAGE = Path(muffin_v_chihuahua.__file__).with_name("display_predictions_with_an_embedded_model.py")


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """The front end does not care which engine the service runs: onnx, the quicker to start."""
    with ServiceProcess("onnx", log=tmp_path_factory.mktemp("service") / "service.log") as running:
        yield running


@pytest.fixture
def no_embedded_model(monkeypatch):
    """Fail loudly if anything creates a Classifier (and so an inference session) in this process."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("front-end mode created a Classifier")

    monkeypatch.setattr(classifier_module.Classifier, "__init__", refuse)


def front_end(monkeypatch, url: str) -> AppTest:
    monkeypatch.setenv(INFERENCE_URL_VARIABLE, url)
    app = AppTest.from_file(str(PAGE), default_timeout=120)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def verdicts(app: AppTest) -> list[str]:
    return [m.value for m in app.markdown if m.value.startswith("**")]


def errors(app: AppTest) -> list[str]:
    return [e.value for e in app.error]


def blank(client: remote.RemoteClassifier) -> np.ndarray:
    width, height = client.input_size
    return np.zeros((height, width, 3), dtype=np.float32)


@contextlib.contextmanager
def retries(before_each: Callable[[], object] = lambda: None) -> Iterator[list[str]]:
    """The warnings urllib3 logs, each just before it tries a connection again, while the with block runs;
    before_each() is called at each of them, so before that retry."""
    seen: list[str] = []

    class Watcher(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("Retrying"):
                seen.append(record.getMessage())
                before_each()

    logger, watcher = logging.getLogger("urllib3.connectionpool"), Watcher()
    logger.addHandler(watcher)
    try:
        yield seen
    finally:
        logger.removeHandler(watcher)


# ----- RemoteClassifier ---------------------------------------------------------------------------------


def test_remote_predictions_are_the_embedded_models(service, labelled_photos):
    from muffin_v_chihuahua.classifier import Classifier

    client = remote.RemoteClassifier(service.url)
    assert (
        client.engine == "onnx-int8"
        and client.input_size == tuple(CARD["input_size"])
        and client.card.to_dict() == CARD
    )
    local = Classifier("onnx")
    photos = labelled_photos[::6]
    arrays = [images.decode(path.read_bytes(), client.input_size) for _, path in photos]
    client.max_files = 4  # several requests for one batch, as with a batch over the service's limit
    remote_predictions = client.predict(arrays)
    local_predictions = local.predict(arrays)
    assert [p.verdict for p in remote_predictions] == [p.verdict for p in local_predictions]
    np.testing.assert_allclose(
        [p.probability for p in remote_predictions], [p.probability for p in local_predictions], atol=1e-5, strict=False
    )
    assert [p.imagenet[0].name for p in remote_predictions] == [p.imagenet[0].name for p in local_predictions]
    assert client.predict([]) == []


def test_a_neither_comes_back_with_no_probability_its_evidence_and_reason(service):
    from builders.neither import negative_photos
    from muffin_v_chihuahua.classifier import Classifier

    client, local = remote.RemoteClassifier(service.url), Classifier("onnx")
    array = images.decode(negative_photos()["cat"], client.input_size)
    [far], [near] = client.predict([array]), local.predict([array])
    assert (far.verdict, far.probability, far.reason) == ("neither", None, near.reason)
    assert far.evidence == pytest.approx(near.evidence, abs=1e-6)


def test_heatmaps_come_back_only_when_asked_for_as_the_embedded_model_draws_them(service, labelled_photos):
    from muffin_v_chihuahua.classifier import Classifier

    client, local = remote.RemoteClassifier(service.url), Classifier("onnx")
    arrays = [images.decode(path.read_bytes(), client.input_size) for _, path in labelled_photos[::40]]
    assert all(p.heatmap is None and p.heatmap_class is None for p in client.predict(arrays))
    far, near = client.predict(arrays, heatmap=True), local.predict(arrays, heatmap=True)
    assert [p.heatmap_class for p in far] == [p.heatmap_class for p in near] == [p.verdict for p in near]
    for answered, own in zip(far, near, strict=True):
        np.testing.assert_allclose(answered.heatmap, own.heatmap, atol=1e-4, strict=False)


def test_an_array_of_the_wrong_size_is_refused_before_it_is_sent(service):
    with pytest.raises(ValueError, match="shape"):
        remote.RemoteClassifier(service.url).predict([np.zeros((10, 10, 3), dtype=np.float32)])


def test_an_unreachable_service_is_tried_a_few_times_then_named_with_what_happened():
    url = f"http://127.0.0.1:{free_port()}"
    with (
        retries() as seen,
        pytest.raises(remote.ServiceError, match=f"the inference service at {url} cannot be reached: .*refused"),
    ):
        remote.RemoteClassifier(url)
    assert len(seen) == remote.CONNECT_RETRIES, seen


def test_an_error_answer_is_reported_with_its_status(service):
    with pytest.raises(remote.ServiceError, match=r"answered 404 Not Found"):
        remote.RemoteClassifier(service.url + "/nowhere")


# ----- one HTTP session: connections kept alive, a refused connection tried again, a sent request never -


def test_one_client_asks_everything_over_one_kept_alive_connection(service):
    with Relay(service.port) as relay:
        with remote.RemoteClassifier(relay.url) as client:
            for _ in range(3):
                client.predict([blank(client)])
        assert relay.connections == 1  # health check, card and three predictions
        remote.RemoteClassifier(relay.url).close()
        assert relay.connections == 2  # another client, another connection


def test_a_refused_connection_is_tried_again_so_a_service_that_comes_up_meanwhile_is_reached(service):
    """The relay refuses the first connection and listens from the retry on: no timing involved."""
    with (
        Relay(service.port, listening=False) as relay,
        retries(before_each=relay.listen) as seen,
        remote.RemoteClassifier(relay.url) as client,
    ):
        assert client.card.to_dict() == CARD
    assert len(seen) == 1 and relay.connections == 1, seen


def test_a_prediction_that_reached_the_service_is_never_sent_again(service):
    """The service answers, but the connection breaks instead of passing the answer on: reported, not retried."""
    with Relay(service.port) as relay, remote.RemoteClassifier(relay.url) as client:
        relay.answering = False
        with pytest.raises(remote.ServiceError, match="cannot be reached: Remote end closed connection"):
            client.predict([blank(client)])
    assert relay.connections == 1  # a second attempt would have needed a new connection


# ----- the page in front-end mode -----------------------------------------------------------------------


def test_the_page_shows_the_services_verdicts_and_card_without_a_model(
    service, monkeypatch, no_embedded_model, dataset_dir
):
    app = front_end(monkeypatch, service.url)
    demo = verdicts(app)
    assert len(demo) == 3 and all(v.split("**")[1] in ("muffin", "chihuahua", "neither") for v in demo)
    card = " ".join(m.value for m in app.expander[0].markdown)
    assert "engine: **onnx-int8**" in card and CARD["files"]["onnx-int8"]["sha256"] in card

    photo = sorted((dataset_dir / "chihuahua").glob("*.jpg"))[0].read_bytes()
    app.file_uploader[0].set_value([("dog.jpg", photo, "image/jpeg"), ("broken.jpg", b"not a photo", "image/jpeg")])
    app.run()
    assert not app.exception
    assert verdicts(app)[-1].startswith("**chihuahua**")
    [error] = errors(app)
    assert "broken.jpg" in error and "not an image" in error


def test_the_front_end_never_imports_an_inference_runtime(service):
    code = (
        "from streamlit.testing.v1 import AppTest; "
        f"app = AppTest.from_file({str(PAGE)!r}, default_timeout=120); app.run(); "
        "assert not app.exception and not app.error, (app.exception, app.error); "
        "assert len([m for m in app.markdown if m.value.startswith('**')]) == 3, app.markdown"
    )
    env = {**os.environ, INFERENCE_URL_VARIABLE: service.url}
    assert imported_after(code, ("onnxruntime", "tensorflow", "keras", "fastapi"), env) == []


def test_a_stopped_service_is_named_plainly_and_the_page_recovers_when_it_returns(
    monkeypatch, no_embedded_model, tmp_path
):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = front_end(monkeypatch, url)  # nothing listens there yet
    [error] = errors(app)
    assert url in error and "cannot be reached" in error and not verdicts(app)

    # Started, but still loading its model (a stub here, held back until the page has seen it): not ready.
    from muffin_v_chihuahua.service import Settings, create_app
    from tests.stub_classifier import gate

    held_back = gate()
    service_app = create_app(Settings(engine="onnx"), load_model=held_back)
    with serving_app(service_app, port):
        app.run()
        [error] = errors(app)
        assert url in error and "not ready" in error and "loading" in error
        held_back.open()
        service_app.state.model.done.wait()
        app.button[0].click().run()  # "Try again"
        assert not app.exception and not errors(app)
        assert len(verdicts(app)) == 3

    # The service goes away while the page is open: the next interaction says so, no stack trace.
    app.button[0].click().run()  # "Shuffle & predict"
    assert not app.exception
    [error] = errors(app)
    assert url in error and "cannot be reached" in error

    # ... and comes back (the real one, in its own process).
    with ServiceProcess("onnx", port=port, log=tmp_path / "service-again.log"):
        app.run()
        assert not app.exception and not errors(app) and len(verdicts(app)) == 3
