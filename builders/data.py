"""Dataset source (a folder, or an http(s) URL of an archive) -> the package's demo photos, SHA-256 checked.

    python -m builders.data --source ../shared/datasets/muffin-v-chihuahua --dest muffin_v_chihuahua/data
    python -m builders.data --source https://host/photos.tar.gz --sha256 <archive sha256> --dest ...

The source holds `chihuahua/` and `muffin/` photos, `SHA256SUMS` (as `sha256sum` writes it) and
`SOURCE.md` (the credit, shipped with the photos). Any missing, extra or altered file stops the build.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

LABELS = ("chihuahua", "muffin")
CHECKSUMS = "SHA256SUMS"
CREDIT = "SOURCE.md"


class DatasetError(RuntimeError):
    """The dataset source does not match its checksums; the message names the file."""


def sha256_of(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def read_checksums(root: Path) -> dict[str, str]:
    """SHA256SUMS -> {relative path: sha256}."""
    sums_file = root / CHECKSUMS
    if not sums_file.is_file():
        raise DatasetError(f"{sums_file} is missing: the photos cannot be checked")
    return parse_checksums(sums_file.read_text())


def parse_checksums(text: str) -> dict[str, str]:
    """`sha256sum` output -> {relative path: sha256}."""
    checksums = {}
    for line in text.splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            checksums[name.lstrip("*").removeprefix("./")] = digest.lower()
    return checksums


def verify(root: Path) -> dict[str, str]:
    """Check every photo under root against SHA256SUMS; return the checksums."""
    checksums = read_checksums(root)
    present = {p.relative_to(root).as_posix() for label in LABELS for p in (root / label).rglob("*") if p.is_file()}
    missing = sorted(set(checksums) - present)
    extra = sorted(present - set(checksums))
    if missing:
        raise DatasetError(f"missing from {root}: {', '.join(missing)}")
    if extra:
        raise DatasetError(f"not listed in {root / CHECKSUMS}: {', '.join(extra)}")
    altered = [name for name, digest in sorted(checksums.items()) if sha256_of(root / name) != digest]
    if altered:
        raise DatasetError(f"SHA-256 mismatch in {root}: {', '.join(altered)}")
    return checksums


def dataset_digest(checksums: dict[str, str]) -> str:
    """One SHA-256 for the whole dataset, independent of file order."""
    lines = "".join(f"{digest}  {name}\n" for name, digest in sorted(checksums.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def fetch_archive(url: str, sha256: str, workdir: Path) -> Path:
    """Download an archive, check its pinned SHA-256, unpack it; return the dataset root inside."""
    if not sha256:
        raise DatasetError(f"an archive URL needs its pinned SHA-256 (--sha256): {url}")
    archive = workdir / Path(urllib.parse.urlsplit(url).path).name
    with urllib.request.urlopen(url, timeout=60) as response, archive.open("wb") as out:
        shutil.copyfileobj(response, out)
    actual = sha256_of(archive)
    if actual != sha256.lower():
        raise DatasetError(f"{url}: SHA-256 is {actual}, expected {sha256}")
    unpacked = workdir / "unpacked"
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(unpacked)  # zipfile refuses absolute paths and '..' by itself
    else:
        with tarfile.open(archive) as tarred:
            tarred.extractall(unpacked, filter="data")  # 'data' refuses links and paths outside
    roots = [sums.parent for sums in unpacked.rglob(CHECKSUMS)]
    if len(roots) != 1:
        raise DatasetError(f"{url}: expected one {CHECKSUMS} in the archive, found {len(roots)}")
    return roots[0]


def build(source: str, dest: Path, sha256: str = "") -> int:
    """Verify the source, then replace dest with its photos, checksums and credit. Returns the photo count."""
    with tempfile.TemporaryDirectory() as workdir:
        root = (
            fetch_archive(source, sha256, Path(workdir)) if source.startswith(("http://", "https://")) else Path(source)
        )
        checksums = verify(root)
        staging = dest.with_name(dest.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        for name in checksums:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / name, staging / name)
        for name in (CHECKSUMS, CREDIT):
            shutil.copyfile(root / name, staging / name)
        verify(staging)  # what lands in the package is what was checked
        shutil.rmtree(dest, ignore_errors=True)
        staging.rename(dest)
    return len(checksums)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="dataset folder, or http(s) URL of a .tar.gz/.zip archive")
    parser.add_argument("--sha256", default="", help="pinned SHA-256 of the archive (required for a URL)")
    parser.add_argument("--dest", type=Path, default=Path("muffin_v_chihuahua/data"))
    args = parser.parse_args(argv)
    try:
        count = build(args.source, args.dest, args.sha256)
    except (DatasetError, OSError) as error:
        print(f"data: {error}", file=sys.stderr)
        return 1
    print(f"data: {count} photos from {args.source} verified and copied to {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
