"""Draw where the model looked: a prediction's heatmap grid over the photo, as a person can read it at a glance.

The grid (Prediction.heatmap, rows top to bottom) covers the whole photo, because images.to_array resizes the
whole picture to the model's input without cropping: cell (row, column) of an R x C grid is the photo's
rectangle from (column / C, row / R) to ((column + 1) / C, (row + 1) / R) of its width and height, whatever
its aspect ratio. The grid is upsampled smoothly to the photo's size, coloured with a small colour map, and
blended in with more opacity where the model looked more, so the photo stays visible everywhere.

The colour map is written here with NumPy: matplotlib is not a runtime dependency.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image

# Cold to hot: dark blue, blue, cyan, yellow, red (a jet-like ramp, readable over any photo).
COLOURS = np.array([[0, 0, 128], [0, 64, 255], [0, 224, 255], [255, 230, 0], [230, 0, 0]], dtype=np.float32)
# Opacity of the colour over the photo, from the coldest cell to the hottest: the photo always shows through.
LEAST_OPACITY, MOST_OPACITY = 0.15, 0.6


def upsample(grid: Sequence[Sequence[float]], size: tuple[int, int]) -> npt.NDArray[np.float32]:
    """The grid scaled to 0..1 (by its largest value) and smoothly resized to (width, height): (height, width)."""
    values = np.asarray(grid, dtype=np.float32)
    peak = values.max(initial=0.0)
    scaled = values / peak if peak > 0 else np.zeros_like(values)
    # Bicubic keeps each cell's value at its centre and blends between centres; it may overshoot 0..1 a little.
    resized = Image.fromarray(scaled, mode="F").resize(size, Image.Resampling.BICUBIC)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def colour_map(values: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """Values in 0..1 -> RGB colours along COLOURS, interpolated linearly: shape (..., 3)."""
    position = np.clip(values, 0.0, 1.0) * (len(COLOURS) - 1)
    lower = np.minimum(position.astype(np.int64), len(COLOURS) - 2)
    fraction = (position - lower)[..., np.newaxis]
    colours: npt.NDArray[np.float32] = COLOURS[lower] * (1 - fraction) + COLOURS[lower + 1] * fraction
    return np.rint(colours).astype(np.uint8)


def overlay(picture: Image.Image, grid: Sequence[Sequence[float]], longest_side: int | None = None) -> Image.Image:
    """The RGB picture with the heatmap blended over it; longest_side: draw on a copy scaled down to that size
    first (a page shows a 12-megapixel photo no larger than its column)."""
    picture = picture.convert("RGB")
    if longest_side is not None and max(picture.size) > longest_side:
        picture = picture.copy()
        picture.thumbnail((longest_side, longest_side), Image.Resampling.BILINEAR)
    values = upsample(grid, picture.size)
    opacity = (LEAST_OPACITY + (MOST_OPACITY - LEAST_OPACITY) * values)[..., np.newaxis]
    photo = np.asarray(picture, dtype=np.float32)
    blended = photo * (1 - opacity) + colour_map(values).astype(np.float32) * opacity
    return Image.fromarray(np.rint(blended).astype(np.uint8), "RGB")
