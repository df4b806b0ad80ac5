"""builders.neither: fitting the "neither" rule, its near misses, its curve and its operating point, honestly."""

import io

import numpy as np
import pytest
from PIL import Image

from builders import neither
from muffin_v_chihuahua import images

NAMES = [f"class {i}" for i in range(1000)]
NAMES[:3] = ["Chihuahua", "toy terrier", "Miniature Pinscher"]


def test_negative_samples_load_offline_as_images():
    photos = neither.negative_photos()
    expected = [*neither.NEGATIVE_SAMPLES, *(f"matplotlib-{f.rsplit('.', 1)[0]}" for f in neither.MATPLOTLIB_SAMPLES)]
    assert sorted(photos) == sorted(expected)
    for data in photos.values():
        with Image.open(io.BytesIO(data)) as picture:
            assert min(picture.size) >= 64


def test_the_sample_pictures_are_the_same_every_time():
    assert neither.negative_photos() == neither.negative_photos()


def test_split_is_deterministic_disjoint_and_halves():
    calibration, held_out = neither.split(list(neither.NEGATIVE_SAMPLES))
    assert not set(calibration) & set(held_out)
    assert sorted(calibration + held_out) == sorted(neither.NEGATIVE_SAMPLES)
    assert abs(len(calibration) - len(held_out)) <= 1
    assert neither.split(list(reversed(neither.NEGATIVE_SAMPLES))) == (calibration, held_out)


def test_every_augmentation_gives_a_model_input_that_differs_from_the_photo():
    picture = Image.new("RGB", (120, 90), (200, 120, 40))
    picture.paste((20, 40, 200), (10, 10, 50, 40))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    original = images.decode(buffer.getvalue(), (64, 64))
    copies = neither.augmented(buffer.getvalue(), (64, 64))
    assert len(copies) == len(neither.AUGMENTATIONS)
    for name, copy in zip(neither.AUGMENTATIONS, copies, strict=True):
        assert copy.shape == original.shape and np.abs(copy - original).mean() > 1, name


def looks(rng: np.random.Generator, centre: np.ndarray, label: str, count: int, logits_of) -> neither.Looks:
    features = np.maximum(centre + rng.normal(0, 0.3, (count, len(centre))), 0)
    return neither.Looks(features, np.stack([logits_of(f) for f in features]), [label] * count)


def test_the_similarity_scale_follows_the_class_imagenet_has():
    """ImageNet's chihuahua logit is made to rise 10 per unit of similarity to the dataset's chihuahuas: the fitted
    line finds that slope."""
    rng = np.random.default_rng(0)
    chihuahua_centre = np.zeros(16)
    chihuahua_centre[:4] = 3
    own = neither.aliases(NAMES)

    def logits_of(centre):
        def of(features):
            row = np.zeros(1000)
            row[0] = 10 * float(features @ centre / np.linalg.norm(features) / np.linalg.norm(centre))
            return row

        return of

    chihuahuas = looks(rng, chihuahua_centre, "chihuahua", 30, logits_of(chihuahua_centre))
    muffin_centre = np.roll(chihuahua_centre, 8)
    muffins = looks(rng, muffin_centre, "muffin", 30, logits_of(chihuahua_centre))
    others = looks(rng, np.full(16, 1.0), "muffin", 10, logits_of(chihuahua_centre))
    slope, _, correlation = neither.similarity_scale(chihuahuas.join(muffins), others, own)
    assert slope == pytest.approx(10, rel=0.05) and correlation > 0.99


def test_near_misses_are_the_photo_moved_to_its_likeliest_other_classes():
    rng = np.random.default_rng(1)
    weights = rng.normal(0, 1, (8, 1000))
    bias = np.zeros(1000)
    features = np.abs(rng.normal(0, 1, (2, 8)))
    photos = neither.Looks(features, features @ weights + bias, ["chihuahua", "muffin"])
    own = neither.aliases(NAMES)
    moved = neither.near_misses(photos, neither.ImageNet(NAMES, weights, bias), shift=3.0)
    assert moved.labels == ["chihuahua"] * neither.NEAR_MISSES + ["muffin"] * neither.NEAR_MISSES
    assert (moved.features >= 0).all()
    assert np.allclose(moved.logits, moved.features @ weights + bias)
    # Each near miss of a chihuahua is one of its likeliest classes that is not a chihuahua, moved towards it.
    likeliest = [i for i in np.argsort(photos.logits[0])[::-1] if i not in own["chihuahua"]][: neither.NEAR_MISSES]
    for row, rival in zip(moved.logits[: neither.NEAR_MISSES], likeliest, strict=True):
        others = np.delete(np.arange(1000), rival)
        gained = row[rival] - photos.logits[0, rival]
        assert gained > np.median(row[others] - photos.logits[0, others]) + 1


def test_the_curve_counts_below_the_threshold_as_flagged():
    found = {
        "dataset": np.array([3.0, 2.0, -4.0]),
        "augmented": np.array([1.0, -1.0]),
        "near_misses": np.array([-3.0, 0.5]),
        "negatives": np.array([-5.0]),
    }
    [point] = neither.curve(found, [0.5])  # margin 0
    assert point == {
        "threshold": 0.5,
        "dataset_flagged": pytest.approx(1 / 3),
        "augmented_flagged": 0.5,
        "near_misses_caught": 0.5,
        "negatives_caught": 1.0,
    }


def test_the_operating_point_is_the_highest_threshold_within_both_flagged_limits():
    points = [
        {"threshold": 0.1, "dataset_flagged": 0.0, "augmented_flagged": 0.01},
        {"threshold": 0.2, "dataset_flagged": 1 / 60, "augmented_flagged": 0.02},
        {"threshold": 0.3, "dataset_flagged": 1 / 60, "augmented_flagged": 0.03},
        {"threshold": 0.4, "dataset_flagged": 0.05, "augmented_flagged": 0.01},
    ]
    assert neither.choose_threshold(points) == 0.2
    assert neither.choose_threshold(points[2:]) == 0.3  # none within: the lowest, flagging the fewest


def test_cross_validation_never_lets_a_photo_vouch_for_itself():
    """Each muffin is unlike every other: in-sample each is its own nearest reference (similarity 1), but judged by
    a rule fitted without its fold none has a near neighbour, so every muffin's margin falls."""
    rng = np.random.default_rng(2)
    dimensions = 64
    chihuahua_centre = np.zeros(dimensions)
    chihuahua_centre[:4] = 3

    def of(features):
        row = np.zeros(1000)
        row[0] = 10 * float(features @ chihuahua_centre / np.linalg.norm(features) / np.linalg.norm(chihuahua_centre))
        row[500] = 2.0
        return row

    chihuahuas = looks(rng, chihuahua_centre, "chihuahua", 10, of)
    muffin_features = np.eye(dimensions)[8:18] * 3
    muffins = neither.Looks(muffin_features, np.stack([of(f) for f in muffin_features]), ["muffin"] * 10)
    dataset = chihuahuas.join(muffins)
    negatives = looks(rng, np.full(dimensions, 1.0), "muffin", 4, of)
    weights, bias = rng.normal(0, 0.1, (dimensions, 1000)), np.zeros(1000)
    imagenet = neither.ImageNet(NAMES, weights, bias)
    found = neither.cross_validated(dataset, [dataset], negatives, negatives, imagenet)
    in_sample = neither.margins(neither.fit(dataset, negatives, imagenet), muffins)
    assert (found["dataset"][10:] < in_sample - 1).all()
    assert len(found["augmented"]) == 20 and len(found["near_misses"]) == 20 * neither.NEAR_MISSES
