"""The console script (muffin_v_chihuahua.__main__): predict, info, --version; run-demo is in test_wheel."""

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from muffin_v_chihuahua import __version__, images
from muffin_v_chihuahua.__main__ import main
from tests import corpus


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, dataset_dir):
    """A folder tree with two muffins, two chihuahuas (one nested) and one bad file."""
    root = tmp_path_factory.mktemp("photos")
    (root / "nested").mkdir()
    for label in ("muffin", "chihuahua"):
        first, second = sorted((dataset_dir / label).iterdir())[:2]
        shutil.copy(first, root / f"{label}-a.jpg")
        shutil.copy(second, root / "nested" / f"{label}-b.jpg")
    (root / "notes.jpg").write_text("not a photo")
    (root / "readme.txt").write_text("ignored: not a photo suffix")
    return root


def test_predict_prints_a_table_skips_bad_files_and_exits_1(photo_folder, capsys, classifier):
    assert main(["predict", "--engine", classifier.engine, str(photo_folder)]) == 1
    out, err = capsys.readouterr()
    rows = out.strip().splitlines()
    assert rows[0].split()[:3] == ["photo", "verdict", "probability"]
    assert len(rows) == 5
    for row in rows[1:]:
        path = row.split()[0]
        [expected] = classifier.predict([images.decode(Path(path).read_bytes(), classifier.input_size)])
        assert row.split()[1:3] == [expected.verdict, f"{expected.probability:.1%}"]
    assert "notes.jpg" in err and "not an image" in err and "readme.txt" not in out + err


def test_predict_json_gives_one_object_per_line(photo_folder, capsys):
    assert main(["predict", "--json", str(photo_folder / "muffin-a.jpg")]) == 0
    [line] = capsys.readouterr().out.strip().splitlines()
    result = json.loads(line)
    assert result["path"].endswith("muffin-a.jpg") and result["verdict"] in ("muffin", "neither")
    assert len(result["imagenet"]) == 3 and 0 <= result["probability"] <= 1


def test_predict_csv_has_a_header_and_a_row_per_photo(photo_folder, capsys):
    assert main(["predict", "--csv", str(photo_folder / "nested")]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert sorted(row["path"].rsplit("/", 1)[1] for row in rows) == ["chihuahua-b.jpg", "muffin-b.jpg"]
    assert all(row["verdict"] in ("chihuahua", "muffin", "neither") and float(row["probability"]) > 0.5 for row in rows)


def test_a_missing_file_is_reported_and_fails(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nowhere.jpg")]) == 1
    assert "nowhere.jpg" in capsys.readouterr().err


def test_info_prints_version_engine_card_and_photo_counts(capsys, engine):
    assert main(["info", "--engine", engine]) == 0
    out = capsys.readouterr().out
    assert __version__ in out and f"engine: {engine}" in out
    assert "65 chihuahua, 55 muffin" in out and '"backbone"' in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and __version__ in capsys.readouterr().out


def test_neither_is_an_answer_not_an_error(tmp_path, capsys):
    from builders.neither import negative_photos

    (tmp_path / "cat.png").write_bytes(negative_photos()["cat"])
    assert main(["predict", "--json", str(tmp_path / "cat.png")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["verdict"] == "neither" and result["reason"].startswith("looks like a")
    assert main(["predict", "--csv", str(tmp_path / "cat.png")]) == 0
    [row] = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert row["verdict"] == "neither" and row["reason"]


def test_every_corpus_case_gets_a_verdict_or_is_reported_and_skipped(tmp_path, capsys):
    paths = []
    for index, case in enumerate(corpus.cases()):
        path = tmp_path / f"{index:02d}-{case.filename}"
        path.write_bytes(case.data)
        paths.append(str(path))
    assert main(["predict", "--json", *paths]) == 1
    out, err = capsys.readouterr()
    answered = [json.loads(line)["path"] for line in out.splitlines()]
    assert answered == [p for p, case in zip(paths, corpus.cases(), strict=True) if case.expected == corpus.VERDICT]
    for path, case in zip(paths, corpus.cases(), strict=True):
        if case.expected != corpus.VERDICT:
            assert f"skipped {path}: the " in err
    assert "Traceback" not in err
