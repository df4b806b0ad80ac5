"""The service's answer shapes (muffin_v_chihuahua/service/schemas.py) agree with Prediction, the one source of a
prediction's fields: PredictionOut has each of them (and the file), and gives back what Prediction.to_dict says,
heatmap or not, neither or not."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from muffin_v_chihuahua.classifier import NEITHER, Label, Prediction
from muffin_v_chihuahua.service.schemas import LabelOut, PredictionOut

LABELS = (Label("bagel", 0.5), Label("Chihuahua", 0.25), Label("pretzel", 0.125))
PREDICTIONS = {
    "muffin": Prediction("muffin", 0.75, LABELS, 0.875),
    "neither": Prediction(NEITHER, None, LABELS, 0.25, "it looks more like a bagel"),
    "heatmap": Prediction("chihuahua", 0.5, LABELS, 0.5, None, ((0.0, 1.0), (2.0, 3.0)), "chihuahua"),
}


def test_prediction_out_has_every_field_of_a_prediction_and_the_file():
    assert set(PredictionOut.model_fields) == {"file", *(field.name for field in fields(Prediction))}
    assert set(LabelOut.model_fields) == {field.name for field in fields(Label)}


@pytest.mark.parametrize("prediction", PREDICTIONS.values(), ids=PREDICTIONS)
def test_prediction_out_gives_back_what_the_prediction_says(prediction):
    sent = json.loads(json.dumps({"file": "photo.jpg", **prediction.to_dict()}))  # as the service sends it
    assert PredictionOut.model_validate(sent).model_dump(exclude_unset=True) == sent
    assert Prediction.from_dict(sent) == prediction
