"""The console script (muffin_v_chihuahua.__main__): predict, info, --version; run-demo is in test_wheel.
A problem is one line on stderr and an exit status, never a traceback."""

import csv
import io
import json
import os
import re
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from muffin_v_chihuahua import __version__, cpus, images, uploads
from muffin_v_chihuahua.__main__ import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, main
from muffin_v_chihuahua.classifier import Classifier, Prediction
from muffin_v_chihuahua.environment import MODEL_DIR_VARIABLE, NEITHER_THRESHOLD_VARIABLE
from tests import corpus
from tests.conftest import PACKAGE, ROOT, console_script, expected_prediction, skipped_line
from tests.servers import default_sigint, free_port, running, wait_for


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


def test_predict_prints_a_table_skips_bad_files_and_exits_1(photo_folder, capsys, classifier, engine):
    assert main(["predict", "--engine", engine, str(photo_folder)]) == 1
    out, err = capsys.readouterr()
    rows = out.strip().splitlines()
    assert rows[0].split()[:3] == ["photo", "verdict", "probability"]
    assert len(rows) == 5
    for row in rows[1:]:
        path = row.split()[0]
        [expected] = classifier.predict([images.decode(Path(path).read_bytes(), classifier.input_size)])
        assert row.split()[1:4] == [expected.verdict, f"{expected.probability:.1%}", f"{expected.evidence:.1%}"]
    assert "notes.jpg" in err and "not an image" in err and "readme.txt" not in out + err


def assert_same_prediction(shown: Prediction, expected: Prediction) -> None:
    """Same verdict, reason and labels; the same probabilities, within another session's rounding."""
    assert (shown.verdict, shown.reason) == (expected.verdict, expected.reason)
    assert [label.name for label in shown.imagenet] == [label.name for label in expected.imagenet]
    assert (shown.probability is None) == (expected.probability is None)
    probabilities = [expected.probability or 0, expected.evidence, *(label.probability for label in expected.imagenet)]
    shown_probabilities = [shown.probability or 0, shown.evidence, *(label.probability for label in shown.imagenet)]
    assert shown_probabilities == pytest.approx(probabilities)


def test_predict_json_gives_one_object_per_line(photo_folder, capsys, classifier, engine):
    photo = photo_folder / "muffin-a.jpg"
    assert main(["predict", "--json", "--engine", engine, str(photo)]) == 0
    [line] = capsys.readouterr().out.strip().splitlines()
    result = json.loads(line)
    assert result["path"] == str(photo)
    assert_same_prediction(Prediction.from_dict(result), expected_prediction(classifier, photo))


def test_predict_json_has_no_heatmap_unless_asked_and_with_heatmap_a_list_of_rows(
    photo_folder, capsys, classifier, engine
):
    photo = photo_folder / "chihuahua-a.jpg"
    assert main(["predict", "--json", "--engine", engine, str(photo)]) == 0
    assert "heatmap" not in json.loads(capsys.readouterr().out)
    assert main(["predict", "--json", "--heatmap", "--engine", engine, str(photo)]) == 0
    record = json.loads(capsys.readouterr().out)
    [expected] = classifier.predict([images.decode(photo.read_bytes(), classifier.input_size)], heatmap=True)
    assert record["heatmap_class"] == expected.heatmap_class == "chihuahua"
    assert isinstance(record["heatmap"], list) and all(isinstance(row, list) for row in record["heatmap"])
    np.testing.assert_allclose(record["heatmap"], expected.heatmap, atol=1e-4, strict=False)


def test_heatmap_without_json_is_a_usage_error(photo_folder, capsys):
    with pytest.raises(SystemExit) as raised:
        main(["predict", "--heatmap", str(photo_folder / "muffin-a.jpg")])
    assert raised.value.code == 2 and "--heatmap adds the heatmap to --json records" in capsys.readouterr().err


def test_heatmap_dir_writes_each_photo_with_its_heatmap_overlaid(photo_folder, tmp_path, capsys, classifier, engine):
    drawn = tmp_path / "heatmaps"
    assert main(["predict", "--heatmap-dir", str(drawn), "--engine", engine, str(photo_folder)]) == 1
    assert "heatmap" not in capsys.readouterr().out  # the table is as it was
    written = sorted(path.relative_to(drawn) for path in drawn.rglob("*.png"))
    inside = photo_folder.relative_to(photo_folder.anchor)
    assert written == sorted(
        inside / name
        for name in ("chihuahua-a.jpg.png", "muffin-a.jpg.png", "nested/chihuahua-b.jpg.png", "nested/muffin-b.jpg.png")
    )  # the bad file has none
    for path in written:
        photo = photo_folder / str(path.relative_to(inside)).removesuffix(".png")
        with Image.open(drawn / path) as overlay, Image.open(photo) as original:
            assert overlay.format == "PNG" and overlay.size == original.size
            assert np.abs(np.asarray(overlay, float) - np.asarray(original.convert("RGB"), float)).mean() > 5


def test_predict_csv_has_a_header_and_a_row_per_photo(photo_folder, capsys, classifier, engine):
    assert main(["predict", "--csv", "--engine", engine, str(photo_folder / "nested")]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [Path(row["path"]).name for row in rows] == ["chihuahua-b.jpg", "muffin-b.jpg"]
    for row in rows:
        expected = expected_prediction(classifier, Path(row["path"]))
        first, second, third = expected.imagenet
        assert row["verdict"] == expected.verdict and row["reason"] == (expected.reason or "")
        assert float(row["probability"]) == pytest.approx(expected.probability, abs=2e-6)
        assert float(row["evidence"]) == pytest.approx(expected.evidence, abs=2e-6)
        assert [row["top1"], row["top2"], row["top3"]] == [first.name, second.name, third.name]
        assert float(row["top1_probability"]) == pytest.approx(first.probability, abs=2e-6)


def test_a_missing_file_is_reported_and_fails(tmp_path, capsys):
    path = tmp_path / "nowhere.jpg"
    assert main(["predict", str(path)]) == 1
    out, err = capsys.readouterr()
    assert err == f"muffin-v-chihuahua: skipped {path}: No such file or directory\n"
    assert out.split() == ["photo", "verdict", "probability", "evidence", "top", "ImageNet", "label"]  # the header


def test_a_file_over_the_size_limit_is_skipped(tmp_path, capsys):
    path = tmp_path / "huge.jpg"
    with path.open("wb") as sparse:  # 11 MB that take no space on disk
        sparse.truncate((uploads.MAX_UPLOAD_MB + 1) * 1024 * 1024)
    assert main(["predict", "--json", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"muffin-v-chihuahua: skipped {path}: the file is larger than {uploads.MAX_UPLOAD_MB} MB\n"


def test_info_prints_version_engine_card_and_photo_counts(capsys, classifier, engine):
    assert main(["info", "--engine", engine]) == 0
    out = capsys.readouterr().out
    head, card = out.split("model card:\n")
    assert head.splitlines() == [
        f"muffin-v-chihuahua {__version__}",
        f"engine: {classifier.engine}",
        f"neither threshold: {classifier.neither_rule.threshold:g} (the card's: {classifier.neither_rule.threshold:g})",
        f"model version: {classifier.model_version} (SHA-256 {classifier.model_sha256})",
        "threads: {} ({})".format(*cpus.limit()),
        "demo photos: 65 chihuahua, 55 muffin",
    ]
    assert json.loads(card) == classifier.card.to_dict()


def test_version(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and __version__ in capsys.readouterr().out


def test_neither_is_an_answer_not_an_error_with_no_probability_but_its_evidence(tmp_path, capsys, classifier, engine):
    from builders.neither import negative_photos

    cat = tmp_path / "cat.png"
    cat.write_bytes(negative_photos()["cat"])
    expected = expected_prediction(classifier, cat)
    assert expected.verdict == "neither"
    assert main(["predict", "--json", "--engine", engine, str(cat)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["probability"] is None
    assert_same_prediction(Prediction.from_dict(result), expected)
    assert main(["predict", "--csv", "--engine", engine, str(cat)]) == 0
    [row] = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert (row["verdict"], row["probability"], row["reason"]) == ("neither", "", expected.reason)
    assert float(row["evidence"]) == pytest.approx(expected.evidence, abs=2e-6)
    assert main(["predict", "--engine", engine, str(cat)]) == 0
    [_, line] = capsys.readouterr().out.splitlines()
    assert line.split()[1:4] == ["neither", "–", f"{expected.evidence:.1%}"]


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


# ----- problems: one line and an exit status ------------------------------------------------------


def test_a_missing_argument_is_named_with_status_2(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["predict", "--json"])
    err = capsys.readouterr().err
    assert exit.value.code == 2
    assert err.splitlines()[-1] == "muffin-v-chihuahua predict: error: the following arguments are required: PATH"


def test_neither_threshold_moves_predicts_verdicts_and_info_shows_it(capsys):
    photo = str(corpus.DATASET_PHOTO)
    assert main(["predict", "--json", "--engine", "onnx", photo]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] != "neither"
    assert main(["predict", "--json", "--engine", "onnx", "--neither-threshold", "0.9999", photo]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "neither"
    assert main(["info", "--engine", "onnx", "--neither-threshold", "0.3"]) == 0
    assert "neither threshold: 0.3 (the card's: " in capsys.readouterr().out


def test_the_neither_threshold_comes_from_the_environment_and_a_bad_one_is_one_line_with_status_2(monkeypatch, capsys):
    monkeypatch.setenv(NEITHER_THRESHOLD_VARIABLE, "0.9999")
    assert main(["predict", "--json", "--engine", "onnx", str(corpus.DATASET_PHOTO)]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "neither"
    monkeypatch.setenv(NEITHER_THRESHOLD_VARIABLE, "2")
    assert main(["info"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"muffin-v-chihuahua: {NEITHER_THRESHOLD_VARIABLE}='2': the neither threshold is an evidence from 0 to 1, not 2"
    )


def test_a_neither_threshold_option_outside_0_to_1_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["predict", "--neither-threshold", "1.5", str(corpus.DATASET_PHOTO)])
    assert exit.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "muffin-v-chihuahua predict: error: argument --neither-threshold: the neither threshold is an evidence from 0 "
        "to 1, not 1.5"
    )


@pytest.mark.parametrize("command", ["info", "predict"])
def test_a_cpu_count_that_is_not_one_is_one_line_with_status_2(command, monkeypatch, capsys):
    monkeypatch.setenv(cpus.OVERRIDE_VARIABLE, "two")
    assert main([command, str(corpus.DATASET_PHOTO)] if command == "predict" else [command]) == 2
    assert capsys.readouterr().err.strip() == (
        f"muffin-v-chihuahua: {cpus.OVERRIDE_VARIABLE} must be a whole number of CPUs, at least 1, not 'two'"
    )


@pytest.fixture
def model_copy(tmp_path) -> Path:
    """A copy of the bundled model folder (without the .h5: these tests run the onnx engine), to damage."""
    return Path(shutil.copytree(PACKAGE / "model", tmp_path / "model", ignore=shutil.ignore_patterns("*.h5")))


def test_model_dir_chooses_the_model_folder(model_copy, photo_folder, capsys):
    card = json.loads((model_copy / "card.json").read_text())
    (model_copy / "card.json").write_text(json.dumps({**card, "version": "9.9.9-copy"}))
    assert main(["info", "--engine", "onnx", "--model-dir", str(model_copy)]) == 0
    assert json.loads(capsys.readouterr().out.split("model card:\n")[1])["version"] == "9.9.9-copy"
    assert main(["predict", "--json", "--engine", "onnx", "--model-dir", str(model_copy), str(photo_folder)]) == 1
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_the_model_dir_variable_chooses_the_model_folder_too(model_copy, monkeypatch, capsys):
    card = json.loads((model_copy / "card.json").read_text())
    (model_copy / "card.json").write_text(json.dumps({**card, "model_version": "2099.01.01+copy"}))
    monkeypatch.setenv(MODEL_DIR_VARIABLE, str(model_copy))
    assert main(["info", "--engine", "onnx"]) == 0
    assert "model version: 2099.01.01+copy (SHA-256 " in capsys.readouterr().out


def test_run_demo_hands_its_model_folder_to_the_page_server(model_copy, tmp_path):
    """The page reads MUFFIN_V_CHIHUAHUA_MODEL_DIR (test_display_predictions_with_an_embedded_model): run-demo sets
    it, absolute, in the environment of the Streamlit server it becomes (exec: the same process)."""
    port, this_tree = free_port(), {**os.environ, "PYTHONPATH": str(ROOT)}  # run from tmp_path: a relative folder
    command = [sys.executable, "-m", "muffin_v_chihuahua", "run-demo", "--model-dir", "model"]
    options = ["--server.port", port, "--server.address", "127.0.0.1"]
    with running([*command, *options], tmp_path / "log", cwd=tmp_path, env=this_tree) as server:
        wait_for(f"http://127.0.0.1:{port}/_stcore/health", process=server)
        environment = Path(f"/proc/{server.pid}/environ").read_bytes().split(b"\0")
    assert f"{MODEL_DIR_VARIABLE}={model_copy.resolve()}".encode() in environment


def test_run_demo_becomes_streamlit_without_importing_numpy_or_pillow(tmp_path):
    """What run-demo imports before it execs Streamlit adds to the page's cold start, and the page imports NumPy and
    Pillow itself anyway. `-X importtime` reports each import of run-demo's own process, up to the exec: the
    Streamlit it becomes runs without the option, and answering its health check shows the exec happened."""
    port, log = free_port(), tmp_path / "log"
    command = [sys.executable, "-X", "importtime", "-m", "muffin_v_chihuahua", "run-demo", "--server.port", port]
    with running([*command, "--server.address", "127.0.0.1"], log, cwd=ROOT) as server:
        wait_for(f"http://127.0.0.1:{port}/_stcore/health", process=server)
    imported = {name.split(".")[0] for name in re.findall(r"^import time: .*\| +(\S+)$", log.read_text(), re.M)}
    assert {"argparse", "muffin_v_chihuahua"} <= imported  # the report is there
    assert not {"numpy", "PIL"} & imported


def test_a_truncated_model_card_is_one_line_naming_it(model_copy, photo_folder, capsys):
    card = model_copy / "card.json"
    card.write_bytes(card.read_bytes()[:100])
    for command in ("predict", "info"):
        paths = [str(photo_folder)] if command == "predict" else []
        assert main([command, "--engine", "onnx", "--model-dir", str(model_copy), *paths]) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.startswith(f"muffin-v-chihuahua: {card} is damaged: it is not valid JSON (")
        assert err.endswith("reinstall muffin-v-chihuahua, or rebuild the model with `make model`\n")
        assert err.count("\n") == 1


def test_a_missing_or_altered_model_file_is_one_line_naming_it(model_copy, photo_folder, capsys):
    card = json.loads((model_copy / "card.json").read_text())
    model_file = model_copy / card["files"]["onnx-int8"]["file"]  # the one the onnx engine runs by default
    model_file.write_bytes(b"\0" + model_file.read_bytes()[1:])
    assert main(["predict", "--engine", "onnx", "--model-dir", str(model_copy), str(photo_folder)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"muffin-v-chihuahua: {model_file} is damaged or not the file its card.json describes")
    model_file.unlink()
    assert main(["info", "--engine", "onnx", "--model-dir", str(model_copy)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"muffin-v-chihuahua: {model_file} is missing: ")


def test_float32_is_chosen_by_flag_or_environment_and_an_unknown_precision_is_one_line(capsys, monkeypatch):
    assert main(["info"]) == 0
    assert "engine: onnx-int8\n" in capsys.readouterr().out  # the default: the gated int8 model
    assert main(["info", "--precision", "float32"]) == 0
    assert "engine: onnx\n" in capsys.readouterr().out
    monkeypatch.setenv("MUFFIN_V_CHIHUAHUA_PRECISION", "float32")
    assert main(["info"]) == 0
    assert "engine: onnx\n" in capsys.readouterr().out
    assert main(["info", "--precision", "int8"]) == 0  # the flag wins over the environment
    assert "engine: onnx-int8\n" in capsys.readouterr().out
    monkeypatch.setenv("MUFFIN_V_CHIHUAHUA_PRECISION", "float16")
    assert main(["info"]) == 2
    assert capsys.readouterr().err == (
        "muffin-v-chihuahua: unknown precision 'float16': choose one of auto, int8, float32\n"
    )


def test_both_precisions_give_the_dataset_verdicts_from_the_command_line(photo_folder, capsys):
    verdicts = {}
    for precision in ("int8", "float32"):
        assert main(["predict", "--json", "--precision", precision, str(photo_folder)]) == 1  # notes.jpg
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        verdicts[precision] = {Path(row["path"]).name: row["verdict"] for row in rows}
    assert verdicts["int8"] == verdicts["float32"]
    assert verdicts["int8"] == {name: name.split("-")[0] for name in verdicts["int8"]}  # muffin-a.jpg: muffin


def test_a_reader_that_closes_the_pipe_early_ends_it_quietly(dataset_dir):
    """`muffin-v-chihuahua predict --json DIR | head -1`"""
    process = console_script("predict", "--json", dataset_dir, dataset_dir)
    assert json.loads(process.stdout.readline())["verdict"]
    process.stdout.close()
    _, err = process.communicate(timeout=300)
    assert "Traceback" not in err and err == ""
    assert process.returncode == EXIT_BROKEN_PIPE == 141


def test_ctrl_c_ends_with_status_130_and_one_line(dataset_dir):
    process = console_script("predict", "--json", *[dataset_dir] * 4, preexec_fn=default_sigint)
    assert json.loads(process.stdout.readline())["verdict"]
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)
    assert err.splitlines() == ["muffin-v-chihuahua: interrupted"]
    assert process.returncode == EXIT_INTERRUPTED == 130


# ----- evaluate: the figures of labelled folders ---------------------------------------------------------


@pytest.fixture(scope="module")
def labelled_extra(tmp_path_factory) -> Path:
    """Beside the dataset: other/, the sample pictures that should be neither, and a truncated photo in muffin/."""
    from builders.neither import negative_photos

    root = tmp_path_factory.mktemp("labelled")
    (root / "other").mkdir()
    for name, data in negative_photos().items():
        (root / "other" / f"{name}.png").write_bytes(data)
    (root / "muffin").mkdir()
    (root / "muffin" / "cut.jpg").write_bytes(corpus.DATASET_PHOTO.read_bytes()[:3000])
    return root


def test_evaluate_json_on_the_dataset_and_sample_pictures_names_the_bad_file_and_exits_1(
    dataset_dir, labelled_extra, tmp_path, capsys
):
    report = tmp_path / "report"
    status = main(["evaluate", "--json", "--report", str(report), str(dataset_dir), str(labelled_extra)])
    out, err = capsys.readouterr()
    assert status == 1
    assert err.splitlines() == [skipped_line(labelled_extra / "muffin" / "cut.jpg")]
    figures = json.loads(out)
    others = sorted((labelled_extra / "other").iterdir())
    assert (figures["n"], figures["failed"]) == (120 + len(others), 1)
    assert figures["accuracy"] >= 0.95 and figures["flagged"] <= 0.05
    supports = {label: entry["support"] for label, entry in figures["classes"].items()}
    assert supports == {"muffin": 55, "chihuahua": 65, "neither": len(others)}
    classifier = Classifier()  # as evaluate's defaults: onnx, int8, the card's threshold
    caught = [expected_prediction(classifier, path).verdict == "neither" for path in others]
    assert figures["neither_caught"] == pytest.approx(np.mean(caught)) and np.mean(caught) >= 0.6
    assert figures["confusion_matrix"]["neither"]["neither"] == sum(caught)
    assert {Path(wrong["path"]) for wrong in figures["wrong"]} >= {
        path for path, was_caught in zip(others, caught, strict=True) if not was_caught
    }
    assert f"{classifier.engine} model {classifier.model_version}, neither threshold" in figures["judged_by"]
    assert json.loads((report / "report.json").read_text()) == figures
    assert (report / "index.html").read_text().count("<figure>") == len(figures["wrong"])


@pytest.fixture(scope="module")
def small_set(tmp_path_factory, dataset_dir, labelled_extra) -> Path:
    """2 muffins (and the truncated photo), 2 chihuahuas, a muffin filed as a chihuahua, 3 sample pictures."""
    root = tmp_path_factory.mktemp("small-set")
    for label in ("muffin", "chihuahua"):
        (root / label).mkdir()
        for photo in sorted((dataset_dir / label).iterdir())[:2]:
            shutil.copy(photo, root / label / photo.name)
    shutil.copy(sorted((dataset_dir / "muffin").iterdir())[-1], root / "chihuahua" / "filed-wrong.jpg")
    shutil.copy(labelled_extra / "muffin" / "cut.jpg", root / "muffin")
    (root / "samples").mkdir()
    for name in ("cat.png", "grass.png", "coffee.png"):
        shutil.copy(labelled_extra / "other" / name, root / "samples" / name)
    return root


def test_evaluate_prints_a_summary_without_json(small_set, capsys):
    assert main(["evaluate", str(small_set)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("8 photos judged (5 muffin or chihuahua, 3 other), 1 failed; by the onnx-int8 model")
    assert lines[2].split()[:2] == ["accuracy", "80.0%"]  # the muffin filed as a chihuahua is "wrong"
    assert [line.split()[0] for line in lines[7:11]] == ["class", "muffin", "chihuahua", "neither"]
    assert any(line.startswith(f"{small_set / 'chihuahua' / 'filed-wrong.jpg'}  chihuahua  muffin") for line in lines)


def test_evaluate_takes_batchs_parquet_verdicts_as_it_would_the_models(small_set, tmp_path, capsys, monkeypatch):
    import pyarrow.parquet

    from muffin_v_chihuahua.ray_batch import table

    assert main(["evaluate", "--json", str(small_set)]) == 1
    judged = json.loads(capsys.readouterr().out)
    assert main(["predict", "--json", str(small_set)]) == 1  # the rows batch would write: predict --json's fields
    out, err = capsys.readouterr()
    rows = [(record.pop("path"), Prediction.from_dict(record)) for record in map(json.loads, out.splitlines())]
    [(failed, error)] = [line.removeprefix("muffin-v-chihuahua: skipped ").split(": ", 1) for line in err.splitlines()]
    (tmp_path / "parts").mkdir()
    monkeypatch.chdir(small_set.parent)  # batch ran here, on a relative path
    paths = [os.path.relpath(path) for path, _ in rows]
    pyarrow.parquet.write_table(table(paths, [p for _, p in rows], False, False), tmp_path / "parts" / "0.parquet")
    pyarrow.parquet.write_table(
        table([os.path.relpath(failed)], [error], False, False), tmp_path / "parts" / "1.parquet"
    )
    assert main(["evaluate", "--json", "--verdicts", str(tmp_path / "parts"), str(small_set)]) == 1
    out, err_read = capsys.readouterr()
    read = json.loads(out)
    assert read["judged_by"] == f"batch's verdicts in {tmp_path / 'parts'}"
    assert {**read, "judged_by": None} == {**judged, "judged_by": None}  # the same rows: the same figures
    assert err_read == err  # the same file skipped, for the same reason


def test_evaluate_verdicts_without_pyarrow_is_one_line_saying_how_to_install_it(
    small_set, tmp_path, capsys, monkeypatch
):
    for name in [name for name in sys.modules if name == "pyarrow" or name.startswith("pyarrow.")]:
        monkeypatch.setitem(sys.modules, name, None)  # an import of it raises ImportError, as where it is missing
    assert main(["evaluate", "--verdicts", str(tmp_path), str(small_set)]) == 2
    assert capsys.readouterr().err.startswith(
        "muffin-v-chihuahua: --verdicts reads batch's Parquet parts with pyarrow, "
    )


def test_evaluate_on_a_folder_without_labelled_subfolders_is_one_line_with_status_2(tmp_path, capsys):
    shutil.copy(corpus.DATASET_PHOTO, tmp_path / "loose.jpg")
    assert main(["evaluate", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"muffin-v-chihuahua: no photos in subfolders of {tmp_path}: put them in ")
    assert err.count("\n") == 1
