"""Predictions as CSV: the format `predict --csv` prints and the page's download gives."""

import csv
import io

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
