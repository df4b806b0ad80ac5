"""page_server: run-demo's Streamlit server loads the page's model as soon as it listens, before any browser asks
(test_browser: the page then finds it, one load per process); a model it cannot load is one line in its log, and the
server keeps serving (the page says why: test_display_predictions_with_an_embedded_model)."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from tests.conftest import PACKAGE, ROOT
from tests.servers import free_port, running, wait_for

MODEL_LOADED = "muffin-v-chihuahua: model loaded (onnx-int8)"
NOT_LOADED = "muffin-v-chihuahua: the page's model is not loaded: "


def run_demo(folder: Path, *options: str):
    """run-demo from this tree, started in folder (its log: folder/log); (its port, the running() context)."""
    port = free_port()
    command = [sys.executable, "-m", "muffin_v_chihuahua", "run-demo", *options, "--server.port", port]
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    return port, running([*command, "--server.address", "127.0.0.1"], folder / "log", cwd=folder, env=environment)


def log_line(log: Path, start: str, timeout: float = 60) -> str | None:
    """The first line of log that starts with start, waited for up to timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [line for line in log.read_text().splitlines() if line.startswith(start)]
        if found:
            return found[0]
        time.sleep(0.1)
    return None


def test_the_model_is_loaded_once_the_server_listens_before_any_browser_asks(tmp_path):
    port, server = run_demo(tmp_path, "--engine", "onnx")
    with server as process:
        wait_for(f"http://127.0.0.1:{port}/_stcore/health", process=process)  # the only request: no page has run
        assert log_line(tmp_path / "log", MODEL_LOADED), (tmp_path / "log").read_text()
    log = (tmp_path / "log").read_text()
    assert log.count("model loaded") == 1
    assert "ScriptRunContext" not in log  # Streamlit's warning for page elements drawn outside a page's run


def test_a_model_it_cannot_load_is_one_line_and_the_server_keeps_serving(tmp_path):
    folder = Path(shutil.copytree(PACKAGE / "model", tmp_path / "model", ignore=shutil.ignore_patterns("*.h5")))
    int8 = folder / "muffin_v_chihuahua.int8.onnx"
    int8.write_bytes(b"\0" + int8.read_bytes()[1:])
    port, server = run_demo(tmp_path, "--engine", "onnx", "--model-dir", str(folder))
    with server as process:
        health = f"http://127.0.0.1:{port}/_stcore/health"
        wait_for(health, process=process)
        line = log_line(tmp_path / "log", NOT_LOADED)
        assert line and str(int8) in line, (tmp_path / "log").read_text()
        wait_for(health, timeout=5, process=process)
    assert "Traceback" not in (tmp_path / "log").read_text()
