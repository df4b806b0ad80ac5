"""The largest photo file the page, the CLI and the service take: a larger one is refused from its size, unread.

Apart from images.py (which decodes, with Pillow and NumPy) so that run-demo hands the limit to Streamlit without
importing either.
"""

MAX_UPLOAD_MB = 10
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
