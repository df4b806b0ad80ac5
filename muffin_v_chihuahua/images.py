"""Image bytes -> an RGB picture and the model's input array, or one clear ImageError."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageOps, JpegImagePlugin

from muffin_v_chihuahua.uploads import MAX_UPLOAD_BYTES, MAX_UPLOAD_MB

# A 40-megapixel photo decodes to ~120 MB of RGB; anything larger is refused from its header,
# before decoding, so a small file that declares a huge image cannot exhaust memory.
MAX_PIXELS = 40_000_000
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")  # what a folder's photos are
SIGNATURES = {b"\xff\xd8": "JPEG", b"\x89PNG": "PNG", b"GIF8": "GIF", b"BM": "BMP", b"II*\0": "TIFF", b"MM\0*": "TIFF"}
# A large JPEG is decoded at reduced scale (libjpeg's DCT scaling by 1/2, 1/4 or 1/8), to no less than this many
# times the model's input in each dimension: a 12-megapixel photo decodes several times faster, and the final
# resize still averages two or more decoded pixels per input pixel, so the input moves by a grey level or so.
DRAFT_MARGIN = 2
# EXIF orientations whose picture is stored on its side (transpose, 90°, transverse, 270°): width and height swap.
SIDEWAYS = (5, 6, 7, 8)


class ImageError(ValueError):
    """The bytes are not a photo this app can classify; the message says why, for a person, and
    `kind` says it for a program: one of KINDS."""

    KINDS = ("empty", "too-large", "not-an-image", "corrupt", "too-many-pixels")

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def photo_files(paths: list[Path]) -> list[Path]:
    """Named files as given (a file that is no photo gets its error from decoding); folders searched recursively
    for photos, by their suffix, in sorted order."""
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
        else:
            found.append(path)
    return found


def check_size(size: int) -> None:
    """Refuse a file over MAX_UPLOAD_MB from its size alone (callers that can, check before reading it)."""
    if size > MAX_UPLOAD_BYTES:
        raise ImageError("too-large", f"the file is larger than {MAX_UPLOAD_MB} MB")


def read_photo(stream: BinaryIO, size: int) -> bytes:
    """A photo file's bytes, refused from its size before any is read, as the page and the service refuse uploads.
    One byte past the limit at most: the decoder refuses a file that grew since, or a pipe (size 0)."""
    check_size(size)
    return stream.read(MAX_UPLOAD_BYTES + 1)


def read_file(path: Path) -> bytes:
    """A local photo file's bytes, refused from its size before any is read (read_photo)."""
    with path.open("rb") as stream:
        return read_photo(stream, os.fstat(stream.fileno()).st_size)


def failure(error: ImageError | OSError) -> str:
    """Why a file could not be classified, in a line: an OSError's own words ("Permission denied"), not its repr."""
    return str(getattr(error, "strerror", None) or error)


def open_rgb(data: bytes | bytearray, model_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode image bytes to an upright 8-bit RGB picture (first frame of an animation).

    With `model_size`, the model's (width, height) the picture is for, a large JPEG is decoded at reduced scale,
    never below DRAFT_MARGIN times that in either dimension (other formats are decoded whole).
    """
    if not data:
        raise ImageError("empty", "the file is empty")
    check_size(len(data))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("too-many-pixels", f"the image has more than {MAX_PIXELS:,} pixels") from None
    except Exception:  # Pillow raises many types for bytes it cannot identify
        kind = _kind_from_signature(data)
        if kind:
            raise ImageError("corrupt", f"the {kind} file is truncated or corrupt") from None
        raise ImageError(
            "not-an-image", "the file is not an image (accepted: JPEG, PNG, WebP, GIF, BMP, TIFF)"
        ) from None
    if image.width * image.height > MAX_PIXELS:
        raise ImageError(
            "too-many-pixels", f"the image is {image.width}x{image.height}, more than {MAX_PIXELS:,} pixels"
        )
    try:
        if model_size is not None:
            _draft(image, model_size)
        image.load()
        return _to_rgb(ImageOps.exif_transpose(image))
    except ImageError:
        raise
    except Exception:
        raise ImageError("corrupt", f"the {image.format} file is truncated or corrupt") from None


def to_array(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Resize the whole picture (no crop) to the model's (width, height): float32 RGB 0..255."""
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def decode(data: bytes | bytearray, size: tuple[int, int]) -> np.ndarray:
    """Image bytes -> the model's input array."""
    return to_array(open_rgb(data, size), size)


def _draft(image: Image.Image, model_size: tuple[int, int]) -> None:
    """Ask a JPEG decoder for the smallest reduced scale that keeps the upright picture at DRAFT_MARGIN times
    `model_size` or more. Before loading: the scale is chosen from the stored size."""
    if not isinstance(image, JpegImagePlugin.JpegImageFile):  # only JPEG scales (and a PNG decodes to find its EXIF)
        return
    width, height = (DRAFT_MARGIN * side for side in model_size)
    if image.getexif().get(ExifTags.Base.Orientation) in SIDEWAYS:
        width, height = height, width
    image.draft("RGB", (width, height))


def _kind_from_signature(data: bytes | bytearray) -> str | None:
    """The format a file's first bytes claim, to tell a damaged photo from something else."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for signature, kind in SIGNATURES.items():
        if data.startswith(signature):
            return kind
    return None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # 16-bit and float grey: scale to 8 bits rather than clip to white.
        values = np.asarray(image, dtype=np.float32)
        scale = 257.0 if values.max(initial=0) > 255 else 1.0
        image = Image.fromarray(np.clip(values / scale, 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent pixels become white, as a viewer would show them, not black.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")
