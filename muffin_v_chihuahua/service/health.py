"""What orchestrators, monitors and front ends ask of the service, apart from predictions.

GET /          health: 200 with the model's identity once it is loaded, 503 {"status": "loading"} before
GET /readyz    the same (readiness probe)
GET /livez     200 whenever the process answers (liveness probe)
GET /metrics   Prometheus metrics (metrics.py names them)
GET /card      the full model card
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from muffin_v_chihuahua import __version__
from muffin_v_chihuahua.service.loading import ModelLoader, ReadyModel, ready_model
from muffin_v_chihuahua.service.metrics import Metrics
from muffin_v_chihuahua.service.schemas import Health, NotReady
from muffin_v_chihuahua.service.settings import Settings

NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"model": NotReady, "description": "the model is not loaded (yet), or failed to load"}
}


def router(model: ModelLoader, metrics: Metrics, settings: Settings) -> APIRouter:
    """The routes above, for `model` made with `settings`, its metrics in `metrics`."""
    routes = APIRouter()

    async def health() -> dict[str, Any]:
        """The health check and readiness probe: 200 once the model answers, 503 while it loads or if it failed."""
        return {
            "status": "ok",
            "app_version": __version__,
            **model.identity,
            "max_upload_mb": settings.max_upload_mb,
            "max_files": settings.max_files,
        }

    for path in ("/", "/readyz"):
        routes.add_api_route(
            path,
            health,
            methods=["GET"],
            response_model=Health,
            responses=NOT_READY,
            dependencies=[Depends(ready_model)],
        )

    @routes.get("/livez")
    async def livez() -> dict[str, str]:
        """The liveness probe: 200 whenever the process can answer, model loaded or not."""
        return {"status": "alive"}

    @routes.get("/metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        """Prometheus metrics, in its text format."""
        return Response(metrics.render(), media_type=metrics.content_type)

    @routes.get("/card", response_model=None, responses=NOT_READY)
    async def card(classifier: ReadyModel) -> dict[str, Any]:
        """The full model card (as built with the model), for front ends that show it."""
        return classifier.card.to_dict()

    return routes
