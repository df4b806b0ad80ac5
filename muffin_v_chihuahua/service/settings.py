"""The service's settings: every environment variable it reads, read once (Settings.from_environment) and checked
whenever a Settings is made (dataclasses.replace too), a bad value named with its variable (SettingError) before
the app is made."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from muffin_v_chihuahua import engines, uploads
from muffin_v_chihuahua.environment import (
    ENGINE_VARIABLE,
    NEITHER_THRESHOLD_VARIABLE,
    PRECISION_VARIABLE,
    SettingError,
    engine_from_environment,
    model_dir_from_environment,
    neither_threshold_from_environment,
    precision_from_environment,
    setting,
)
from muffin_v_chihuahua.service.bodies import MULTIPART_OVERHEAD

# Per-image size limit in MB (default: the page's upload limit). It can only lower uploads.MAX_UPLOAD_MB,
# above which the decoder itself refuses a file.
MAX_UPLOAD_MB_VARIABLE = "MUFFIN_V_CHIHUAHUA_MAX_UPLOAD_MB"
# How many images one request may carry (default MAX_FILES); each is held in memory until it is decoded.
MAX_FILES_VARIABLE = "MUFFIN_V_CHIHUAHUA_MAX_FILES"
MAX_FILES = 16
# How many MB of request bodies the service may hold at once (default: admission.budget(), room for the
# largest requests the workers can process plus one waiting); a request that does not fit gets 503.
MAX_HELD_MB_VARIABLE = "MUFFIN_V_CHIHUAHUA_MAX_HELD_MB"
# How the service logs its one line per request: "json" (one JSON object a line, for log collectors) or
# "text" (readable; the default).
LOG_FORMAT_VARIABLE = "MUFFIN_V_CHIHUAHUA_LOG_FORMAT"
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class Settings:
    """What the service is made with (frozen); each field checked as it is made, a bad one named by its variable."""

    engine: str = "auto"  # engines.ENGINES
    precision: str = "auto"  # engines.PRECISIONS
    model_dir: Path | None = None  # None: the model in this package
    neither_threshold: float | None = None  # None: the model card's
    max_upload_mb: float = float(uploads.MAX_UPLOAD_MB)
    max_files: int = MAX_FILES
    max_held_mb: float | None = None  # None: admission.budget() for the workers this process has
    log_format: str = "text"

    def __post_init__(self) -> None:
        checks = [  # (field, its variable, whether its value is usable, what a usable one is)
            ("engine", ENGINE_VARIABLE, self.engine in engines.ENGINES, f"one of {', '.join(engines.ENGINES)}"),
            (
                "precision",
                PRECISION_VARIABLE,
                self.precision in engines.PRECISIONS,
                f"one of {', '.join(engines.PRECISIONS)}",
            ),
            (
                "neither_threshold",
                NEITHER_THRESHOLD_VARIABLE,
                self.neither_threshold is None or 0 <= self.neither_threshold <= 1,
                "an evidence from 0 to 1",
            ),
            (
                "max_upload_mb",
                MAX_UPLOAD_MB_VARIABLE,
                0 < self.max_upload_mb <= uploads.MAX_UPLOAD_MB,
                f"more than 0 and at most {uploads.MAX_UPLOAD_MB} (MB)",
            ),
            ("max_files", MAX_FILES_VARIABLE, self.max_files >= 1, "at least 1"),
            ("max_held_mb", MAX_HELD_MB_VARIABLE, self.max_held_mb is None or self.max_held_mb > 0, "more than 0 (MB)"),
            ("log_format", LOG_FORMAT_VARIABLE, self.log_format in LOG_FORMATS, f"one of {', '.join(LOG_FORMATS)}"),
        ]
        for field, variable, usable, expected in checks:
            if not usable:
                raise SettingError(f"{variable} must be {expected}, not {getattr(self, field)!r}")

    @classmethod
    def from_environment(
        cls,
        *,
        engine: str | None = None,
        precision: str | None = None,
        model_dir: Path | None = None,
        neither_threshold: float | None = None,
    ) -> Settings:
        """The settings the environment's variables say; the arguments given (the command line's options) win
        over theirs."""
        return cls(
            engine=engine or engine_from_environment(),
            precision=precision or precision_from_environment(),
            model_dir=model_dir if model_dir is not None else model_dir_from_environment(),
            neither_threshold=(
                neither_threshold if neither_threshold is not None else neither_threshold_from_environment()
            ),
            max_upload_mb=setting(MAX_UPLOAD_MB_VARIABLE, float, float(uploads.MAX_UPLOAD_MB)),
            max_files=setting(MAX_FILES_VARIABLE, int, MAX_FILES),
            max_held_mb=setting(MAX_HELD_MB_VARIABLE, float, None),
            log_format=setting(LOG_FORMAT_VARIABLE, str, "text").lower(),
        )

    @property
    def max_bytes(self) -> int:
        """One image's limit in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def request_limit(self) -> int:
        """The largest /predict body: max_files images at the limit, and their multipart framing."""
        return self.max_files * self.max_bytes + MULTIPART_OVERHEAD
