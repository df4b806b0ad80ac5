"""The model as its own HTTP service (`muffin-v-chihuahua serve`, the [service] extra), one module per concern:

settings.py       environment variables, read once (Settings.from_environment), checked
loading.py        the model, loaded once in a background thread; ModelLoader.ready, the routes' dependency on it
bodies.py         request bodies read with a limit and refused as they arrive (413, 415, 422), or drained
admission.py      the request bytes held at once, bounded: past the budget 503 + Retry-After
draining.py       an answer that comes before its request's body has arrived reaches a client still sending it
metrics.py        the Prometheus metrics (GET /metrics), named in one place
observing.py      each request's id, metrics and one log line (one ASGI middleware)
inference.py      a request's images decoded and predicted, for /predict and /v2 alike
health.py         GET /, /readyz, /livez, /metrics, /card
predict.py        POST /predict
inference_protocol.py         the Open Inference Protocol's (KServe v2) routes
inference_protocol_codec.py   its tensors to and from JSON or binary (no web framework)
schemas.py        the answers' shapes, for the OpenAPI schema
app.py            the app factory, made from the parts above, and run()
"""

from muffin_v_chihuahua.service.app import create_app, run
from muffin_v_chihuahua.service.settings import Settings

__all__ = ["Settings", "create_app", "run"]
