"""The console script `muffin-v-chihuahua`: run-demo, predict, evaluate, batch, info, serve."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeAlias

from muffin_v_chihuahua import __version__, cpus, engines, uploads
from muffin_v_chihuahua.card import ModelFilesError
from muffin_v_chihuahua.environment import (
    ENGINE_VARIABLE,
    INFERENCE_URL_VARIABLE,
    MODEL_DIR_VARIABLE,
    NEITHER_THRESHOLD_VARIABLE,
    PRECISION_VARIABLE,
    SettingError,
    engine_from_environment,
    model_dir_from_environment,
    neither_threshold_from_environment,
    parse_neither_threshold,
    precision_from_environment,
)

if TYPE_CHECKING:
    from PIL import Image

# Only modules that import neither NumPy nor Pillow are imported above: run-demo becomes Streamlit without them
# (its page imports its own), and the commands that run the model import theirs when they run.

PAGE = Path(__file__).with_name("display_predictions_with_an_embedded_model.py")
DEMO_DEFAULTS = {
    "--server.port": "8080",
    "--server.headless": "true",
    "--server.maxUploadSize": str(uploads.MAX_UPLOAD_MB),
    "--browser.gatherUsageStats": "false",
    # An unexpected error shows its type in the page, never a traceback (that goes to the log).
    "--client.showErrorDetails": "type",
    "--client.toolbarMode": "viewer",  # no developer menu (rerun, deploy) for visitors
}
BATCH_FORMATS = ("parquet", "jsonl", "csv")  # batch's output parts: muffin_v_chihuahua.ray_batch writes each
# The statuses a shell reports for a command a signal ended: Ctrl-C (130), and a reader that went away (141:
# SIGPIPE is 13 on every POSIX system; Windows' signal module has no SIGPIPE).
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_BROKEN_PIPE = 128 + 13


def run_demo(
    streamlit_options: list[str],
    engine: str,
    precision: str,
    model_dir: Path | None,
    neither_threshold: float | None = None,
) -> NoReturn:
    """Become the page's server, by Streamlit's supported entry point; our defaults yield to the caller's options.
    The page takes the engine and the model folder from the environment.

    exec, not a child process: signals (a container's SIGTERM, a terminal's Ctrl-C) reach Streamlit itself.
    """
    given = {option.split("=", 1)[0] for option in streamlit_options if option.startswith("--")}
    defaults = [f"{key}={value}" for key, value in DEMO_DEFAULTS.items() if key not in given]
    environment = dict(os.environ)
    if not environment.get(INFERENCE_URL_VARIABLE, "").strip():  # a front end runs no model: needs no engine
        environment[ENGINE_VARIABLE] = engines.resolve(engine)
        environment[PRECISION_VARIABLE] = precision
    if model_dir is not None:
        environment[MODEL_DIR_VARIABLE] = str(model_dir.resolve())
    if neither_threshold is not None:
        environment[NEITHER_THRESHOLD_VARIABLE] = str(neither_threshold)
    command = [sys.executable, "-m", "muffin_v_chihuahua.page_server", "run", str(PAGE), *defaults, *streamlit_options]
    sys.stdout.flush()
    os.execve(sys.executable, command, environment)


def evaluate(
    folders: list[Path],
    as_json: bool,
    report: Path | None,
    verdicts: Path | None,
    engine: str,
    model_dir: Path | None,
    precision: str = "auto",
    neither_threshold: float | None = None,
) -> int:
    """The figures of the photos in the folders' labelled subfolders (evaluation), judged by the model as predict
    judges them, or taken from batch's Parquet parts in `verdicts`; exit status 1 when a file failed."""
    # Here, as NumPy and Pillow with them: run-demo goes without.
    from muffin_v_chihuahua import evaluation, evaluation_report
    from muffin_v_chihuahua.classifier import Classifier, Prediction
    from muffin_v_chihuahua.predict_command import predict_files

    try:
        photos = evaluation.labelled_photos(folders)
        if verdicts is not None:
            outcomes, failures = evaluation.read_verdicts(verdicts, photos)
            for path, error in failures:
                print(f"muffin-v-chihuahua: skipped {path}: {error}", file=sys.stderr)
            failed, judged_by = len(failures), f"batch's verdicts in {verdicts}"
        else:
            classifier = Classifier(engine, model_dir, precision, neither_threshold)
            truths, outcomes = dict(photos), []

            def record(path: Path, _: Image.Image | None, prediction: Prediction) -> None:
                outcomes.append(evaluation.outcome(str(path), truths[path], prediction))

            failed = predict_files([path for path, _ in photos], classifier, record, heatmap=report is not None)
            threshold = classifier.neither_rule.threshold
            judged_by = f"the {classifier.engine} model {classifier.model_version}, neither threshold {threshold:g}"
        figures = evaluation.figures(outcomes, failed, folders, judged_by)
        if report is not None:
            evaluation_report.write(report, figures, [outcome for outcome in outcomes if outcome.wrong])
        print(json.dumps(figures) if as_json else evaluation_report.summary(figures))
        return 1 if failed else 0
    except evaluation.EvaluationError as error:
        return refused(error)


def info(engine: str, model_dir: Path | None, precision: str, neither_threshold: float | None = None) -> int:
    # Here, as NumPy and Pillow with them: run-demo goes without.
    from muffin_v_chihuahua import demo
    from muffin_v_chihuahua.classifier import Classifier

    classifier = Classifier(engine, model_dir, precision, neither_threshold)
    photos = demo.photos()
    counts = {label: sum(photo.label == label for photo in photos) for label in classifier.card.class_names}
    print(f"muffin-v-chihuahua {__version__}")
    print(f"engine: {classifier.engine}")
    print(
        f"neither threshold: {classifier.neither_rule.threshold:g} (the card's: {classifier.card.neither_threshold:g})"
    )
    print(f"model version: {classifier.model_version} (SHA-256 {classifier.model_sha256})")
    threads, reason = cpus.limit()
    print(f"threads: {threads} ({reason})")
    print("demo photos: " + ", ".join(f"{count} {label}" for label, count in counts.items()))
    print("model card:")
    print(json.dumps(classifier.card.to_dict(), indent=2))
    return 0


def batch(args: argparse.Namespace) -> int:
    """`batch` on Ray (muffin_v_chihuahua.ray_batch); needs the [ray] extra."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        print(
            "muffin-v-chihuahua: batch needs the ray extra, which is not installed: pip install 'muffin-v-chihuahua[ray]'",
            file=sys.stderr,
        )
        return 2
    from muffin_v_chihuahua import ray_batch

    try:
        return ray_batch.run(
            args.sources,
            args.output,
            args.format,
            args.ray_address,
            args.heatmap,
            engine=args.engine,
            model_dir=args.model_dir,
            precision=args.precision,
            neither_threshold=args.neither_threshold,
        )
    except ray_batch.OutputExists as error:
        return refused(error)


SERVICE_MODULES = ("fastapi", "uvicorn", "python_multipart")


def serve(
    host: str,
    port: int,
    engine: str,
    model_dir: Path | None = None,
    precision: str = "auto",
    neither_threshold: float | None = None,
) -> int:
    """The model as an HTTP service (muffin_v_chihuahua.service); needs the [service] extra. Exit status 1 when
    the model fails to load (the service stops, so that a supervisor restarts it)."""
    import importlib.util

    missing = [name for name in SERVICE_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"muffin-v-chihuahua: serve needs the service extra, which is not installed (missing: {', '.join(missing)}): "
            "pip install 'muffin-v-chihuahua[service]'",
            file=sys.stderr,
        )
        return 2
    from muffin_v_chihuahua import service

    # A bad setting raises SettingError here, which main() reports.
    settings = service.Settings.from_environment(
        engine=engine, model_dir=model_dir, precision=precision, neither_threshold=neither_threshold
    )
    app = service.create_app(replace(settings, engine=engines.resolve(settings.engine)))
    failure = service.run(app, host, port)
    if failure:
        print(f"muffin-v-chihuahua: the model could not be loaded: {failure}", file=sys.stderr)
        return 1
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="muffin-v-chihuahua", description="Tell a muffin from a chihuahua in a photo.")
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = top.add_subparsers(dest="command", required=True)
    model = model_options()
    commands.add_parser(
        "run-demo", parents=[model], help="start the Streamlit page (port 8080); other options go to Streamlit"
    )
    add_predict(commands, model)
    add_evaluate(commands, model)
    add_batch(commands, model)
    commands.add_parser("info", parents=[model], help="version, model card and demo photo counts")
    add_serve(commands, model)
    return top


# The subcommands' registry, which each add_<command> below adds its parser to.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_predict(commands: Commands, model: argparse.ArgumentParser) -> None:
    classify = commands.add_parser("predict", parents=[model], help="classify photos and folders of photos")
    classify.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    formats = classify.add_mutually_exclusive_group()
    formats.add_argument("--json", dest="output", action="store_const", const="json", help="one JSON object per line")
    formats.add_argument("--csv", dest="output", action="store_const", const="csv", help="CSV with a header")
    classify.set_defaults(output="table")
    classify.add_argument(
        "--heatmap", action="store_true", help="add each photo's heatmap (where the model looked) to --json records"
    )
    classify.add_argument(
        "--heatmap-dir", type=Path, metavar="DIR", help="write each photo with its heatmap overlaid, as DIR/<path>.png"
    )


def add_evaluate(commands: Commands, model: argparse.ArgumentParser) -> None:
    assess = commands.add_parser(
        "evaluate",
        parents=[model],
        help="how good the model is on labelled photos: FOLDER/muffin, FOLDER/chihuahua, other subfolders neither",
    )
    assess.add_argument(
        "folders",
        nargs="+",
        type=Path,
        metavar="FOLDER",
        help="a folder of labelled subfolders: muffin/, chihuahua/, and any other name for photos that are neither",
    )
    assess.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    assess.add_argument(
        "--report", type=Path, metavar="DIR", help="write DIR/index.html (self-contained, offline) and DIR/report.json"
    )
    assess.add_argument(
        "--verdicts",
        type=Path,
        metavar="PARTS",
        help="take the verdicts from batch's Parquet parts in this folder instead of running the model (needs pyarrow)",
    )


def add_batch(commands: Commands, model: argparse.ArgumentParser) -> None:
    bulk = commands.add_parser(
        "batch",
        parents=[model],
        help="classify folders or buckets of photos on a Ray cluster into Parquet, JSONL or CSV parts (the [ray] extra)",
    )
    bulk.add_argument("sources", nargs="+", metavar="SOURCE", help="files, folders, or URIs pyarrow reads (s3://...)")
    bulk.add_argument("--output", required=True, metavar="OUT", help="a new folder (or URI) for the output's parts")
    bulk.add_argument("--format", choices=BATCH_FORMATS, default="parquet", help="default: parquet")
    bulk.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="join this cluster (auto, or ray://host:10001); default: start one of this machine's usable CPUs",
    )
    bulk.add_argument("--heatmap", action="store_true", help="add each photo's heatmap to its row (not in CSV)")


def add_serve(commands: Commands, model: argparse.ArgumentParser) -> None:
    http = commands.add_parser(
        "serve", parents=[model], help="serve the model over HTTP (GET / health, POST /predict); the [service] extra"
    )
    http.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    http.add_argument("--port", type=int, default=8000, help="the port to listen on (default 8000)")


def neither_threshold_argument(text: str) -> float:
    """parse_neither_threshold, its message shown by argparse as it is."""
    try:
        return parse_neither_threshold(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def model_options() -> argparse.ArgumentParser:
    """The options every command shares: which model files, run how, judged at which "neither" threshold."""
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument(
        "--engine",
        choices=engines.ENGINES,
        default=engine_from_environment(),
        help=f"which engine runs the model (default: ${ENGINE_VARIABLE}, else auto: the best one installed)",
    )
    model.add_argument(
        "--precision",
        choices=engines.PRECISIONS,
        default=precision_from_environment(),
        help=f"the model file's precision (default: ${PRECISION_VARIABLE}, else auto: int8 when the model has "
        "it and the engine runs it, else float32)",
    )
    model.add_argument(
        "--model-dir",
        type=Path,
        metavar="FOLDER",
        default=model_dir_from_environment(),
        help=f"the model folder: card.json and the files it names (default: ${MODEL_DIR_VARIABLE}, else the model in "
        "this package)",
    )
    model.add_argument(
        "--neither-threshold",
        type=neither_threshold_argument,
        metavar="EVIDENCE",
        default=neither_threshold_from_environment(),
        help="the least evidence (0 to 1: the verdict's probability against its strongest ImageNet rival) a verdict "
        f"needs, else it is neither; lower flags fewer photos and catches fewer near misses (default: "
        f"${NEITHER_THRESHOLD_VARIABLE}, else the model card's)",
    )
    return model


def run_command(argv: list[str] | None) -> int:
    args, extra = parser().parse_known_args(argv)
    if extra and args.command != "run-demo":
        parser().error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "run-demo":
        return run_demo(extra, args.engine, args.precision, args.model_dir, args.neither_threshold)
    if args.command == "predict":
        if args.heatmap and args.output != "json":
            parser().error("--heatmap adds the heatmap to --json records: add --json (or draw it with --heatmap-dir)")
        # Here, as NumPy and Pillow with it: run-demo goes without.
        from muffin_v_chihuahua.predict_command import predict

        return predict(
            args.paths,
            args.output,
            args.engine,
            args.model_dir,
            args.precision,
            args.heatmap,
            args.heatmap_dir,
            args.neither_threshold,
        )
    if args.command == "evaluate":
        return evaluate(
            args.folders,
            args.json,
            args.report,
            args.verdicts,
            args.engine,
            args.model_dir,
            args.precision,
            args.neither_threshold,
        )
    if args.command == "batch":
        if args.heatmap and args.format == "csv":
            parser().error("--heatmap adds the heatmap to Parquet or JSONL rows: CSV has no room for a grid")
        return batch(args)
    if args.command == "serve":
        return serve(args.host, args.port, args.engine, args.model_dir, args.precision, args.neither_threshold)
    return info(args.engine, args.model_dir, args.precision, args.neither_threshold)


def refused(error: Exception) -> int:
    """A problem the user can put right (an option, a setting, a folder): one line on stderr, exit status 2."""
    print(f"muffin-v-chihuahua: {error}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """The console script: a problem it expects (a bad engine or model, a closed pipe, Ctrl-C) is one line on
    stderr and an exit status, not a traceback."""
    try:
        status = run_command(argv)
        sys.stdout.flush()  # a reader that went away shows here, inside the try, not at interpreter exit
        return status
    except (engines.EngineUnavailable, SettingError) as error:
        return refused(error)
    except ModelFilesError as error:
        print(f"muffin-v-chihuahua: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # As Python's signal docs advise (note on SIGPIPE): stdout to devnull, so the flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("muffin-v-chihuahua: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
