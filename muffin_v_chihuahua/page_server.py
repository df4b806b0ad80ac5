"""run-demo's process: Streamlit's own command line (`streamlit run <page>`), which also loads the page's model as
soon as the server listens.

A first visitor's browser then spends over a second loading Streamlit's frontend before the page first runs; the
model loads in that time, not in the page's first run (measured in docs/benchmarks.md's cold starts). Not earlier:
loading it while Streamlit starts would make the server answer later by as much.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from muffin_v_chihuahua.environment import INFERENCE_URL_VARIABLE

POLL_SECONDS = 0.02


def load_model_once_listening() -> None:
    """Wait for Streamlit's server to listen, then load the page's model into its shared cache. A failure is one
    line in the server's log; the page shows it too: st.cache_resource keeps no exception, so the page's own call
    fails again, on the page."""
    from streamlit import runtime
    from streamlit.runtime import RuntimeState

    while not runtime.exists() or runtime.get_instance().state is RuntimeState.INITIAL:
        time.sleep(POLL_SECONDS)
    from muffin_v_chihuahua import page_model

    try:
        page_model.classifier_from_environment()
    except page_model.CANNOT_LOAD as error:
        print(f"muffin-v-chihuahua: the page's model is not loaded: {error}", file=sys.stderr, flush=True)


def main() -> None:
    if not os.environ.get(INFERENCE_URL_VARIABLE, "").strip():  # a front end's page runs no model
        threading.Thread(target=load_model_once_listening, name="load-model", daemon=True).start()
    from streamlit.web.cli import main as streamlit

    streamlit(prog_name="streamlit")  # as `python -m streamlit`: the same command line, options and exit


if __name__ == "__main__":
    main()
