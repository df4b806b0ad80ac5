"""`muffin-v-chihuahua batch`: classify a folder tree or a bucket of photos on a Ray cluster, with Ray Data.

Ray Data reads the files (local paths, or any URI pyarrow's filesystems read: s3://, gs://...), an actor pool of
Classifiers decodes them with `images` as `predict` does and runs the model (one model load per actor, not per
batch; Ray fuses the decoding into the actors), and Ray Data writes one row per file as Parquet, JSONL or CSV
parts: the path and `predict --json`'s fields, or the file's error. No scheduler, queue or worker pool of this
project's own: Ray's (the [ray] extra).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from muffin_v_chihuahua import cpus, images, verdicts_csv
from muffin_v_chihuahua.classifier import Classifier, Prediction

if TYPE_CHECKING:
    import pyarrow

FORMATS = ("parquet", "jsonl", "csv")
# Photos per task and model call: fewer calls' overhead; 2,000 photos ran 13 % faster than at 32 (2 CPUs).
BATCH = 64
# One engine thread per actor and as many actors as the cluster has CPUs: each decodes and runs the model in turn,
# with no thread waiting on another (1 actor of 2 threads ran as fast here; on larger nodes one thread scales best).
THREADS_PER_ACTOR = 1
# Ray resources, not cores: the same for both steps, so that Ray fuses them (decoding then predicting in each actor:
# 1.4x faster here than decoding in tasks of their own); whole CPUs would leave none for Ray's own read tasks on a
# small node (a deadlock).
STEP_CPUS = 0.5
# Every listener of a cluster started here (and its workers) on 127.0.0.1, not the machine's network address.
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


class OutputExists(ValueError):
    """The output folder holds something already; a run never writes into (or over) another's parts."""


def decode(batch: dict[str, np.ndarray], size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Ray rows {path, bytes} -> {path, pixels (the model's input as uint8: the same values, a quarter of the
    memory), error ("" when decoded)}."""
    pixels = np.zeros((len(batch["path"]), size[1], size[0], 3), dtype=np.uint8)
    errors = []
    for row, data in enumerate(batch["bytes"]):
        try:
            pixels[row] = images.decode(data, size)
            errors.append("")
        except images.ImageError as error:
            errors.append(str(error))
    return {"path": batch["path"], "pixels": pixels, "error": np.array(errors, dtype=object)}


class Judge:
    """One actor of the pool: the model loaded once, then each batch of decoded photos -> its rows."""

    def __init__(self, options: dict[str, Any], heatmap: bool, flat: bool) -> None:
        # The engine's threads: this actor's share of its node, not every core (the actor's process is its own).
        os.environ[cpus.OVERRIDE_VARIABLE] = str(THREADS_PER_ACTOR)
        self.classifier = Classifier(**options)
        self.heatmap, self.flat = heatmap, flat

    def __call__(self, batch: dict[str, np.ndarray]) -> pyarrow.Table:
        decoded = [row for row, error in enumerate(batch["error"]) if not error]
        arrays = [batch["pixels"][row].astype(np.float32) for row in decoded]
        predicted = dict(zip(decoded, self.classifier.predict(arrays, heatmap=self.heatmap), strict=True))
        outcomes = [predicted.get(row, str(batch["error"][row])) for row in range(len(batch["path"]))]
        return table([str(path) for path in batch["path"]], outcomes, self.heatmap, self.flat)


def table(paths: list[str], outcomes: list[Prediction | str], heatmap: bool, flat: bool) -> pyarrow.Table:
    """One row per file: its path and predict --json's fields (CSV: predict --csv's columns), or its error."""
    import pyarrow as pa

    if flat:
        columns: dict[str, list[Any]] = {name: [] for name in (*verdicts_csv.HEADER, "error")}
        for path, outcome in zip(paths, outcomes, strict=True):
            empty = [""] * (len(verdicts_csv.HEADER) - 1)
            values = verdicts_csv.row(path, outcome) if isinstance(outcome, Prediction) else [path, *empty]
            for name, value in zip(columns, [*values, "" if isinstance(outcome, Prediction) else outcome], strict=True):
                columns[name].append(value)
        return pa.table(columns)
    records = [
        {"path": path, **outcome.to_dict(), "error": None}
        if isinstance(outcome, Prediction)
        else {"path": path, "error": outcome}
        for path, outcome in zip(paths, outcomes, strict=True)
    ]
    return pa.Table.from_pylist(records, schema=schema(heatmap))


def schema(heatmap: bool) -> pyarrow.Schema:
    """The rows' schema: the same in every part, whether a part holds errors only or predictions only."""
    import pyarrow as pa

    fields = [
        pa.field("path", pa.string()),
        pa.field("verdict", pa.string()),
        pa.field("probability", pa.float64()),  # null for neither, which the head cannot judge
        pa.field("imagenet", pa.list_(pa.struct([("name", pa.string()), ("probability", pa.float64())]))),
        pa.field("evidence", pa.float64()),
        pa.field("reason", pa.string()),
    ]
    if heatmap:
        fields += [pa.field("heatmap", pa.list_(pa.list_(pa.float64()))), pa.field("heatmap_class", pa.string())]
    return pa.schema([*fields, pa.field("error", pa.string())])  # null unless the file could not be classified


def run(sources: list[str], output: str, output_format: str, address: str | None, heatmap: bool, **model: Any) -> int:
    """Classify every photo of `sources` into `output` (a folder of parts, made new); the exit status: 1 when a
    file could not be classified (its row holds why), else 0. model: Classifier's options."""
    size = Classifier(**model).input_size  # loaded here too: a bad model or option fails before any cluster work
    local = Path(output)
    if "://" not in output and local.is_dir() and not any(local.iterdir()):
        local.rmdir()  # an empty folder made for the output: Ray makes it again
    elif "://" not in output and local.exists():
        raise OutputExists(f"{output} already exists: name a new folder for this run's parts")
    if address is None:
        os.environ.update(LOOPBACK)  # before Ray starts the cluster's processes, which inherit it
    import ray

    if address is None:  # a cluster of this machine's usable CPUs, for this run only
        ray.init(num_cpus=cpus.usable(), include_dashboard=False, _node_ip_address="127.0.0.1")
    else:
        ray.init(address=address)
    try:
        actors = max(1, int(ray.cluster_resources().get("CPU", 1) // THREADS_PER_ACTOR))
        photos = read(sources)
        decoded = photos.map_batches(decode, fn_kwargs={"size": size}, batch_size=BATCH, num_cpus=STEP_CPUS)
        rows = decoded.map_batches(
            Judge,
            fn_constructor_kwargs={"options": model, "heatmap": heatmap, "flat": output_format == "csv"},
            batch_size=BATCH,
            num_cpus=STEP_CPUS,
            compute=ray.data.ActorPoolStrategy(size=actors),  # all at once: a pool that grew would start late
        )
        write = {"parquet": rows.write_parquet, "jsonl": rows.write_json, "csv": rows.write_csv}[output_format]
        write(output, mode="error")  # never into a folder that holds something: a rerun names a new one
    finally:
        ray.shutdown()
    failed = failures(output, output_format)
    for row in failed:
        print(f"muffin-v-chihuahua: skipped {row['path']}: {row['error']}", file=sys.stderr)
    return 1 if failed else 0


def failures(output: str, output_format: str) -> list[dict[str, str]]:
    """The rows written with an error, read back by pyarrow alone (their two columns; no second Ray job)."""
    import pyarrow.compute
    import pyarrow.dataset

    written = pyarrow.dataset.dataset(
        output, format={"parquet": "parquet", "jsonl": "json", "csv": "csv"}[output_format]
    )
    has_error = pyarrow.compute.invert(pyarrow.compute.is_null(pyarrow.dataset.field("error"), nan_is_null=True))
    found = written.to_table(columns=["path", "error"], filter=has_error).to_pylist()
    return [row for row in found if row["error"]]  # CSV's "" is no error


def read(sources: list[str]) -> Any:
    """The photos of local files and folders, chosen as predict chooses them (images.photo_files), and those under
    every URI (s3://bucket/prefix...), by their suffix. Ray gets local paths listed: its own suffix filter reads a
    name with "?" or "#" as a URL's query or fragment, and would drop the file."""
    import ray

    local = [source for source in sources if "://" not in source]
    remote = [source for source in sources if "://" in source]
    parts = []
    files = [str(path) for path in images.photo_files([Path(source) for source in local])]
    if files:
        parts.append(ray.data.read_binary_files(files, include_paths=True))
    if remote:
        suffixes = [suffix.lstrip(".") for suffix in images.PHOTO_SUFFIXES]
        parts.append(ray.data.read_binary_files(remote, include_paths=True, file_extensions=suffixes))
    if not parts:
        return ray.data.from_items([])  # no photo: no part is written, as predict writes no line
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
