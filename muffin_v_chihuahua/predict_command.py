"""`muffin-v-chihuahua predict`: photos and folders of photos to a table, JSON lines or CSV, in order; each batch
decodes in threads while the one before is predicted (predict_files, which evaluate shares)."""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from muffin_v_chihuahua import cpus, heatmaps, images, text_table, verdicts_csv
from muffin_v_chihuahua.classifier import Classifier, Prediction

BATCH = 16
# Threads that decode photos while the model predicts (Pillow lets go of the GIL while it decodes): a few, so
# that the photos being decoded at once stay few too (a 40-megapixel PNG is 120 MB).
DECODERS = min(4, cpus.usable())


Decoded = tuple[Image.Image | None, np.ndarray]  # (the upright photo, if kept; the model's input array)


def decoding(
    files: list[Path], size: tuple[int, int], keep_pictures: bool
) -> Generator[list[tuple[Path, Future[Decoded]]], None, None]:
    """The files in batches of BATCH, in their order, each with its input array to come (and its upright photo when
    keep_pictures). When a batch is handed out the next one is already decoding, and no more: two batches at most
    are held. Close it to stop early."""
    pool = ThreadPoolExecutor(DECODERS, thread_name_prefix="decode")

    def decode(path: Path) -> Decoded:
        picture = images.open_rgb(images.read_file(path), size)
        return (picture if keep_pictures else None), images.to_array(picture, size)

    def submit(batch: list[Path]) -> list[tuple[Path, Future[Decoded]]]:
        return [(path, pool.submit(decode, path)) for path in batch]

    try:
        ahead = submit(files[:BATCH])
        for start in range(0, len(files), BATCH):
            batch, ahead = ahead, submit(files[start + BATCH : start + 2 * BATCH])
            yield batch
    finally:
        pool.shutdown(cancel_futures=True)  # on Ctrl-C or a closed pipe: only the decodes under way finish


class Progress:
    """'done/total photos' on the last line of a terminal's stderr, redrawn in place. Anything else written to the
    terminal (rows, when stdout is it too; a skipped file) goes after clear(), and the count is drawn again after."""

    def __init__(self, total: int, shown: bool):
        self.total, self.shown, self.done, self.drawn = total, shown, 0, ""

    def clear(self) -> None:
        if self.drawn:
            print("\r" + " " * len(self.drawn) + "\r", end="", file=sys.stderr, flush=True)
            self.drawn = ""

    def count(self, photos: int) -> None:
        self.done += photos
        if self.shown:
            sys.stdout.flush()  # this batch's rows first
            self.drawn = f"{self.done}/{self.total} photos"
            print("\r" + self.drawn, end="", file=sys.stderr, flush=True)


def heatmap_file(folder: Path, path: Path) -> Path:
    """Where --heatmap-dir puts a photo's overlay: its path as given, inside folder (no root, no '..'), + .png."""
    inside = [part for part in path.parts if part not in (path.anchor, "..", ".")]
    return folder.joinpath(*inside).with_name(f"{path.name}.png")


def predict_files(
    files: list[Path],
    classifier: Classifier,
    each: Callable[[Path, Image.Image | None, Prediction], None],
    heatmap: bool = False,
    keep_pictures: bool = False,
) -> int:
    """Predict the files in their order, the next batch decoding while the model runs this one: each(path, its
    upright photo if keep_pictures else None, its prediction) per photo; a file that cannot be decoded is named on
    stderr and skipped. A terminal's stderr counts the photos. Returns how many files were skipped."""
    failures = 0
    # On a terminal only, where it is redrawn in place; not into a log, and not for a run of one batch.
    progress = Progress(len(files), shown=sys.stderr.isatty() and len(files) > BATCH)
    with contextlib.closing(decoding(files, classifier.input_size, keep_pictures)) as batches:
        for batch in batches:
            decoded = []
            for path, pending in batch:
                try:
                    decoded.append((path, *pending.result()))
                except (images.ImageError, OSError) as error:
                    failures += 1
                    progress.clear()
                    print(f"muffin-v-chihuahua: skipped {path}: {images.failure(error)}", file=sys.stderr)
            predictions = classifier.predict([array for *_, array in decoded], heatmap=heatmap)
            progress.clear()
            for (path, picture, _), prediction in zip(decoded, predictions, strict=True):
                each(path, picture, prediction)
            progress.count(len(batch))
    progress.clear()
    return failures


def predict(
    paths: list[Path],
    output: str,
    engine: str,
    model_dir: Path | None,
    precision: str = "auto",
    heatmap: bool = False,
    heatmap_dir: Path | None = None,
    neither_threshold: float | None = None,
) -> int:
    files = images.photo_files(paths)
    classifier = Classifier(engine, model_dir, precision, neither_threshold)
    writer = WRITERS[output]()

    def write(path: Path, picture: Image.Image | None, prediction: Prediction) -> None:
        if heatmap_dir is not None:
            drawn = heatmap_file(heatmap_dir, path)
            drawn.parent.mkdir(parents=True, exist_ok=True)
            assert picture is not None and prediction.heatmap is not None  # both asked for below
            heatmaps.overlay(picture, prediction.heatmap).save(drawn, format="PNG")
        if not heatmap:  # --heatmap-dir alone draws the heatmap without adding it to the output
            prediction = replace(prediction, heatmap=None, heatmap_class=None)
        writer.write(str(path), prediction)

    drawing = heatmap_dir is not None
    failures = predict_files(files, classifier, write, heatmap=heatmap or drawing, keep_pictures=drawing)
    writer.close()
    return 1 if failures else 0


class VerdictWriter(Protocol):
    """Where predict's results go: write() once per photo, in order, then close()."""

    def write(self, path: str, prediction: Prediction) -> None: ...

    def close(self) -> None: ...


class TableWriter:
    """Aligned columns, printed at close (the widths depend on every row)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []

    def write(self, path: str, prediction: Prediction) -> None:
        top = prediction.imagenet[0]
        self.rows.append(
            (
                path,
                prediction.verdict,
                "–" if prediction.probability is None else f"{prediction.probability:.1%}",
                f"{prediction.evidence:.1%}",
                f"{top.name} {top.probability:.0%}",
            )
        )

    def close(self) -> None:
        header = ("photo", "verdict", "probability", "evidence", "top ImageNet label")
        for line in text_table.aligned([header, *self.rows]):
            print(line)


class JsonLinesWriter:
    def write(self, path: str, prediction: Prediction) -> None:
        print(json.dumps({"path": path, **prediction.to_dict()}), flush=True)

    def close(self) -> None:
        pass


class CsvWriter:
    def __init__(self) -> None:
        self.writer = csv.writer(sys.stdout)
        self.writer.writerow(verdicts_csv.HEADER)

    def write(self, path: str, prediction: Prediction) -> None:
        self.writer.writerow(verdicts_csv.row(path, prediction))

    def close(self) -> None:
        sys.stdout.flush()


WRITERS: dict[str, Callable[[], VerdictWriter]] = {"table": TableWriter, "json": JsonLinesWriter, "csv": CsvWriter}
