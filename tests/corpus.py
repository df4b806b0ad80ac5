"""One corpus of hostile and odd inputs, made here, that every interface is tested with.

Each case is a file a user might send: either a photo the app must classify (expected "verdict") or
one it must refuse with a clear error of a known kind (the decoder's ImageError.kind).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from muffin_v_chihuahua import images, uploads

VERDICT = "verdict"
DATASET_PHOTO = Path(__file__).resolve().parents[1] / "muffin_v_chihuahua" / "data" / "chihuahua" / "1.jpg"
PHONE_SIZE, PHONE_QUALITY = (4000, 3000), 90  # 12 megapixels, as phone cameras save them
EXIF_ORIENTATION = 0x0112
ROTATE_90_CLOCKWISE_TO_VIEW = 6


@dataclass(frozen=True)
class Case:
    name: str
    filename: str
    data: bytes
    expected: str  # VERDICT, or the ImageError kind

    def __repr__(self) -> str:  # short ids in test output
        return self.name


def encode(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height: a decompression bomb."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )


def gif_declaring(width: int, height: int) -> bytes:
    """A tiny GIF whose logical screen and frame declare width x height."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0)
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


def photo() -> Image.Image:
    """A real chihuahua photo from the dataset, small enough to keep the corpus fast."""
    picture = Image.open(DATASET_PHOTO).convert("RGB")
    picture.thumbnail((320, 320))
    return picture


def phone_jpeg(picture: Image.Image, sideways: bool = False) -> bytes:
    """The picture upscaled to a phone camera's 12 megapixels and saved at a phone's JPEG quality. Sideways: stored
    as a phone held upright stores it, turned a quarter, with the EXIF orientation that turns it upright to view."""
    large = picture.convert("RGB").resize(PHONE_SIZE, Image.Resampling.BICUBIC)
    exif = Image.Exif()
    if sideways:
        large = large.transpose(Image.Transpose.ROTATE_90)
        exif[EXIF_ORIENTATION] = ROTATE_90_CLOCKWISE_TO_VIEW
    return encode(large, "JPEG", quality=PHONE_QUALITY, exif=exif)


def noisy(width: int, height: int) -> Image.Image:
    """Random pixels compress badly, so a truncated file is cut inside its image data."""
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8))


def exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = ROTATE_90_CLOCKWISE_TO_VIEW
    return encode(photo(), "JPEG", exif=exif)


def animated_gif() -> bytes:
    first = photo()
    return encode(first, "GIF", save_all=True, append_images=[first.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])


def palette_with_transparency() -> bytes:
    palette = photo().convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    return encode(palette, "PNG", transparency=0)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def sixteen_bit_grey() -> bytes:
    return encode(Image.fromarray(np.asarray(photo().convert("L"), dtype=np.uint16) * 257), "PNG")


def sixteen_bit_rgb() -> bytes:
    """48-bit RGB, written by hand: Pillow reads such files but cannot write them."""
    pixels = np.asarray(photo(), dtype=">u2") * 257
    height, width, _ = pixels.shape
    rows = b"".join(b"\0" + row.tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def zip_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("photo.jpg", encode(photo(), "JPEG"))
    return buffer.getvalue()


@cache
def cases() -> tuple[Case, ...]:
    jpeg, png = encode(photo(), "JPEG"), encode(photo(), "PNG")
    big_jpeg, big_png = encode(noisy(400, 300), "JPEG"), encode(noisy(400, 300), "PNG")
    huge_side = int((images.MAX_PIXELS * 1.2) ** 0.5)
    return (
        # Photos the app must classify, in every shape they come in.
        Case("real-photo", "chihuahua.jpg", DATASET_PHOTO.read_bytes(), VERDICT),
        Case("png", "photo.png", png, VERDICT),
        Case("webp", "photo.webp", encode(photo(), "WEBP"), VERDICT),
        Case("bmp", "photo.bmp", encode(photo(), "BMP"), VERDICT),
        Case("tiff", "photo.tiff", encode(photo(), "TIFF"), VERDICT),
        Case("animated-gif", "animated.gif", animated_gif(), VERDICT),
        Case("cmyk-jpeg", "cmyk.jpg", encode(photo().convert("CMYK"), "JPEG"), VERDICT),
        Case("grayscale-jpeg", "grey.jpg", encode(photo().convert("L"), "JPEG"), VERDICT),
        Case("16-bit-grey-png", "deep.png", sixteen_bit_grey(), VERDICT),
        Case("48-bit-rgb-png", "deep-colour.png", sixteen_bit_rgb(), VERDICT),
        Case("palette-transparency", "palette.png", palette_with_transparency(), VERDICT),
        Case("rgba-png", "alpha.png", encode(photo().convert("RGBA"), "PNG"), VERDICT),
        Case("la-png", "grey-alpha.png", encode(photo().convert("LA"), "PNG"), VERDICT),
        Case("exif-rotated", "rotated.jpg", exif_rotated(), VERDICT),
        Case("one-pixel", "dot.png", encode(Image.new("RGB", (1, 1), (120, 80, 40)), "PNG"), VERDICT),
        Case("very-wide", "banner.png", encode(Image.new("RGB", (8000, 8), (120, 80, 40)), "PNG"), VERDICT),
        Case("trailing-garbage", "tail.jpg", jpeg + b"\x00garbage" * 100, VERDICT),
        Case("png-named-gif", "really-a-png.gif", png, VERDICT),
        Case("odd-file-name", "ça va? «chihuahua» #1 & 'quotes' ;.jpg", jpeg, VERDICT),
        Case("large-real-image", "large.jpg", encode(Image.new("RGB", (6000, 4000), (120, 80, 40)), "JPEG"), VERDICT),
        # Files the app must refuse, each with a clear reason.
        Case("empty", "empty.jpg", b"", "empty"),
        Case("text-as-jpg", "notes.jpg", b"Dear diary, today I saw a muffin.\n" * 40, "not-an-image"),
        Case(
            "html-as-jpg",
            "page.jpg",
            b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>",
            "not-an-image",
        ),
        Case(
            "svg",
            "vector.svg",
            b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
            "not-an-image",
        ),
        Case("zip", "photos.zip.jpg", zip_archive(), "not-an-image"),
        Case("pdf", "scan.jpg", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "not-an-image"),
        Case(
            "random-bytes",
            "noise.jpg",
            bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)),
            "not-an-image",
        ),
        Case("null-bytes", "zeros.png", b"\x00" * 2048, "not-an-image"),
        Case("truncated-jpeg", "cut.jpg", big_jpeg[: len(big_jpeg) // 2], "corrupt"),
        Case("truncated-png", "cut.png", big_png[: len(big_png) // 2], "corrupt"),
        Case("jpeg-header-only", "header.jpg", jpeg[:200], "corrupt"),
        Case("corrupt-jpeg-header", "bad-header.jpg", jpeg[:2] + b"\x00" * 60 + jpeg[62:], "corrupt"),
        Case("corrupt-png-chunk", "bad-chunk.png", png[:33] + b"\xde\xad\xbe\xef" + png[37:], "corrupt"),
        Case("png-bomb", "bomb.png", png_declaring(100_000, 100_000), "too-many-pixels"),
        Case("gif-bomb", "bomb.gif", gif_declaring(65_000, 65_000), "too-many-pixels"),
        Case("huge-real-image", "huge.png", encode(Image.new("L", (huge_side, huge_side)), "PNG"), "too-many-pixels"),
        Case("over-size-limit", "heavy.jpg", jpeg + b"\x00" * (uploads.MAX_UPLOAD_MB * 1024 * 1024), "too-large"),
    )


def good_cases() -> list[Case]:
    return [case for case in cases() if case.expected == VERDICT]


def bad_cases() -> list[Case]:
    return [case for case in cases() if case.expected != VERDICT]
