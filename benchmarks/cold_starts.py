"""Cold starts: fresh processes of the installed app, timed to their first answer, with their peak memory.

`run-demo` is timed against the least Streamlit page (benchmarks/bare_page.py): both started the same way (Streamlit
from the same venv, with run-demo's own options), waited for the same way (three verdict marks shown in the same
headless Chromium), in turns, so that the ratio holds on a busy machine when the seconds do not. Twice: Chromium
sharing the servers' cores, and on a core of its own, as a visitor's browser runs on another machine than the server
(which loads the page's model while the browser loads Streamlit's frontend: page_server.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np

from benchmarks.contenders import ENGINES
from benchmarks.paths import LOGS, PHOTO, ROOT
from benchmarks.processes import BenchError, free_port, reap, start, stop, wait_until_ok

BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VERDICTS_SHOWN = "(document.body.innerText.match(/[✅❌]/gu) || []).length >= 3"  # the page's three demo verdicts
BARE_PAGE = ROOT / "benchmarks" / "bare_page.py"
PREDICT, PAGE = "`predict` one photo, to its verdict", "`run-demo`, to the 3 demo verdicts in Chromium"
BARE = "the least Streamlit page (benchmarks/bare_page.py), to its 3 marks in Chromium"
IMPORTS = "`run-demo`'s own imports before it becomes Streamlit (`python -X importtime ... run-demo --help`)"
HEAVY_MODULES = ("numpy", "PIL")  # run-demo hands over to Streamlit without them: the page imports its own
PAGE_RUNS = {"onnx": 5, "keras": 2}
APART = ", Chromium on a core of its own"  # added to PAGE and BARE: the browser pinned apart from the servers


def cold_predict(venv: Path, contender: str) -> dict:
    """`muffin-v-chihuahua predict --json PHOTO` in a fresh process: seconds to its first verdict, peak RSS."""
    engine, precision = ENGINES[contender]
    started = time.perf_counter()
    process = start(
        [venv / "bin" / "muffin-v-chihuahua", "predict", "--json", "--engine", engine, "--precision", precision, PHOTO],
        f"predict-{contender}",
        stdout=subprocess.PIPE,
    )
    line = process.stdout.readline()
    seconds = time.perf_counter() - started
    process.stdout.read()
    peak = reap(process)
    if process.returncode != 0 or b"verdict" not in line:
        raise BenchError(f"predict with {contender} failed: see {LOGS}/predict-{contender}.log")
    return {"seconds": seconds, "peak_mb": peak}


def streamlit_options(port: int) -> list:
    from muffin_v_chihuahua.__main__ import DEMO_DEFAULTS

    return [
        *(f"{key}={value}" for key, value in DEMO_DEFAULTS.items()),
        "--server.port",
        port,
        "--server.address",
        "127.0.0.1",
    ]


def cold_page(command: list, log_name: str, port: int, browser, server_cpus: list[int] | None) -> dict:
    """A page's server from a fresh process (on server_cpus, if given): seconds to a healthy server, to Streamlit's
    frontend loaded in Chromium (its load event) and to three verdict marks shown; the peak RSS of its process group."""
    if server_cpus:
        command = ["taskset", "--cpu-list", ",".join(map(str, server_cpus)), *command]
    started = time.perf_counter()
    process = start(command, log_name, stdout=subprocess.DEVNULL)
    try:
        healthy = wait_until_ok(f"http://127.0.0.1:{port}/_stcore/health", process, started)
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        loaded = time.perf_counter() - started
        page.wait_for_function(VERDICTS_SHOWN, timeout=120_000)
        shown = time.perf_counter() - started
        page.close()
    finally:
        peak = stop(process)
    return {"health_seconds": healthy, "loaded_seconds": loaded, "seconds": shown, "peak_mb": peak}


def run_demo(venv: Path, engine: str, browser, server_cpus: list[int] | None = None) -> dict:
    port = free_port()
    command = [venv / "bin" / "muffin-v-chihuahua", "run-demo", "--engine", engine, *streamlit_options(port)]
    return cold_page(command, f"run-demo-{engine}", port, browser, server_cpus)


def bare_page(venv: Path, browser, server_cpus: list[int] | None = None) -> dict:
    port = free_port()
    command = [venv / "bin" / "python", "-m", "streamlit", "run", BARE_PAGE, *streamlit_options(port)]
    return cold_page(command, "bare-page", port, browser, server_cpus)


def pre_exec_imports(venv: Path, runs: int = 5) -> dict:
    """run-demo's imports (its module and its options' parser) as `python -X importtime` reports them: the median
    milliseconds over runs, and which of HEAVY_MODULES it imported."""
    totals, heavy = [], set()
    for _ in range(runs):
        report = subprocess.run(
            [venv / "bin" / "python", "-X", "importtime", "-m", "muffin_v_chihuahua", "run-demo", "--help"],
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        # "import time: self [us] | cumulative | name", nested imports indented under the one that made them
        rows = re.findall(r"^import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)$", report, re.MULTILINE)
        totals.append(sum(int(cumulative) for cumulative, indent, _ in rows if len(indent) == 1) / 1000)
        heavy |= {name.split(".")[0] for _, _, name in rows if name.split(".")[0] in HEAVY_MODULES}
    return {"ms": float(np.median(totals)), "heavy": sorted(heavy), "runs": runs}


def median_of(measure, runs: int, *arguments) -> dict:
    """Each field's median over `runs` fresh processes, each `measure(*arguments)`."""
    results = [measure(*arguments) for _ in range(runs)]
    return {key: float(np.median([r[key] for r in results])) for key in results[0]} | {"runs": runs}


def cold_service(venv: Path, engine: str) -> dict:
    """`muffin-v-chihuahua serve`: seconds until GET / answers 200 (the model is loaded)."""
    port = free_port()
    started = time.perf_counter()
    process = start(
        [venv / "bin" / "muffin-v-chihuahua", "serve", "--port", port, "--engine", engine],
        f"serve-{engine}",
        stdout=subprocess.DEVNULL,
    )
    try:
        seconds = wait_until_ok(f"http://127.0.0.1:{port}/", process, started)
    finally:
        peak = stop(process)
    return {"seconds": seconds, "peak_mb": peak}


def page_rows(
    engine: str, venv: Path, app_venv: Path, browser, runs: int, server_cpus: list[int] | None = None
) -> list[dict]:
    """run-demo and the least page, in turns: their phases' medians, as rows (`what` marked APART with server_cpus)."""
    pages, bares = [], []
    for _ in range(runs):  # in turns: both see the same load
        pages.append(run_demo(venv, engine, browser, server_cpus))
        bares.append(bare_page(app_venv, browser, server_cpus))
    page, bare = (
        {key: float(np.median([r[key] for r in results])) for key in results[0]} for results in (pages, bares)
    )
    apart = APART if server_cpus else ""
    return [
        *(
            {"what": what + apart, "engine": engine, "venv": venv, "seconds": page[key], "runs": runs}
            for what, key in (
                ("`run-demo`, to /_stcore/health 200", "health_seconds"),
                ("`run-demo`, to Streamlit's frontend loaded in Chromium", "loaded_seconds"),
            )
        ),
        {"what": PAGE + apart, "engine": engine, "venv": venv, **page, "runs": runs},
        {"what": BARE + apart, "engine": engine, "venv": app_venv, **bare, "runs": runs, "page": page["seconds"]},
    ]


def launched(playwright):
    return playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=BROWSER_ARGS)


def cold_starts(app_venv: Path, keras_venv: Path, dev_venv: Path) -> list[dict]:
    from playwright.sync_api import sync_playwright

    venvs = {"onnx": app_venv, "onnx-float32": app_venv, "keras": keras_venv}
    rows = [
        {
            "what": PREDICT,
            "engine": engine,
            "venv": venvs[engine],
            **median_of(cold_predict, runs, venvs[engine], engine),
        }
        for engine, runs in (("onnx", 5), ("onnx-float32", 5), ("keras", 3))
    ]
    rows.append({"what": IMPORTS, "engine": "–", "venv": app_venv, **pre_exec_imports(app_venv)})
    with sync_playwright() as playwright:  # the browser is up before the clock starts, as a visitor's is
        browser = launched(playwright)
        for engine, runs in PAGE_RUNS.items():
            rows += page_rows(engine, venvs[engine], app_venv, browser, runs)
        browser.close()
    own = os.sched_getaffinity(0)
    cpus = sorted(own)
    if len(cpus) > 1:
        os.sched_setaffinity(0, cpus[-1:])  # Chromium (and Playwright's driver) inherit it; the servers get the rest
        try:
            with sync_playwright() as playwright:
                browser = launched(playwright)
                rows += page_rows("onnx", app_venv, app_venv, browser, PAGE_RUNS["onnx"], cpus[:-1])
                browser.close()
        finally:
            os.sched_setaffinity(0, own)
    rows += [
        {
            "what": "`serve`, to GET / 200",
            "engine": engine,
            "venv": dev_venv,
            **median_of(cold_service, runs, dev_venv, engine),
        }
        for engine, runs in (("onnx", 3), ("keras", 2))
    ]
    return rows
