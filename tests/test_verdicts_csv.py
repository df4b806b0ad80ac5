"""Predictions as CSV: the format `predict --csv` prints and the page's download gives."""

import csv
import io
from dataclasses import fields, replace

from muffin_v_chihuahua import verdicts_csv
from muffin_v_chihuahua.classifier import NEITHER, Label, Prediction

DOG = Prediction(
    "chihuahua", 0.987654321, (Label("Chihuahua", 0.9), Label("toy terrier", 0.05), Label("pug", 0.01)), 0.95
)
CAT = Prediction(
    NEITHER,
    None,
    (Label("tabby", 0.6), Label("tiger cat", 0.2), Label("Egyptian cat", 0.1)),
    0.01,
    "looks like a tabby: not a chihuahua",
)


def test_the_text_is_a_header_then_a_row_per_prediction_that_csv_reads_back():
    text = verdicts_csv.text([('my "best", dog.jpg', DOG), ("cat.png", CAT)])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(verdicts_csv.HEADER)
    assert rows[0] == {
        "path": 'my "best", dog.jpg',  # a name with a comma and quotes survives
        "verdict": "chihuahua",
        "probability": "0.987654",
        "evidence": "0.950000",
        "top1": "Chihuahua",
        "top1_probability": "0.900000",
        "top2": "toy terrier",
        "top3": "pug",
        "reason": "",
    }
    assert (rows[1]["verdict"], rows[1]["probability"], rows[1]["reason"]) == (NEITHER, "", CAT.reason)


def test_no_predictions_is_the_header_alone():
    assert list(csv.reader(io.StringIO(verdicts_csv.text([])))) == [list(verdicts_csv.HEADER)]


# Where each of Prediction's fields goes in a row (Prediction is the one source of a prediction's fields): a field
# added to Prediction fails the tests below until it is placed here, and in the CSV or among those left out.
COLUMNS_OF = {
    "verdict": ["verdict"],
    "probability": ["probability"],
    "imagenet": ["top1", "top1_probability", "top2", "top3"],
    "evidence": ["evidence"],
    "reason": ["reason"],
    "heatmap": [],  # a grid: the overlays are pictures of their own (predict --heatmap-dir)
    "heatmap_class": [],
}
ANOTHER = {
    "verdict": "chihuahua",
    "probability": 0.125,
    "imagenet": (Label("tabby", 0.375), Label("bagel", 0.25), Label("pretzel", 0.125)),
    "evidence": 0.0625,
    "reason": "another reason",
    "heatmap": ((1.0,),),
    "heatmap_class": "muffin",
}


def test_every_field_of_a_prediction_has_its_columns_and_every_column_its_field():
    assert list(COLUMNS_OF) == [field.name for field in fields(Prediction)]
    assert sorted(verdicts_csv.HEADER) == sorted(
        ["path", *(column for columns in COLUMNS_OF.values() for column in columns)]
    )


def test_each_column_follows_its_field_and_no_other():
    prediction = Prediction("muffin", 0.75, (Label("bagel", 0.5), Label("Chihuahua", 0.25), Label("x", 0.125)), 0.875)
    before = dict(zip(verdicts_csv.HEADER, verdicts_csv.row("a.jpg", prediction), strict=True))
    for name, columns in COLUMNS_OF.items():
        after = dict(
            zip(
                verdicts_csv.HEADER,
                verdicts_csv.row("a.jpg", replace(prediction, **{name: ANOTHER[name]})),
                strict=True,
            )
        )
        differ = [column for column in verdicts_csv.HEADER if before[column] != after[column]]
        assert differ == [column for column in verdicts_csv.HEADER if column in columns], name
