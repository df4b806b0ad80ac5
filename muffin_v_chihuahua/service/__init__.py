"""The model as its own HTTP service (`muffin-v-chihuahua serve`, the [service] extra), one module per concern:

settings.py   environment variables, checked once (Settings.from_environment)
loading.py    the model, loaded once in a background thread
bodies.py     request bodies read and refused as they arrive (413, 415, 422)
admission.py  the request bytes held at once, bounded: past the budget 503 + Retry-After
draining.py   an answer that comes before its request's body has arrived reaches a client still sending it
metrics.py    the Prometheus metrics (GET /metrics), named in one place
observing.py  each request's id, metrics and one log line (one ASGI middleware)
schemas.py    the answers' shapes, for the OpenAPI schema
app.py        the app factory, its routes, and run()
"""

from muffin_v_chihuahua.service.app import create_app, run
from muffin_v_chihuahua.service.settings import Settings

__all__ = ["Settings", "create_app", "run"]
