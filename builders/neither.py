"""Learn the 'neither' rule (muffin_v_chihuahua/evidence.py) from the dataset, and measure it.

A class's profile is the ImageNet classes its dataset photos look like: those on which they put, on average, at
least PROFILE_SHARE of their probability. A verdict needs at least `threshold` of a photo's ImageNet
probability on its class's profile. The threshold is chosen between the dataset photos (which must pass) and
sample pictures that are neither (scikit-image's and matplotlib's: a cat, an astronaut, a rocket, a present,
text, textures...), split into a calibration half that picks the threshold and a held-out half that measures
it. The share of dataset photos flagged is cross-validated: a photo's own fold sets neither the profiles nor
the threshold it is judged by.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from sklearn.metrics import roc_curve
from sklearn.model_selection import StratifiedKFold

from muffin_v_chihuahua import images
from muffin_v_chihuahua.evidence import EvidenceRule

# An ImageNet class is in a profile when the class's photos put on average at least 0.5 % on it: the few
# classes that carry their probability (6 for the chihuahuas, 22 for the diffuse muffins), not every breed or
# food a photo brushes against (a Pekingese is a chihuahua's distant guess, not what chihuahuas look like).
PROFILE_SHARE = 0.005
DOG_CLASSES = (151, 268)  # ImageNet's dog breeds, inclusive: for the reason's words only
FOLDS = 5
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


MATPLOTLIB_SAMPLES = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png")


def negative_photos() -> dict[str, bytes]:
    """Each sample picture as encoded bytes, so it goes through the same decoding as an upload."""
    import matplotlib.cbook
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
    for file in MATPLOTLIB_SAMPLES:
        photos[f"matplotlib-{Path(file).stem}"] = Path(
            matplotlib.cbook.get_sample_data(file, asfileobj=False)
        ).read_bytes()
    return photos


def split(names: list[str]) -> tuple[list[str], list[str]]:
    """Alternate names in sorted order: (calibration half, held-out half)."""
    ordered = sorted(names)
    return ordered[0::2], ordered[1::2]


def choose_threshold(in_domain: npt.NDArray[np.floating[Any]], negatives: npt.NDArray[np.floating[Any]]) -> float:
    """The threshold with the largest Youden's J: negatives caught share minus dataset photos flagged share, a
    photo being flagged when its evidence is below the threshold. Ties go to the one flagging the fewest."""
    scores = np.concatenate([in_domain, negatives])
    is_negative = np.concatenate([np.zeros(len(in_domain)), np.ones(len(negatives))])
    # The negatives are the positive class, scored by minus their evidence: ROC threshold -e flags every
    # evidence <= e. drop_intermediate=False keeps every observed value, so each one's neighbour is the next.
    dataset_flagged, negatives_caught, minus_evidence = roc_curve(is_negative, -scores, drop_intermediate=False)
    ascending = -minus_evidence  # -inf (flag nothing), then every distinct observed evidence
    # The candidates flag some photos but not all: each observed value that has one above it.
    youden = (negatives_caught - dataset_flagged)[1:-1]
    best = 1 + int(np.argmax(youden))  # the first maximum is the lowest threshold, flagging the fewest
    # Midway to the next observed value, never on one: the two engines differ by ~1e-6.
    return float((ascending[best] + ascending[best + 1]) / 2)


def profiles(imagenet: npt.NDArray[np.floating[Any]], labels: list[str]) -> dict[str, list[int]]:
    """Per class, the ImageNet classes on which its photos put on average at least PROFILE_SHARE."""
    is_class = np.array(labels)
    return {
        label: [int(i) for i in np.flatnonzero(imagenet[is_class == label].mean(axis=0) >= PROFILE_SHARE)]
        for label in sorted(set(labels))
    }


def fit(
    imagenet: npt.NDArray[np.floating[Any]],
    labels: list[str],
    negatives_imagenet: npt.NDArray[np.floating[Any]],
    negatives_leaning: list[str],
    imagenet_names: list[str],
) -> EvidenceRule:
    """Profiles from the labelled photos, and the threshold that best separates their evidence (for their own
    class) from the negatives' (for the class the head leans to)."""
    rule = EvidenceRule(profiles(imagenet, labels), 0.0, range(DOG_CLASSES[0], DOG_CLASSES[1] + 1), imagenet_names)
    threshold = choose_threshold(
        evidence(rule, imagenet, labels), evidence(rule, negatives_imagenet, negatives_leaning)
    )
    return EvidenceRule(rule.profiles, threshold, rule.dog_classes, imagenet_names)


def evidence(rule: EvidenceRule, imagenet: npt.NDArray[np.floating[Any]], labels: list[str]) -> npt.NDArray[np.float64]:
    """Each photo's evidence for its own label."""
    return np.array([float(rule.evidence(row, label)) for row, label in zip(imagenet, labels, strict=True)])


def cross_validated_flagged(
    imagenet: npt.NDArray[np.floating[Any]],
    labels: list[str],
    negatives_imagenet: npt.NDArray[np.floating[Any]],
    negatives_leaning: list[str],
    names: list[str],
    imagenet_names: list[str],
) -> list[str]:
    """The dataset photos flagged 'neither' by a rule fitted without their fold (same folds as the head's)."""
    flagged = []
    for train, test in StratifiedKFold(FOLDS, shuffle=True, random_state=0).split(imagenet, labels):
        rule = fit(imagenet[train], [labels[i] for i in train], negatives_imagenet, negatives_leaning, imagenet_names)
        flagged += [names[i] for i in test if float(rule.evidence(imagenet[i], labels[i])) < rule.threshold]
    return sorted(flagged)


def calibrate(
    dataset_imagenet: npt.NDArray[np.floating[Any]],
    dataset_labels: list[str],
    dataset_names: list[str],
    outputs_of: Callable[[npt.NDArray[np.float32]], tuple[npt.NDArray[np.floating[Any]], list[str]]],
    size: tuple[int, int],
    imagenet_names: list[str],
) -> dict[str, Any]:
    """The rule for the model card, with its measured rates.

    dataset_imagenet, dataset_labels, dataset_names: the dataset photos' ImageNet probabilities, true classes and
    names; outputs_of: model input arrays -> (ImageNet probabilities, the head's class for each); size: the
    model's input (width, height).
    """
    negatives = negative_photos()
    calibration, held_out = split(list(negatives))

    def outputs(names: list[str]) -> tuple[npt.NDArray[np.floating[Any]], list[str]]:
        return outputs_of(np.stack([images.decode(negatives[name], size) for name in names]))

    calibration_imagenet, calibration_leaning = outputs(calibration)
    held_out_imagenet, held_out_leaning = outputs(held_out)
    rule = fit(dataset_imagenet, dataset_labels, calibration_imagenet, calibration_leaning, imagenet_names)
    flagged = cross_validated_flagged(
        dataset_imagenet, dataset_labels, calibration_imagenet, calibration_leaning, dataset_names, imagenet_names
    )
    held_out_evidence = evidence(rule, held_out_imagenet, held_out_leaning)
    calibration_evidence = evidence(rule, calibration_imagenet, calibration_leaning)
    return {
        "rule": "the head's verdict stands when the ImageNet probability on its class's profile (the ImageNet "
        f"classes on which the dataset's photos of that class put on average at least {PROFILE_SHARE:.1%}) "
        "reaches the threshold; otherwise neither",
        "profile_share": PROFILE_SHARE,
        "profiles": rule.profiles,
        "profile_names": {label: [imagenet_names[i] for i in indices] for label, indices in rule.profiles.items()},
        "threshold": rule.threshold,
        "dog_classes": list(DOG_CLASSES),
        "dataset_flagged_share": len(flagged) / len(dataset_labels),
        "dataset_flagged_method": f"stratified {FOLDS}-fold cross-validation: profiles and threshold fitted without "
        "the photo's fold",
        "dataset_flagged": flagged,
        "heldout_negatives_caught_share": float((held_out_evidence < rule.threshold).mean()),
        "calibration_negatives_caught_share": float((calibration_evidence < rule.threshold).mean()),
        "negatives": {
            "source": "scikit-image and matplotlib sample pictures",
            "calibration": calibration,
            "held_out": held_out,
        },
        "missed_held_out_negatives": [
            name for name, e in zip(held_out, held_out_evidence, strict=True) if e >= rule.threshold
        ],
    }
