"""`predict`'s machinery (muffin_v_chihuahua/predict_command.py) on a long run: photos decoded in a pool while the
model runs, written in their order, bad files named, progress drawn on a terminal's stderr only."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import pty
import re
from pathlib import Path

import pytest
from PIL import Image

from muffin_v_chihuahua.__main__ import main
from muffin_v_chihuahua.classifier import Classifier, Prediction
from muffin_v_chihuahua.predict_command import BATCH
from tests import corpus
from tests.conftest import console_script, expected_prediction, skipped_line


@pytest.fixture(scope="module")
def long_run(tmp_path_factory, labelled_photos) -> tuple[Path, list[Path], list[Path]]:
    """A folder of 2.5 batches: dataset photos, a 12-MP phone photo early on (slow to decode: a pool that let a
    later photo overtake it would show), and bad files in the first, second and third batch. The folder, its good
    photos and its bad files, in the order predict takes them."""
    folder = tmp_path_factory.mktemp("long-run")
    sources = iter(path for _, path in labelled_photos)
    bad = {3: b"not a photo", BATCH + 1: next(sources).read_bytes()[:5000], 2 * BATCH + 1: b""}
    good, refused = [], []
    for index in range(BATCH * 5 // 2):
        path = folder / f"{index:02d}.jpg"
        if index in bad:
            path.write_bytes(bad[index])
            refused.append(path)
            continue
        source = next(sources)
        path.write_bytes(corpus.phone_jpeg(Image.open(source)) if index == 5 else source.read_bytes())
        good.append(path)
    return folder, good, refused


def test_a_long_run_keeps_the_photos_order_and_names_each_bad_file(long_run, capsys):
    folder, good, refused = long_run
    assert main(["predict", "--json", "--engine", "onnx", str(folder)]) == 1
    out, err = capsys.readouterr()
    results = [json.loads(line) for line in out.splitlines()]
    assert [result["path"] for result in results] == [str(path) for path in good]
    classifier = Classifier("onnx")
    for result, path in zip(results, good, strict=True):  # each row is its own photo's, not a neighbour's
        shown, expected = Prediction.from_dict(result), expected_prediction(classifier, path)
        assert shown.verdict == expected.verdict
        assert shown.evidence == pytest.approx(expected.evidence, abs=1e-4)
    assert err.splitlines() == [skipped_line(path) for path in refused]  # and no progress: stderr is no terminal


def test_a_long_runs_progress_is_drawn_on_a_terminal_stderr_and_never_reaches_stdout(long_run):
    folder, good, refused = long_run
    terminal, stderr = pty.openpty()
    process = console_script("predict", "--csv", "--engine", "onnx", folder, stderr=stderr)
    os.close(stderr)
    out, _ = process.communicate(timeout=300)
    drawn = b""
    with contextlib.suppress(OSError):  # EIO once the script's end of the terminal is closed
        while chunk := os.read(terminal, 4096):
            drawn += chunk
    os.close(terminal)
    assert process.returncode == 1
    assert [row["path"] for row in csv.DictReader(io.StringIO(out))] == [str(path) for path in good]
    text = drawn.decode().replace("\r\n", "\n")  # the terminal's own line ends
    total = len(good) + len(refused)
    assert re.findall(rf"\r(\d+)/{total} photos", text) == [str(done) for done in (BATCH, 2 * BATCH, total)]
    # What stays on the terminal, each line as its last carriage return leaves it: the skipped files, each on a
    # line of its own, and no count (cleared at the end).
    assert [line.rsplit("\r", 1)[-1] for line in text.split("\n")] == [*map(skipped_line, refused), ""]
