"""images: every odd file either decodes to an upright RGB picture or raises ImageError."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from muffin_v_chihuahua import images, uploads
from tests import corpus
from tests.conftest import ROOT
from tests.corpus import encode

SIZE = (224, 224)


RED = (200, 30, 30)


@pytest.mark.parametrize(
    ("mode", "format"),
    [("RGB", "JPEG"), ("RGB", "PNG"), ("RGB", "WEBP"), ("RGB", "GIF"), ("RGB", "BMP"), ("L", "PNG"), ("CMYK", "JPEG")],
)
def test_decodes_common_formats_and_modes_to_rgb(mode, format):
    picture = Image.new("RGB", (64, 48), RED).convert(mode)
    array = images.decode(encode(picture, format), SIZE)
    assert array.shape == (224, 224, 3) and array.dtype == np.float32
    # The colour a viewer shows (grey for L), within JPEG's rounding, everywhere in the picture.
    expected = np.array(picture.convert("RGB").getpixel((0, 0)), dtype=np.float32)
    assert np.abs(array - expected).max() <= 6


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
    red, _green, blue = images.open_rgb(data).getpixel((0, 0))
    assert red > blue


def test_resizes_whole_picture_without_cropping():
    picture = Image.new("RGB", (300, 100), RED)
    picture.paste((0, 0, 255), (0, 0, 30, 100))  # a blue band on the left edge survives
    array = images.to_array(picture, SIZE)
    assert array[112, 0, 2] > 200 and array[112, -1, 0] > 150


# ----- large JPEGs are decoded at reduced scale ----------------------------------------------------------


@pytest.mark.parametrize("sideways", [False, True], ids=["upright", "exif-rotated"])
def test_a_phone_photo_is_decoded_at_reduced_scale_within_a_grey_level_or_two(sideways):
    data = corpus.phone_jpeg(Image.open(corpus.DATASET_PHOTO), sideways)
    whole, reduced = images.open_rgb(data), images.open_rgb(data, SIZE)
    assert whole.size == corpus.PHONE_SIZE  # upright either way
    assert reduced.size == (1000, 750)  # a quarter: an eighth (500x375) would be under twice 224
    array = images.decode(data, SIZE)
    np.testing.assert_array_equal(array, images.to_array(reduced, SIZE))  # the page's way is the CLI's and service's
    assert np.abs(array - images.to_array(whole, SIZE)).max() <= 2


@pytest.mark.parametrize(
    ("stored", "orientation", "model_size", "decoded"),
    [
        ((4000, 3000), 1, SIZE, (1000, 750)),
        ((3600, 3600), 1, SIZE, (450, 450)),  # an eighth, libjpeg's smallest scale
        ((896, 896), 1, SIZE, (448, 448)),  # a half, exactly twice
        ((895, 1200), 1, SIZE, (895, 1200)),  # a half would be 447 wide: whole
        ((1600, 400), 1, (160, 40), (400, 100)),
        # Stored on its side, upright 400 wide: a quarter would make it 100 wide, under twice 160.
        ((1600, 400), 6, (160, 40), (400, 1600)),
        ((1600, 400), 8, (40, 160), (100, 400)),
    ],
)
def test_the_reduced_scale_is_the_smallest_that_keeps_twice_the_model_size(stored, orientation, model_size, decoded):
    exif = Image.Exif()
    exif[corpus.EXIF_ORIENTATION] = orientation
    picture = images.open_rgb(encode(Image.new("RGB", stored, RED), "JPEG", exif=exif), model_size)
    assert picture.size == decoded
    assert picture.width >= 2 * model_size[0] and picture.height >= 2 * model_size[1]


@pytest.mark.parametrize("format", ["PNG", "WEBP"])
def test_other_formats_are_decoded_whole(format):
    data = encode(corpus.noisy(1000, 900), format, lossless=True)
    whole, for_the_model = images.open_rgb(data), images.open_rgb(data, SIZE)
    assert for_the_model.size == (1000, 900)
    np.testing.assert_array_equal(np.asarray(for_the_model), np.asarray(whole))


JPEG = encode(Image.new("RGB", (64, 64), RED), "JPEG")
PNG = encode(Image.new("RGB", (64, 64), RED), "PNG")


@pytest.mark.parametrize("case", corpus.cases(), ids=repr)
def test_every_corpus_case_gives_an_array_or_one_clear_error(case):
    if case.expected == corpus.VERDICT:
        assert images.decode(case.data, SIZE).shape == (224, 224, 3)
    else:
        with pytest.raises(images.ImageError) as refused:
            images.decode(case.data, SIZE)
        assert refused.value.kind == case.expected
        assert str(refused.value).startswith(("the file", "the image", "the JPEG", "the PNG", "the GIF"))


def test_a_bomb_is_refused_before_decoding_so_memory_stays_bounded():
    """In a fresh process, so the peak resident size is the bomb's alone (100,000² RGB would be 30 GB)."""
    code = (
        "import sys; sys.path.insert(0, '.'); from tests import corpus; "
        "from muffin_v_chihuahua import images\n"
        "for case in corpus.cases():\n"
        "    if case.expected == 'too-many-pixels':\n"
        "        try: images.decode(case.data, (224, 224))\n"
        "        except images.ImageError: pass\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent (pytest) across exec.
        "print([line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')][0])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert int(result.stdout) < 400_000  # KiB: the interpreter, numpy, Pillow and the corpus, and no image


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(max_size=4096)
    | st.builds(lambda seed, cut: mutated(seed, cut), st.integers(0, 2**32 - 1), st.integers(0, 4000))
)
def test_fuzzed_bytes_never_escape_as_anything_but_image_error(data):
    try:
        array = images.decode(data, SIZE)
    except images.ImageError as error:
        kind = error.kind
    else:
        kind = None
        assert array.shape == (224, 224, 3) and np.isfinite(array).all()
    assert kind is None or kind in images.ImageError.KINDS


def mutated(seed: int, cut: int) -> bytes:
    """A valid small JPEG or PNG with a few bytes flipped and maybe cut short."""
    rng = np.random.default_rng(seed)
    data = bytearray((JPEG, PNG)[seed % 2])
    for position in rng.integers(0, len(data), 4):
        data[position] = int(rng.integers(0, 256))
    return bytes(data[: max(cut, 1)])


def test_read_file_gives_a_files_bytes_and_refuses_one_over_the_limit_from_its_size(tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(JPEG)
    assert images.read_file(photo) == JPEG
    with (tmp_path / "huge.jpg").open("wb") as sparse:  # 11 MB that take no space: refused before any is read
        sparse.truncate((uploads.MAX_UPLOAD_MB + 1) * 1024 * 1024)
    with pytest.raises(images.ImageError) as refused:
        images.read_file(tmp_path / "huge.jpg")
    assert refused.value.kind == "too-large"
