"""Learn the "neither" rule (muffin_v_chihuahua/evidence.py) from the dataset, and measure it honestly.

A verdict stands when its class is nearly as likely as its strongest ImageNet rival. A class ImageNet has (the
chihuahua) scores ImageNet's own logits; a class it lacks (the muffin) scores the cosine similarity to the nearest of
its dataset photos, put on ImageNet's logit scale by a line fitted where both exist: ImageNet's chihuahua logit
against the similarity to the dataset's chihuahuas. What is measured, all cross-validated (a photo's own fold fits
nothing that judges it):
- the dataset photos flagged, and their augmented copies flagged (flipped, shrunk on a canvas, cropped, blurred,
  turned, darkened, greyed, re-encoded: photos less alike than the dataset's own, as users' are);
- near misses caught: every photo moved in feature space, along ImageNet's own classifier weights, from what ImageNet
  sees in it to each of its five likeliest ImageNet classes that are not its class (a muffin made a bagel, a
  chihuahua a French bulldog), as far as ImageNet's weights explain the features (neural collapse: Papyan et al.
  2020); no photo of a bagel or a French bulldog is needed;
- sample pictures that are neither (scikit-image's and matplotlib's), half calibrating, half held out.
The threshold is the operating point on that curve: the highest that flags at most 1 dataset photo in 60 and at most
2 % of the augmented copies.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter, ImageOps
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from muffin_v_chihuahua import images
from muffin_v_chihuahua.evidence import EvidenceRule, log_sum_exp

# The ImageNet classes that are a class: a chihuahua is ImageNet's Chihuahua, and a photo cannot tell it from a toy
# terrier or a Miniature Pinscher (the README says so). ImageNet has no muffin.
ALIASES = {"chihuahua": ("Chihuahua", "toy terrier", "Miniature Pinscher"), "muffin": ()}
DOG_CLASSES = (151, 268)  # ImageNet's dog breeds, inclusive: for the reason's words only
FOLDS = 5
NEAR_MISSES = 5  # each photo's likeliest ImageNet classes that are not its class, made into near misses
# The operating point: the highest threshold that flags at most this share of the dataset photos (cross-validated)
# and of their augmented copies.
MAX_DATASET_FLAGGED = 1 / 60
MAX_AUGMENTED_FLAGGED = 0.02
THRESHOLDS = tuple(round(0.01 * i, 2) for i in range(1, 100))  # the evidence thresholds the curve is measured at
CURVE_IN_CARD = (0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
REFERENCES_FILE = "neither_references.npy"
GREY = (128, 128, 128)


def _pasted(image: Image.Image, scale: float, where: tuple[float, float]) -> Image.Image:
    """The photo at its size on a grey canvas 1/scale times as large, at `where` (fractions of the free space)."""
    canvas = Image.new("RGB", (int(image.width / scale), int(image.height / scale)), GREY)
    canvas.paste(image, (int(where[0] * (canvas.width - image.width)), int(where[1] * (canvas.height - image.height))))
    return canvas


def _reencoded(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(buffer)


# Photos less alike than the dataset's own, as users' are: far away, cropped close, blurred, tilted, in poor light.
AUGMENTATIONS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "flipped": ImageOps.mirror,
    "a third of a canvas": lambda image: _pasted(image, 1 / 3, (0.5, 0.5)),
    "half of a canvas, in a corner": lambda image: _pasted(image, 1 / 2, (0.2, 0.8)),
    "cropped to the middle 60 %": lambda image: image.crop(
        (image.width // 5, image.height // 5, image.width * 4 // 5, image.height * 4 // 5)
    ),
    "greyscale": lambda image: ImageOps.grayscale(image).convert("RGB"),
    "blurred": lambda image: image.filter(ImageFilter.GaussianBlur(3)),
    "turned 20 degrees": lambda image: image.rotate(20, expand=True, fillcolor=(255, 255, 255)),
    "half as bright": lambda image: image.point(lambda value: value // 2),
    "JPEG quality 10": lambda image: _reencoded(image, 10),
}


def augmented(photo: bytes, size: tuple[int, int]) -> list[npt.NDArray[np.float32]]:
    """The photo's model inputs under each of AUGMENTATIONS, each encoded as PNG and decoded as an upload is."""
    arrays = []
    for augment in AUGMENTATIONS.values():
        buffer = io.BytesIO()
        augment(images.open_rgb(photo)).convert("RGB").save(buffer, format="PNG")
        arrays.append(images.decode(buffer.getvalue(), size))
    return arrays


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
            # binary_blobs draws new blobs at each call unless given a generator: the same picture every build.
            made = skimage.data.binary_blobs(rng=0) if name == "binary_blobs" else getattr(skimage.data, name)()
            pixels = np.asarray(made)
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


Floats = npt.NDArray[np.floating[Any]]


class Looks(NamedTuple):
    """What the rule judges, for N photos, and the class each is judged for."""

    features: Floats  # pooled (N, C)
    logits: Floats  # ImageNet (N, 1000)
    labels: list[str]  # the true class (dataset photos), or the head's (pictures that are neither)

    def take(self, rows: Sequence[int] | npt.NDArray[np.integer[Any]]) -> Looks:
        return Looks(self.features[rows], self.logits[rows], [self.labels[i] for i in rows])

    def join(self, other: Looks) -> Looks:
        return Looks(
            np.concatenate([self.features, other.features]),
            np.concatenate([self.logits, other.logits]),
            self.labels + other.labels,
        )


def aliases(imagenet_names: Sequence[str]) -> dict[str, list[int]]:
    return {label: [imagenet_names.index(name) for name in names] for label, names in ALIASES.items()}


@dataclass(frozen=True)
class ImageNet:
    """The backbone's ImageNet layer: its class names, which the rule names rivals and finds a class's aliases by,
    and its weights (C, 1000) and bias, along which near misses are made."""

    names: Sequence[str]
    weights: Floats
    bias: Floats

    @property
    def aliases(self) -> dict[str, list[int]]:
        return aliases(self.names)


def unit(features: Floats) -> npt.NDArray[np.float64]:
    features = np.asarray(features, dtype=np.float64)
    return np.asarray(features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12))


def similarity_scale(dataset: Looks, negatives: Looks, own: Mapping[str, Sequence[int]]) -> tuple[float, float, float]:
    """The least-squares line from cosine similarity to ImageNet logit, where both exist: over the dataset photos and
    the negatives, a class ImageNet has, its ImageNet logit (log-sum-exp over its aliases) against the similarity to
    the nearest of its dataset photos (a photo's own left out). Returns (slope, intercept, correlation)."""
    label = next(label for label in sorted(own) if own[label])
    known = np.flatnonzero(np.array(dataset.labels) == label)
    every = dataset.join(negatives)
    similarities = unit(every.features) @ unit(dataset.features[known]).T
    similarities[known, np.arange(len(known))] = -np.inf  # no photo is its own nearest
    nearest = similarities.max(axis=1)
    logit = log_sum_exp(np.asarray(every.logits, dtype=np.float64)[:, list(own[label])])
    slope, intercept = np.polyfit(nearest, logit, 1)
    return float(slope), float(intercept), float(np.corrcoef(nearest, logit)[0, 1])


def fit(dataset: Looks, negatives: Looks, imagenet: ImageNet, threshold: float = 0.5) -> EvidenceRule:
    """The rule from the dataset photos (references, and with the negatives the similarity's scale)."""
    own = imagenet.aliases
    labels = np.array(dataset.labels)
    references = {label: unit(dataset.features[labels == label]) for label in sorted(own) if not own[label]}
    slope, intercept, _ = similarity_scale(dataset, negatives, own)
    dogs = range(DOG_CLASSES[0], DOG_CLASSES[1] + 1)
    return EvidenceRule(own, references, (slope, intercept), threshold, dogs, imagenet.names)


def margins(rule: EvidenceRule, looks: Looks) -> npt.NDArray[np.float64]:
    """Each photo's margin for the class it is judged for (its logit minus its strongest rival's)."""
    labels = np.array(looks.labels)
    result = np.zeros(len(labels))
    for label in set(looks.labels):
        rows = labels == label
        result[rows] = rule.margins(looks.logits[rows], looks.features[rows], label)
    return result


def softmax(logits: Floats) -> npt.NDArray[np.float64]:
    values = np.asarray(logits, dtype=np.float64)
    return np.asarray(np.exp(values - log_sum_exp(values)[:, np.newaxis]))


def collapse_scale(features: Floats, logits: Floats, weights: Floats) -> float:
    """How far pooled features move along ImageNet's class weights (centred) per unit of what ImageNet sees in them:
    the least-squares s in features ~ mean + s * (ImageNet probabilities @ centred weights.T)."""
    seen = softmax(logits) @ (weights - weights.mean(axis=1, keepdims=True)).T
    seen, features = seen - seen.mean(axis=0), features - features.mean(axis=0)
    return float((seen * features).sum() / (seen * seen).sum())


def near_misses(looks: Looks, imagenet: ImageNet, shift: float) -> Looks:
    """Each photo moved from what ImageNet sees in it to each of its NEAR_MISSES likeliest ImageNet classes that are
    not its class: features + shift * (that class's centred weights - the probability-weighted mean of them), kept
    non-negative as pooled activations are. Its logits follow from ImageNet's layer; it is judged for its class."""
    own = imagenet.aliases
    centred = imagenet.weights - imagenet.weights.mean(axis=1, keepdims=True)
    probabilities = softmax(looks.logits)
    moved, labels = [], []
    for features, row, label in zip(looks.features, probabilities, looks.labels, strict=True):
        rivals = [int(i) for i in np.argsort(row)[::-1] if i not in own[label]][:NEAR_MISSES]
        moved += [np.maximum(features + shift * (centred[:, i] - centred @ row), 0) for i in rivals]
        labels += [label] * len(rivals)
    features = np.stack(moved)
    return Looks(features, features @ imagenet.weights + imagenet.bias, labels)


def cross_validated(
    dataset: Looks,
    augmented_copies: Sequence[Looks],
    calibration: Looks,
    held_out: Looks,
    imagenet: ImageNet,
) -> dict[str, npt.NDArray[np.float64]]:
    """Margins judged by rules fitted without the photo's fold (the head's folds): the dataset photos, their
    augmented copies, their near misses, and the held-out pictures that are neither."""
    shift = collapse_scale(dataset.features, dataset.logits, imagenet.weights)
    found: dict[str, list[npt.NDArray[np.float64]]] = {
        "dataset": [],
        "augmented": [],
        "near_misses": [],
        "negatives": [],
    }
    order = []
    for train, test in StratifiedKFold(FOLDS, shuffle=True, random_state=0).split(dataset.features, dataset.labels):
        rule = fit(dataset.take(train), calibration, imagenet)
        order.append(test)
        found["dataset"].append(margins(rule, dataset.take(test)))
        found["augmented"] += [margins(rule, copies.take(test)) for copies in augmented_copies]
        found["near_misses"].append(margins(rule, near_misses(dataset.take(test), imagenet, shift)))
        found["negatives"].append(margins(rule, held_out))
    by_photo = np.empty(len(dataset.labels))
    by_photo[np.concatenate(order)] = np.concatenate(found["dataset"])
    return {"dataset": by_photo} | {key: np.concatenate(found[key]) for key in found if key != "dataset"}


def evidence_of(margin: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(1 / (1 + np.exp(-margin)))


def curve(found: Mapping[str, npt.NDArray[np.float64]], thresholds: Sequence[float]) -> list[dict[str, float]]:
    """At each evidence threshold: the shares of dataset photos and augmented copies flagged, and of near misses and
    held-out negatives caught (all flagged: below the threshold)."""
    evidence = {key: evidence_of(values) for key, values in found.items()}
    return [
        {
            "threshold": float(threshold),
            "dataset_flagged": float((evidence["dataset"] < threshold).mean()),
            "augmented_flagged": float((evidence["augmented"] < threshold).mean()),
            "near_misses_caught": float((evidence["near_misses"] < threshold).mean()),
            "negatives_caught": float((evidence["negatives"] < threshold).mean()),
        }
        for threshold in thresholds
    ]


def choose_threshold(points: Sequence[Mapping[str, float]]) -> float:
    """The highest threshold (the most near misses caught) within the flagged limits; the lowest if none is."""
    within = [
        point["threshold"]
        for point in points
        if point["dataset_flagged"] <= MAX_DATASET_FLAGGED + 1e-9
        and point["augmented_flagged"] <= MAX_AUGMENTED_FLAGGED
    ]
    return max(within, default=min(point["threshold"] for point in points))


def calibrate(
    dataset: Looks,
    names: list[str],
    augmented_copies: Sequence[Looks],
    looks_of: Callable[[npt.NDArray[np.float32]], Looks],
    size: tuple[int, int],
    imagenet: ImageNet,
) -> tuple[dict[str, Any], npt.NDArray[np.float32]]:
    """The rule for the model card, with its measured rates, and its references (the array the card's file holds).

    dataset, names: the dataset photos (true classes) and their names; augmented_copies: per augmentation, the same
    photos augmented, in the same order; looks_of: model input arrays -> Looks judged for the head's class; size: the
    model's input (width, height); imagenet: the backbone's ImageNet layer.
    """
    negatives = negative_photos()
    calibration_names, held_out_names = split(list(negatives))

    def negative_looks(chosen: list[str]) -> Looks:
        return looks_of(np.stack([images.decode(negatives[name], size) for name in chosen]))

    calibration, held_out = negative_looks(calibration_names), negative_looks(held_out_names)
    found = cross_validated(dataset, augmented_copies, calibration, held_out, imagenet)
    threshold = choose_threshold(curve(found, THRESHOLDS))
    rule = fit(dataset, calibration, imagenet, threshold)
    slope, intercept, correlation = similarity_scale(dataset, calibration, rule.aliases)
    at = curve(found, [threshold])[0]
    flagged = [name for name, margin in zip(names, found["dataset"], strict=True) if evidence_of(margin) < threshold]
    held_out_evidence = evidence_of(margins(rule, held_out))
    rows, first = {}, 0
    for label, reference in rule.references.items():
        rows[label] = [first, first + len(reference)]
        first += len(reference)
    entry = {
        "rule": "the head's verdict stands when its evidence, its class's probability against its strongest ImageNet "
        "rival (sigmoid of the class's logit minus the rival's), reaches the threshold; otherwise neither. A class "
        "ImageNet has scores ImageNet's logits for its aliases; a class it lacks scores slope * (cosine similarity "
        "of the pooled features to the nearest reference photo of the class) + intercept",
        "aliases": rule.aliases,
        "alias_names": {label: list(ALIASES[label]) for label in rule.aliases},
        "references": {
            "file": REFERENCES_FILE,
            "rows": rows,
            "what": "the dataset photos' pooled features, unit length",
        },
        "similarity_scale": {
            "slope": slope,
            "intercept": intercept,
            "correlation": correlation,
            "fitted": "least squares over the dataset photos and the calibration pictures: ImageNet's chihuahua logit "
            "(log-sum-exp over its aliases) against the cosine similarity to the nearest dataset chihuahua",
        },
        "threshold": threshold,
        "threshold_rule": f"the highest threshold that flags at most {MAX_DATASET_FLAGGED:.2%} of the dataset photos "
        f"and at most {MAX_AUGMENTED_FLAGGED:.0%} of their augmented copies (cross-validated), so as to catch the most "
        "near misses",
        "dog_classes": list(DOG_CLASSES),
        "dataset_flagged_share": at["dataset_flagged"],
        "dataset_flagged_method": f"stratified {FOLDS}-fold cross-validation: references and scale fitted without the "
        "photo's fold",
        "dataset_flagged": flagged,
        "augmented_flagged_share": at["augmented_flagged"],
        "augmentations": list(AUGMENTATIONS),
        "near_misses_caught_share": at["near_misses_caught"],
        "near_misses": f"each dataset photo moved in feature space from what ImageNet sees in it to each of its "
        f"{NEAR_MISSES} likeliest ImageNet classes that are not its class, as far as ImageNet's weights explain the "
        "features (the least-squares scale of features on the probability-weighted centred class weights); a hard "
        "test, since the photo keeps all that ImageNet's weights do not explain",
        "heldout_negatives_caught_share": float((held_out_evidence < threshold).mean()),
        "calibration_negatives_caught_share": float((evidence_of(margins(rule, calibration)) < threshold).mean()),
        "missed_held_out_negatives": [
            name for name, evidence in zip(held_out_names, held_out_evidence, strict=True) if evidence >= threshold
        ],
        "separation": {
            f"auroc_dataset_vs_{key}": float(
                roc_auc_score(
                    np.r_[np.ones(len(found["dataset"])), np.zeros(len(found[key]))],
                    np.r_[found["dataset"], found[key]],
                )
            )
            for key in ("near_misses", "negatives")
        },
        "curve": curve(found, sorted({*CURVE_IN_CARD, threshold})),
        "negatives": {
            "source": "scikit-image and matplotlib sample pictures",
            "calibration": calibration_names,
            "held_out": held_out_names,
        },
    }
    references = np.concatenate(list(rule.references.values())).astype(np.float32)
    return entry, references
