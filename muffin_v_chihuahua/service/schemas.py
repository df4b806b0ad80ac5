"""What the service answers, as pydantic models: they make the OpenAPI schema (/openapi.json, /docs)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: str  # "ok"
    app_version: str
    backbone: str
    engine: str
    model_version: str
    model_built_at: str | None = None
    model_file: str
    model_sha256: str  # of the model file the engine runs, checked against the card when it was loaded
    input_size: list[int]  # (width, height)
    class_names: list[str]
    neither_threshold: float  # the least evidence a verdict needs (the card's unless set)
    max_upload_mb: float
    max_files: int


class NotReady(BaseModel):
    status: str  # "loading" or "failed"
    detail: str


class LabelOut(BaseModel):
    name: str
    probability: float


class PredictionOut(BaseModel):
    """A Prediction (classifier.py, the one source of its fields) as Prediction.to_dict sends it, with its file;
    tests/test_service_schemas.py proves that they agree."""

    file: str
    verdict: str  # a class name ("muffin", "chihuahua") or "neither"
    probability: float | None  # the head's, of the verdict; null for "neither", which the head cannot judge
    imagenet: list[LabelOut]  # the top-3 ImageNet labels, most likely first
    evidence: (
        float  # the head's class's probability against its strongest ImageNet rival (below the threshold: neither)
    )
    reason: str | None = None  # why the verdict is "neither"
    heatmap: list[list[float]] | None = Field(
        None,
        description="with ?heatmap=true: the class activation map of heatmap_class over the whole photo, "
        "rows top to bottom, values >= 0 (higher: the model looked there more)",
    )
    heatmap_class: str | None = Field(
        None, description="with ?heatmap=true: the class the heatmap is for (for neither, the class the head leant to)"
    )


class Predictions(BaseModel):
    engine: str
    model_sha256: str
    predictions: list[PredictionOut]


class FileError(BaseModel):
    file: str | None
    error: str


class Problem(BaseModel):
    detail: str
    errors: list[FileError]


PREDICT_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                "required": ["files"],
            }
        },
        **{
            kind: {"schema": {"type": "string", "format": "binary"}}
            for kind in ("image/jpeg", "image/png", "image/webp", "image/gif")
        },
    },
}
