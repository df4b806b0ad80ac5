"""Where `make bench` finds the app's model and photo, and keeps what it builds between runs."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_MODEL = ROOT / "muffin_v_chihuahua" / "model"
PHOTO = ROOT / "muffin_v_chihuahua" / "data" / "chihuahua" / "1.jpg"
# Kept between runs, outside the work tree (`make package-wheel` empties build/).
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "muffin-v-chihuahua-bench"
LOGS = CACHE / "logs"


def shown(path: Path) -> str:
    """A path as the report shows it: from the work tree or from ~."""
    if path.is_relative_to(ROOT):
        return str(path.relative_to(ROOT))
    return str(path).replace(str(Path.home()), "~", 1)
