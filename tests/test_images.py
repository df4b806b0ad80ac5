"""images: every odd file either decodes to an upright RGB picture or raises ImageError."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from muffin_v_chihuahua import images

SIZE = (224, 224)


def encode(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header declares width x height: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


RED = (200, 30, 30)


@pytest.mark.parametrize(
    "mode, format",
    [("RGB", "JPEG"), ("RGB", "PNG"), ("RGB", "WEBP"), ("RGB", "GIF"), ("RGB", "BMP"), ("L", "PNG"), ("CMYK", "JPEG")],
)
def test_decodes_common_formats_and_modes_to_rgb(mode, format):
    picture = Image.new("RGB", (64, 48), RED).convert(mode)
    array = images.decode(encode(picture, format), SIZE)
    assert array.shape == (224, 224, 3) and array.dtype == np.float32
    assert 0 <= array.min() and array.max() <= 255


def test_transparent_pixels_become_white():
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert images.open_rgb(encode(rgba, "PNG")).getpixel((0, 0)) == (255, 255, 255)
    la = Image.new("LA", (8, 8), (0, 0))
    assert images.open_rgb(encode(la, "PNG")).getpixel((0, 0)) == (255, 255, 255)


def test_palette_with_transparency_is_composited_on_white():
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    palette.putpixel((1, 1), 1)
    picture = images.open_rgb(encode(palette, "PNG", transparency=0))
    assert picture.getpixel((0, 0)) == (255, 255, 255)
    assert picture.getpixel((1, 1)) == RED


def test_sixteen_bit_grey_is_scaled_not_clipped():
    grey = Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16))
    assert images.open_rgb(encode(grey, "PNG")).getpixel((0, 0)) == (127, 127, 127)


def test_exif_orientation_is_honoured():
    wide = Image.new("RGB", (40, 20), RED)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    assert images.open_rgb(encode(wide, "JPEG", exif=exif)).size == (20, 40)


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (16, 16), colour) for colour in (RED, (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    red, green, blue = images.open_rgb(data).getpixel((0, 0))
    assert red > blue


def test_resizes_whole_picture_without_cropping():
    picture = Image.new("RGB", (300, 100), RED)
    picture.paste((0, 0, 255), (0, 0, 30, 100))  # a blue band on the left edge survives
    array = images.to_array(picture, SIZE)
    assert array[112, 0, 2] > 200 and array[112, -1, 0] > 150


JPEG = encode(Image.new("RGB", (64, 64), RED), "JPEG")
PNG = encode(Image.new("RGB", (64, 64), RED), "PNG")


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"hello, I am text pretending to be a photo\n" * 20, "not an image"),
        (b"<html><body>nope</body></html>", "not an image"),
        (JPEG[: len(JPEG) // 2], "truncated or corrupt"),
        (PNG[: len(PNG) // 2], "truncated or corrupt"),
        (JPEG[:2] + b"\x00" * 40 + JPEG[42:], "JPEG file is truncated or corrupt"),
        (png_declaring(100_000, 100_000), "pixels"),
        (png_declaring(7_000, 7_000), "pixels"),
        (b"\xff" * (images.MAX_UPLOAD_MB * 1024 * 1024 + 1), "larger than"),
    ],
    ids=["empty", "text", "html", "truncated-jpeg", "truncated-png", "corrupt-header", "bomb", "just-over-limit", "too-large"],
)
def test_refuses_bad_files_with_one_clear_error(data, reason):
    with pytest.raises(images.ImageError, match=reason):
        images.decode(data, SIZE)
