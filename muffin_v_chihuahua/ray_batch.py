"""`muffin-v-chihuahua batch`: classify a folder tree or a bucket of photos on a Ray cluster, with Ray Data.

The driver lists the photos (local paths, or any URI pyarrow's filesystems read: s3://, gs://...); Ray Data hands
them in batches to an actor pool of Classifiers (one model load per actor, not per batch), each reading its files,
decoding them with `images` as `predict` does and running the model; Ray Data writes one row per file as Parquet,
JSONL or CSV parts: the path and `predict --json`'s fields, or the file's error. No scheduler, queue or worker pool
of this project's own: Ray's (the [ray] extra)."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from muffin_v_chihuahua import cpus, images, verdicts_csv
from muffin_v_chihuahua.classifier import Classifier, Prediction

if TYPE_CHECKING:
    import pyarrow
    import pyarrow.fs

# Photos per model call, and per block of the listing: fewer calls' overhead (2,000 photos ran 13 % faster than at 32
# on 2 CPUs); Ray's default of 200 blocks cost 1.4 s more to plan for 2,000 photos (a block costs the driver ~3 ms).
BATCH = 64
# One engine thread per actor and as many actors as the cluster has CPUs: each reads, decodes and runs the model in
# turn, with no thread waiting on another (1 actor of 2 threads ran as fast here; on larger nodes one thread scales
# best).
THREADS_PER_ACTOR = 1
# Ray resources, not cores: whole CPUs for the actors would leave none for Ray Data's write tasks on a small node,
# which would then wait for the whole pool to finish.
ACTOR_CPUS = 0.5
# Every listener of a cluster started here (and its workers) on 127.0.0.1, not the machine's network address.
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


class OutputExists(ValueError):
    """The output folder holds something already; a run never writes into (or over) another's parts."""


class Judge:
    """One actor of the pool: the model loaded once, then each batch of listed photos (read through their source's
    filesystem, decoded with `images` as predict decodes) -> its rows."""

    def __init__(
        self, options: dict[str, Any], filesystems: list[pyarrow.fs.FileSystem], heatmap: bool, flat: bool
    ) -> None:
        # The engine's threads: this actor's share of its node, not every core (the actor's process is its own).
        os.environ[cpus.OVERRIDE_VARIABLE] = str(THREADS_PER_ACTOR)
        self.classifier = Classifier(**options)
        self.filesystems, self.heatmap, self.flat = filesystems, heatmap, flat

    def __call__(self, batch: dict[str, np.ndarray]) -> pyarrow.Table:
        arrays, failed = {}, {}
        for row, (source, file) in enumerate(zip(batch["source"], batch["file"], strict=True)):
            try:
                arrays[row] = self._decode(int(source), str(file))
            except (images.ImageError, OSError) as error:
                failed[row] = images.failure(error)
        predicted = dict(zip(arrays, self.classifier.predict(list(arrays.values()), heatmap=self.heatmap), strict=True))
        outcomes = [predicted[row] if row in predicted else failed[row] for row in range(len(batch["path"]))]
        return table([str(path) for path in batch["path"]], outcomes, self.heatmap, self.flat)

    def _decode(self, source: int, file: str) -> np.ndarray:
        with self.filesystems[source].open_input_file(file) as stream:
            return images.decode(images.read_photo(stream, stream.size()), self.classifier.input_size)


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
    Classifier(**model)  # loaded here too: a bad model or option fails before any cluster work
    local = Path(output)
    if "://" not in output and local.is_dir() and not any(local.iterdir()):
        local.rmdir()  # an empty folder made for the output: Ray makes it again
    elif "://" not in output and local.exists():
        raise OutputExists(f"{output} already exists: name a new folder for this run's parts")
    filesystems, photos = listed(sources)
    if address is None:
        os.environ.update(LOOPBACK)  # before Ray starts the cluster's processes, which inherit it
    import ray

    if address is None:  # a cluster of this machine's usable CPUs, for this run only
        ray.init(num_cpus=cpus.usable(), include_dashboard=False, _node_ip_address="127.0.0.1")
    else:
        ray.init(address=address)
    try:
        actors = max(1, int(ray.cluster_resources().get("CPU", 1) // THREADS_PER_ACTOR))
        rows = ray.data.from_items(photos, override_num_blocks=max(1, math.ceil(len(photos) / BATCH))).map_batches(
            Judge,
            fn_constructor_kwargs={
                "options": model,
                "filesystems": filesystems,
                "heatmap": heatmap,
                "flat": output_format == "csv",
            },
            batch_size=BATCH,
            num_cpus=ACTOR_CPUS,
            compute=ray.data.ActorPoolStrategy(size=actors),  # all at once: a pool that grew would start late
        )
        write = {"parquet": rows.write_parquet, "jsonl": rows.write_json, "csv": rows.write_csv}[output_format]
        write(output, mode=ray.data.SaveMode.ERROR)  # never into a folder that holds something: a rerun names a new one
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

    try:
        written = pyarrow.dataset.dataset(
            output, format={"parquet": "parquet", "jsonl": "json", "csv": "csv"}[output_format]
        )
    except FileNotFoundError:  # no photo, so no part: predict, too, writes no line
        return []
    has_error = pyarrow.compute.invert(pyarrow.compute.is_null(pyarrow.dataset.field("error"), nan_is_null=True))
    found = written.to_table(columns=["path", "error"], filter=has_error).to_pylist()
    return [row for row in found if row["error"]]  # CSV's "" is no error


def listed(sources: list[str]) -> tuple[list[pyarrow.fs.FileSystem], list[dict[str, Any]]]:
    """Each source's filesystem (pyarrow's: local, s3://, gs://...) and the photos in them, a row each: its path as
    predict shows it, its source's index, its path in that filesystem. Local files and folders are chosen as predict
    chooses them (images.photo_files); under a URI, the files with a photo's suffix. The actors read the files: Ray
    Data's own reader stats every listed file first (2.8 s for 2,000) and holds a CPU for the reading."""
    import pyarrow.fs

    filesystems: list[pyarrow.fs.FileSystem] = []
    photos: list[dict[str, Any]] = []
    for source in sources:
        if "://" in source:
            filesystem, root = pyarrow.fs.FileSystem.from_uri(source)
            found = [(source, root)]  # a file, or a name that is not there: its row says why
            if filesystem.get_file_info(root).type == pyarrow.fs.FileType.Directory:
                infos = filesystem.get_file_info(pyarrow.fs.FileSelector(root, recursive=True))
                found = [
                    (source.rstrip("/") + info.path[len(root.rstrip("/")) :], info.path)
                    for info in sorted(infos, key=lambda info: info.path)
                    if info.type == pyarrow.fs.FileType.File and Path(info.path).suffix.lower() in images.PHOTO_SUFFIXES
                ]
        else:
            filesystem = pyarrow.fs.LocalFileSystem()
            found = [(str(path), os.path.abspath(path)) for path in images.photo_files([Path(source)])]
        photos += [{"path": shown, "source": len(filesystems), "file": file} for shown, file in found]
        filesystems.append(filesystem)
    return filesystems, photos
