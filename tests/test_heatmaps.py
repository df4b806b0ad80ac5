"""heatmaps: the grid upsampled over the whole photo, a colour map from cold to hot, the photo still visible."""

import numpy as np
from PIL import Image

from muffin_v_chihuahua import heatmaps
from tests.conftest import imported_after
from tests.corpus import DATASET_PHOTO


def one_hot_cell(row: int, column: int, size: int = 7) -> list[list[float]]:
    grid = np.zeros((size, size))
    grid[row, column] = 3.0
    return grid.tolist()


def test_the_grid_is_upsampled_to_the_photo_and_scaled_to_its_peak():
    values = heatmaps.upsample(one_hot_cell(0, 6), (280, 140))  # (width, height): not square, as photos are
    assert values.shape == (140, 280)
    assert values.min() >= 0 and values.max() == 1
    # Cell (0, 6) is the top-right 40 x 20 pixels: the peak is there, and the far corner stays cold.
    peak_row, peak_column = np.unravel_index(values.argmax(), values.shape)
    assert peak_row < 20 and peak_column >= 240
    assert values[100:, :200].max() == 0


def test_the_upsampling_is_smooth():
    values = heatmaps.upsample(one_hot_cell(3, 3), (700, 700))
    row = values[350]
    assert np.abs(np.diff(row)).max() < 0.05  # no block edges: no step between neighbouring pixels
    assert row[350] == row.max() and row[250] < row[300] < row[350]


def test_an_all_zero_grid_is_cold_everywhere():
    assert heatmaps.upsample(np.zeros((7, 7)).tolist(), (10, 10)).max() == 0


def test_the_colour_map_runs_from_dark_blue_through_cyan_and_yellow_to_red():
    colours = heatmaps.colour_map(np.array([0.0, 0.5, 1.0, 0.25], dtype=np.float32))
    assert colours.dtype == np.uint8 and colours.shape == (4, 3)
    np.testing.assert_array_equal(colours[:3], heatmaps.COLOURS[[0, 2, 4]], strict=False)
    np.testing.assert_array_equal(colours[3], heatmaps.COLOURS[1], strict=False)
    ramp = heatmaps.colour_map(np.linspace(0, 1, 101, dtype=np.float32)).astype(int)
    assert (np.abs(np.diff(ramp, axis=0)) <= 26).all()  # continuous: no jump between neighbouring values


def test_the_overlay_keeps_the_photo_visible_and_colours_where_the_model_looked():
    photo = Image.open(DATASET_PHOTO).convert("RGB")
    drawn = heatmaps.overlay(photo, one_hot_cell(0, 0))
    assert drawn.size == photo.size and drawn.mode == "RGB"
    original, blended = np.asarray(photo, dtype=float), np.asarray(drawn, dtype=float)
    # Cold parts: mostly the photo (its detail correlates with the original's)...
    cold = (slice(photo.height // 2, None), slice(photo.width // 2, None))
    assert np.corrcoef(original[cold].ravel(), blended[cold].ravel())[0, 1] > 0.95
    # ...the hottest cell: red, blended over the photo, not painted over it.
    hot = blended[: photo.height // 14, : photo.width // 14]
    assert hot[..., 0].mean() > hot[..., 2].mean() + 50
    expected = original[0, 0] * (1 - heatmaps.MOST_OPACITY) + heatmaps.COLOURS[-1] * heatmaps.MOST_OPACITY
    np.testing.assert_allclose(blended[0, 0], expected, atol=1.5, strict=False)


def test_an_overlay_for_a_page_is_drawn_on_a_smaller_copy():
    photo = Image.new("RGB", (4000, 3000), (200, 180, 160))
    drawn = heatmaps.overlay(photo, one_hot_cell(3, 3), longest_side=1000)
    assert drawn.size == (1000, 750) and photo.size == (4000, 3000)


def test_drawing_needs_no_matplotlib():
    assert imported_after("import muffin_v_chihuahua.heatmaps", ("matplotlib",)) == []
