"""Calibrate the 'neither' rule: a photo is neither a muffin nor a chihuahua when the model's own ImageNet
output puts too little probability on dogs, baked goods and food.

Calibration uses the dataset photos (which must pass) and scikit-image's sample pictures (which should
not: a cat, an astronaut, a rocket, text, textures...), split into a calibration half that picks the
threshold and a held-out half that measures it.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import numpy as np
from PIL import Image
from sklearn.metrics import roc_curve

from muffin_v_chihuahua import images
from muffin_v_chihuahua.classifier import domain_mass

# Inclusive ImageNet index ranges: the 118 dog breeds, bakery, and the food classes (not the drinks and
# cups at 966-968: a cup of coffee is not a muffin).
DOMAIN_CLASSES = [[151, 268], [415, 415], [924, 965], [969, 969]]
# scikit-image sample pictures that ship with the package (no download), one of each (cat = chelsea).
NEGATIVE_SAMPLES = (
    "astronaut",
    "binary_blobs",
    "brick",
    "camera",
    "cat",
    "cell",
    "checkerboard",
    "clock",
    "coffee",
    "coins",
    "colorwheel",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "logo",
    "microaneurysms",
    "moon",
    "page",
    "retina",
    "rocket",
    "shepp_logan_phantom",
    "text",
)


def negative_photos() -> dict[str, bytes]:
    """Each sample picture as PNG bytes, so it goes through the same decoding as an upload."""
    import skimage.data

    photos = {}
    for name in NEGATIVE_SAMPLES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = np.asarray(getattr(skimage.data, name)())
        if pixels.dtype != np.uint8:  # booleans and floats: stretch to 0..255
            pixels = pixels.astype(np.float64)
            pixels = (255 * (pixels - pixels.min()) / (np.ptp(pixels) or 1)).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        photos[name] = buffer.getvalue()
    return photos


def split(names: list[str]) -> tuple[list[str], list[str]]:
    """Alternate names in sorted order: (calibration half, held-out half)."""
    ordered = sorted(names)
    return ordered[0::2], ordered[1::2]


def choose_threshold(in_domain: np.ndarray, negatives: np.ndarray) -> float:
    """The threshold with the largest Youden's J: negatives caught share minus dataset photos flagged share, a
    photo being flagged when its domain mass is below the threshold. Ties go to the one flagging the fewest."""
    masses = np.concatenate([in_domain, negatives])
    is_negative = np.concatenate([np.zeros(len(in_domain)), np.ones(len(negatives))])
    # The negatives are the positive class, scored by minus their mass: ROC threshold -m flags every mass <= m.
    # drop_intermediate=False keeps every observed mass, so each one's neighbour is the next in the list.
    dataset_flagged, negatives_caught, minus_mass = roc_curve(is_negative, -masses, drop_intermediate=False)
    ascending_masses = -minus_mass  # -inf (flag nothing), then every distinct observed mass
    # The candidates flag some photos but not all: each observed mass that has one above it.
    youden = (negatives_caught - dataset_flagged)[1:-1]
    best = 1 + int(np.argmax(youden))  # the first maximum is the lowest threshold, flagging the fewest
    # Midway to the next observed mass, never on one: the two engines differ by ~1e-6.
    return float((ascending_masses[best] + ascending_masses[best + 1]) / 2)


def calibrate(
    dataset_imagenet: np.ndarray, imagenet_of: Callable[[np.ndarray], np.ndarray], size: tuple[int, int]
) -> dict:
    """The rule for the model card, with its measured rates.

    dataset_imagenet: ImageNet probabilities of the dataset photos; imagenet_of: model input arrays ->
    ImageNet probabilities; size: the model's input (width, height).
    """
    negatives = negative_photos()
    calibration, held_out = split(list(negatives))

    def masses(names: list[str]) -> np.ndarray:
        arrays = np.stack([images.decode(negatives[name], size) for name in names])
        return domain_mass(imagenet_of(arrays), DOMAIN_CLASSES)

    in_domain = domain_mass(dataset_imagenet, DOMAIN_CLASSES)
    calibration_mass, held_out_mass = masses(calibration), masses(held_out)
    threshold = choose_threshold(in_domain, calibration_mass)
    return {
        "rule": "neither when the ImageNet probability on dogs, bakery and food classes is below the threshold",
        "domain_classes": DOMAIN_CLASSES,
        "threshold": threshold,
        "dataset_flagged_share": float((in_domain < threshold).mean()),
        "heldout_negatives_caught_share": float((held_out_mass < threshold).mean()),
        "calibration_negatives_caught_share": float((calibration_mass < threshold).mean()),
        "negatives": {"source": "scikit-image sample pictures", "calibration": calibration, "held_out": held_out},
        "missed_held_out_negatives": [name for name, m in zip(held_out, held_out_mass, strict=True) if m >= threshold],
    }
