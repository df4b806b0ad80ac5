"""The service's settings: the environment variables it reads (with environment.setting), checked once when the app
is made."""

from __future__ import annotations

# Per-image size limit in MB (default: the page's upload limit). It can only lower images.MAX_UPLOAD_MB,
# above which the decoder itself refuses a file.
MAX_UPLOAD_MB_VARIABLE = "MUFFIN_V_CHIHUAHUA_MAX_UPLOAD_MB"
# How many images one request may carry (default MAX_FILES); each is held in memory until it is decoded.
MAX_FILES_VARIABLE = "MUFFIN_V_CHIHUAHUA_MAX_FILES"
MAX_FILES = 16
# How many MB of request bodies the service may hold at once (default: admission.budget(), room for the
# largest requests the workers can process plus one waiting); a request that does not fit gets 503.
MAX_HELD_MB_VARIABLE = "MUFFIN_V_CHIHUAHUA_MAX_HELD_MB"
# FOR TESTS ONLY: seconds to sleep before loading the model, so that a test can watch the health check
# answer 503 "loading" before 200 (loading the ONNX model alone takes well under a second).
TEST_LOAD_DELAY_VARIABLE = "MUFFIN_V_CHIHUAHUA_TEST_LOAD_DELAY_SECONDS"


# How the service logs its one line per request: "json" (one JSON object a line, for log collectors) or
# "text" (readable; the default).
LOG_FORMAT_VARIABLE = "MUFFIN_V_CHIHUAHUA_LOG_FORMAT"
LOG_FORMATS = ("text", "json")
