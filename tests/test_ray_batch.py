"""ray_batch: `batch` on a real Ray cluster (`ray start --head`, joined by --ray-address) and on one it starts itself,
photo by photo the same verdicts as `predict`, every file a row, each failure a row with its error."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pyarrow.csv
import pyarrow.parquet
import pytest

from muffin_v_chihuahua import verdicts_csv
from muffin_v_chihuahua.ray_batch import LOOPBACK
from tests import corpus
from tests.servers import clean_env, free_port

pytestmark = pytest.mark.ray

RAY = Path(sys.executable).with_name("ray")
CLUSTER_CPUS = 2
# Ray 2.60 starts a cluster with token authentication; its clients present the token only in token mode. Our own
# token for our own cluster, never the machine's ~/.ray/auth_token.
TOKEN = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "muffin_v_chihuahua", *args]
    return subprocess.run(command, capture_output=True, text=True, env=clean_env(**LOOPBACK, **TOKEN), timeout=600)


def own_processes(marker: str) -> list[int]:
    """The processes whose command line names marker (our cluster's temp folder): never another cluster's."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class Cluster(NamedTuple):
    address: str  # host:port of its GCS, for --ray-address
    temp: str  # its temp folder, which its processes' command lines name


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head node of CLUSTER_CPUS on 127.0.0.1 (ray start --head --block, in its own session).
    Stopped by its own processes, never `ray stop`, which ends every Ray cluster on the machine."""
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    port = free_port()
    command = [
        str(RAY),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={CLUSTER_CPUS}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]
    env = clean_env(**LOOPBACK, **TOKEN)
    head = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([str(RAY), "status", f"--address={address}"], env=env, capture_output=True).returncode:
            assert head.poll() is None and time.monotonic() < deadline, "the Ray head did not start"
            time.sleep(0.5)
        yield Cluster(address, temp)
    finally:  # a test cluster holds nothing worth draining (Ray would wait 30 s for it)
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=60)
        for pid in own_processes(temp):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def test_every_listener_of_the_cluster_is_on_loopback(cluster):
    """Ray binds the machine's network address unless told otherwise: here, only 127.0.0.1 (ss -ltnp)."""
    listing = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    ours = {f"pid={pid}," for pid in own_processes(cluster.temp)}
    listeners = [line.split()[3] for line in listing.splitlines() if any(pid in line for pid in ours)]
    assert listeners, listing  # the GCS, the raylet, the workers...
    assert [address for address in listeners if not address.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:"))] == []


@pytest.fixture(scope="module")
def tree(tmp_path_factory, labelled_photos) -> Path:
    """A folder tree as a nightly job finds one: the dataset by class, and the hostile corpus beside it."""
    root = tmp_path_factory.mktemp("photos")
    for label, path in labelled_photos:
        (root / label).mkdir(exist_ok=True)
        shutil.copy(path, root / label / path.name)
    (root / "hostile").mkdir()
    for index, case in enumerate(corpus.cases()):
        (root / "hostile" / f"{index:02d}-{case.filename}").write_bytes(case.data)
    return root


@pytest.fixture(scope="module")
def predicted(tree) -> tuple[dict[str, dict], dict[str, str]]:
    """predict --json over the tree: (path -> its record, path -> why it was skipped)."""
    result = run("predict", "--json", "--engine", "onnx", str(tree))
    assert result.returncode == 1, result.stderr  # the hostile files
    records = {record["path"]: record for record in map(json.loads, result.stdout.splitlines())}
    prefix = "muffin-v-chihuahua: skipped "
    skipped = dict(line[len(prefix) :].split(": ", 1) for line in result.stderr.splitlines() if line.startswith(prefix))
    return records, skipped


def assert_same_as_predict(rows: list[dict], predicted: tuple[dict[str, dict], dict[str, str]]) -> None:
    records, skipped = predicted
    by_path = {row["path"]: row for row in rows}
    assert len(by_path) == len(rows) == len(records) + len(skipped)  # no file lost, none twice
    assert {path: row["error"] for path, row in by_path.items() if row["error"]} == skipped
    for path, record in records.items():
        row = by_path[path]
        assert (row["verdict"], row["reason"], row["error"]) == (record["verdict"], record["reason"], None), path
        assert [label["name"] for label in row["imagenet"]] == [label["name"] for label in record["imagenet"]]
        assert row["evidence"] == pytest.approx(record["evidence"], abs=1e-5)
        if record["probability"] is None:
            assert row["probability"] is None
        else:
            assert row["probability"] == pytest.approx(record["probability"], abs=1e-5)


def test_batch_on_a_running_cluster_gives_predicts_verdicts_for_every_file(cluster, tree, predicted, tmp_path):
    out = tmp_path / "verdicts"
    result = run("batch", str(tree), "--output", str(out), "--ray-address", cluster.address, "--engine", "onnx")
    assert result.returncode == 1, result.stderr  # files failed: counted as predict counts them
    parts = sorted(out.glob("*.parquet"))
    assert parts, result.stderr
    assert_same_as_predict(pyarrow.parquet.read_table(out).to_pylist(), predicted)
    assert "Traceback" not in result.stderr
    for path, reason in predicted[1].items():
        assert f"muffin-v-chihuahua: skipped {path}: {reason}" in result.stderr


def test_jsonl_parts_with_heatmaps_on_a_running_cluster(cluster, tree, predicted, tmp_path):
    out = tmp_path / "jsonl"
    chihuahuas = tree / "chihuahua"
    result = run(
        "batch",
        str(chihuahuas),
        "--output",
        str(out),
        "--format",
        "jsonl",
        "--heatmap",
        f"--ray-address={cluster.address}",
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for part in sorted(out.glob("*.json")) for line in part.read_text().splitlines()]
    assert len(rows) == len(list(chihuahuas.glob("*.jpg")))
    for row in rows:
        record = predicted[0][row["path"]]
        assert row["verdict"] == record["verdict"] and row["heatmap_class"] == "chihuahua"
        assert len(row["heatmap"]) == 7 and all(len(cells) == 7 for cells in row["heatmap"])


def test_a_uri_is_read_through_its_filesystem_with_predicts_verdicts(cluster, tree, predicted, tmp_path):
    """file:// is pyarrow's local filesystem, reached as s3:// or gs:// are: listed by the driver, read by the actors."""
    out = tmp_path / "uri"
    source = f"file://{tree}/"  # a trailing slash, as bucket prefixes are often written
    result = run("batch", source, "--output", str(out), f"--ray-address={cluster.address}", "--engine", "onnx")
    assert result.returncode == 1, result.stderr
    rows = pyarrow.parquet.read_table(out).to_pylist()
    for row in rows:
        assert row["path"].startswith(f"file://{tree}/") and "//" not in row["path"][len("file://") :]
        row["path"] = row["path"][len("file://") :]
    assert_same_as_predict(rows, predicted)  # under a URI, photos chosen by their suffix, as in a local folder


def test_a_folder_without_photos_is_no_failure(cluster, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("not a photo")
    result = run("batch", str(tmp_path / "in"), "--output", str(tmp_path / "out"), f"--ray-address={cluster.address}")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr


def test_listed_chooses_photos_as_predict_does_and_keeps_what_is_missing(tree, tmp_path):
    from muffin_v_chihuahua.ray_batch import listed

    (tmp_path / "notes.txt").write_text("not a photo")
    (tmp_path / "nested").mkdir()
    shutil.copy(next((tree / "muffin").iterdir()), tmp_path / "nested" / "a?b#c.JPG")  # URL-like characters
    missing = f"file://{tmp_path}/missing.jpg"
    filesystems, photos = listed([str(tmp_path), f"file://{tmp_path}", missing])
    assert len(filesystems) == 3
    assert [(photo["path"], photo["source"]) for photo in photos] == [
        (f"{tmp_path}/nested/a?b#c.JPG", 0),
        (f"file://{tmp_path}/nested/a?b#c.JPG", 1),
        (missing, 2),  # its row will say why: a name given is never dropped
    ]
    assert photos[0]["file"] == photos[1]["file"] == f"{tmp_path}/nested/a?b#c.JPG"


def test_without_an_address_batch_starts_its_own_cluster_and_writes_csv(tree, predicted, tmp_path):
    out = tmp_path / "csv"
    files = [str(path) for path in sorted((tree / "muffin").iterdir())[:5]]
    [(index, case)] = [(i, c) for i, c in enumerate(corpus.cases()) if c.expected == "empty"]
    bad = str(tree / "hostile" / f"{index:02d}-{case.filename}")  # named, so read whatever its suffix
    result = run("batch", *files, bad, "--output", str(out), "--format", "csv")
    assert result.returncode == 1, result.stderr
    parts = [pyarrow.csv.read_csv(part) for part in sorted(out.glob("*.csv"))]
    assert parts and all(part.column_names == [*verdicts_csv.HEADER, "error"] for part in parts)
    rows = [row for part in parts for row in part.to_pylist()]
    assert sorted(row["path"] for row in rows) == sorted([*files, bad])
    for row in rows:
        if row["path"] == bad:
            assert row["error"] and not row["verdict"]
        else:
            assert row["verdict"] == predicted[0][row["path"]]["verdict"] and not row["error"]


def test_an_output_folder_that_holds_something_is_refused_before_any_work(tmp_path, tree):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "part-0.parquet").write_bytes(b"an earlier run's")
    result = run("batch", str(tree / "muffin"), "--output", str(out))
    assert result.returncode == 2
    assert result.stderr.strip() == f"muffin-v-chihuahua: {out} already exists: name a new folder for this run's parts"


def test_heatmaps_have_no_room_in_csv(tmp_path, tree):
    result = run("batch", str(tree), "--output", str(tmp_path / "x"), "--format", "csv", "--heatmap")
    assert result.returncode == 2 and "CSV has no room for a grid" in result.stderr


def test_batch_without_the_ray_extra_names_the_extra(monkeypatch, capsys, tmp_path):
    from muffin_v_chihuahua.__main__ import main

    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed, as in the plain wheel's venv
    assert main(["batch", str(tmp_path), "--output", str(tmp_path / "out")]) == 2
    assert "pip install 'muffin-v-chihuahua[ray]'" in capsys.readouterr().err
