"""builders.data: only a dataset that matches its SHA256SUMS reaches the package, from a folder or an archive URL."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from builders import data
from builders.data import DatasetError
from tests.conftest import SHARED_DATASET
from tests.servers import serving_folder

PHOTOS = ("chihuahua/1.jpg", "chihuahua/2.jpg", "muffin/1.jpg", "muffin/2.jpg")


def jpeg(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, "JPEG")
    return buffer.getvalue()


def write_sums(root: Path) -> None:
    """SHA256SUMS exactly as `cd root && sha256sum ./*/*.jpg` writes it."""
    lines = [
        f"{hashlib.sha256((root / name).read_bytes()).hexdigest()}  ./{name}\n"
        for name in sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.jpg"))
    ]
    (root / "SHA256SUMS").write_text("".join(lines))


@pytest.fixture
def source(tmp_path) -> Path:
    root = tmp_path / "source"
    for index, name in enumerate(PHOTOS):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(jpeg((40 * index, 100, 200)))
    write_sums(root)
    (root / "SOURCE.md").write_text("Photos: test fixture.\n")
    return root


@pytest.fixture
def dest(tmp_path) -> Path:
    return tmp_path / "package" / "data"


def assert_copied(source: Path, dest: Path) -> None:
    for name in (*PHOTOS, "SHA256SUMS", "SOURCE.md"):
        assert (dest / name).read_bytes() == (source / name).read_bytes(), name
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == sorted(
        (*PHOTOS, "SHA256SUMS", "SOURCE.md")
    )


def assert_no_partial(dest: Path) -> None:
    assert not dest.exists()
    assert not dest.with_name(dest.name + ".partial").exists()


def test_build_copies_photos_checksums_and_credit(source, dest):
    assert data.build(str(source), dest) == len(PHOTOS)
    assert_copied(source, dest)


def test_build_replaces_an_old_dest(source, dest):
    (dest / "muffin").mkdir(parents=True)
    (dest / "muffin" / "stale.jpg").write_bytes(b"old")
    data.build(str(source), dest)
    assert_copied(source, dest)


def remove(root: Path) -> None:
    (root / "muffin/2.jpg").unlink()


def add_extra(root: Path) -> None:
    (root / "muffin/2.jpg").with_name("stray.jpg").write_bytes(jpeg((0, 0, 0)))


def alter(root: Path) -> None:
    (root / "muffin/2.jpg").write_bytes(jpeg((255, 255, 0)))


@pytest.mark.parametrize(
    ("damage", "named"), [(remove, "muffin/2.jpg"), (add_extra, "muffin/stray.jpg"), (alter, "muffin/2.jpg")]
)
def test_missing_extra_or_altered_file_stops_the_build(source, dest, damage, named):
    damage(source)
    with pytest.raises(DatasetError, match=named):
        data.build(str(source), dest)
    assert_no_partial(dest)


def test_a_refused_build_keeps_the_previous_dest(source, dest):
    data.build(str(source), dest)
    alter(source)
    with pytest.raises(DatasetError):
        data.build(str(source), dest)
    assert (dest / "muffin/2.jpg").read_bytes() != (source / "muffin/2.jpg").read_bytes()
    assert data.verify(dest)  # still the earlier, complete copy


def test_missing_checksums_stop_the_build(source, dest):
    (source / "SHA256SUMS").unlink()
    with pytest.raises(DatasetError, match="SHA256SUMS"):
        data.build(str(source), dest)
    assert_no_partial(dest)


def test_main_reports_the_bad_file_and_returns_1(source, dest, capsys):
    alter(source)
    assert data.main(["--source", str(source), "--dest", str(dest)]) == 1
    assert "muffin/2.jpg" in capsys.readouterr().err
    assert_no_partial(dest)


def test_main_returns_0_on_success(source, dest, capsys):
    assert data.main(["--source", str(source), "--dest", str(dest)]) == 0
    assert f"{len(PHOTOS)} photos" in capsys.readouterr().out


@pytest.mark.skipif(not SHARED_DATASET.is_dir(), reason=f"shared dataset not at {SHARED_DATASET}")
def test_the_shared_dataset_verifies():
    checksums = data.verify(SHARED_DATASET)
    assert len(checksums) == 120
    assert {name.split("/")[0] for name in checksums} == {"chihuahua", "muffin"}


# ---------------------------------------------------------------------------
# Archive URL source, served from 127.0.0.1.
# ---------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[Path, str]]:
    """Serve tmp_path/www over HTTP on a free local port; yields (folder, base URL)."""
    folder = tmp_path / "www"
    folder.mkdir()
    with serving_folder(folder) as base:
        yield folder, base


@pytest.fixture
def archive_url(source, served) -> tuple[str, str]:
    """The small dataset as a .tar.gz (one top folder, as release archives have); (URL, its sha256)."""
    folder, base = served
    archive = folder / "photos.tar.gz"
    with tarfile.open(archive, "w:gz") as tarred:
        tarred.add(source, arcname="muffin-v-chihuahua")
    return f"{base}/photos.tar.gz", data.sha256_of(archive)


def test_archive_with_the_right_sha256_builds(source, dest, archive_url):
    url, sha256 = archive_url
    assert data.build(url, dest, sha256) == len(PHOTOS)
    assert_copied(source, dest)


def test_archive_with_a_wrong_sha256_is_refused(dest, archive_url):
    url, _sha256 = archive_url
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(DatasetError, match=f"expected {wrong}"):
        data.build(url, dest, wrong)
    assert_no_partial(dest)


def test_archive_without_a_sha256_is_refused(dest, archive_url):
    url, _ = archive_url
    with pytest.raises(DatasetError, match="needs its pinned SHA-256"):
        data.build(url, dest)
    assert_no_partial(dest)


def test_archive_whose_photos_do_not_match_is_refused(source, dest, served):
    alter(source)
    folder, base = served
    with tarfile.open(folder / "photos.tar.gz", "w:gz") as tarred:
        tarred.add(source, arcname="muffin-v-chihuahua")
    with pytest.raises(DatasetError, match=re.escape("muffin/2.jpg")):
        data.build(f"{base}/photos.tar.gz", dest, data.sha256_of(folder / "photos.tar.gz"))
    assert_no_partial(dest)
