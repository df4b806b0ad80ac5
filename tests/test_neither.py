"""builders.neither: learning the 'neither' rule's profiles and threshold, and measuring it honestly."""

import io

import numpy as np
import pytest
from PIL import Image

from builders import neither

NAMES = [f"class {i}" for i in range(1000)]


def test_negative_samples_load_offline_as_images():
    photos = neither.negative_photos()
    expected = [*neither.NEGATIVE_SAMPLES, *(f"matplotlib-{f.rsplit('.', 1)[0]}" for f in neither.MATPLOTLIB_SAMPLES)]
    assert sorted(photos) == sorted(expected)
    for data in photos.values():
        with Image.open(io.BytesIO(data)) as picture:
            assert min(picture.size) >= 64


def test_split_is_deterministic_disjoint_and_halves():
    calibration, held_out = neither.split(list(neither.NEGATIVE_SAMPLES))
    assert not set(calibration) & set(held_out)
    assert sorted(calibration + held_out) == sorted(neither.NEGATIVE_SAMPLES)
    assert abs(len(calibration) - len(held_out)) <= 1
    assert neither.split(list(reversed(neither.NEGATIVE_SAMPLES))) == (calibration, held_out)


def youden(threshold: float, in_domain: np.ndarray, negatives: np.ndarray) -> float:
    """Negatives caught share minus dataset photos flagged share, flagging masses below the threshold."""
    return float((negatives < threshold).mean() - (in_domain < threshold).mean())


def test_threshold_is_midway_between_the_two_separated_groups():
    threshold = neither.choose_threshold(np.array([0.3, 0.5, 0.9]), np.array([0.01, 0.05, 0.2]))
    assert threshold == pytest.approx(0.25)


def test_threshold_ties_go_to_flagging_the_fewest_dataset_photos():
    in_domain, negatives = np.array([0.3, 0.5, 0.7, 0.9]), np.array([0.1, 0.4, 0.6, 0.8])
    # J is 0.25 midway between 0.1 and 0.3, 0.4 and 0.5, 0.6 and 0.7, 0.8 and 0.9: the first flags no dataset photo.
    assert neither.choose_threshold(in_domain, negatives) == pytest.approx(0.2)


def test_threshold_matches_a_brute_force_search_and_never_lies_on_an_observed_value():
    rng = np.random.default_rng(0)
    for _ in range(200):
        # Masses on a 0.01 grid, so ties are common; every threshold k/100 + 0.005 sits between grid points.
        in_domain, negatives = rng.integers(0, 100, 6) / 100, rng.integers(0, 100, 4) / 100
        observed = np.unique(np.concatenate([in_domain, negatives]))
        if len(observed) < 2:
            continue
        # Every threshold that flags some photos but not all, lowest first, so max() keeps the first best.
        candidates = [t for t in np.arange(100) / 100 + 0.005 if observed[0] < t < observed[-1]]
        expected = max(candidates, key=lambda t: youden(t, in_domain, negatives))

        threshold = neither.choose_threshold(in_domain, negatives)

        assert youden(threshold, in_domain, negatives) == youden(expected, in_domain, negatives)
        assert ((in_domain < threshold) == (in_domain < expected)).all()  # the same photos flagged
        below, above = observed[observed < threshold].max(), observed[observed > threshold].min()
        assert threshold == pytest.approx((below + above) / 2) and threshold not in observed


def distribution(placed: dict[int, float]) -> np.ndarray:
    """ImageNet probabilities: the given ones, the rest on class 999 (in no profile below)."""
    row = np.zeros(1000)
    for index, probability in placed.items():
        row[index] = probability
    row[999] = 1 - row.sum()
    return row


def test_a_profile_is_the_classes_a_class_puts_at_least_the_profile_share_on_on_average():
    # Class 1 carries the chihuahuas; class 2 gets 0.4 % on average (below 0.5 %); class 3 exactly 0.5 %.
    photos = np.stack([distribution({1: 0.9, 2: 0.008, 3: 0.01}), distribution({1: 0.8, 3: 0.0})])
    muffins = np.stack([distribution({10: 0.5})])
    profiles = neither.profiles(np.concatenate([photos, muffins]), ["chihuahua", "chihuahua", "muffin"])
    assert profiles == {"chihuahua": [1, 3, 999], "muffin": [10, 999]}


def test_fit_puts_the_threshold_between_the_dataset_and_the_negatives():
    dataset = np.stack(
        [distribution({1: 0.9}), distribution({1: 0.6}), distribution({10: 0.7}), distribution({10: 0.4})]
    )
    labels = ["chihuahua", "chihuahua", "muffin", "muffin"]
    negatives = np.stack([distribution({1: 0.1}), distribution({10: 0.2}), distribution({500: 0.9})])
    rule = neither.fit(dataset[:, :999], labels, negatives[:, :999], ["chihuahua", "muffin", "muffin"], NAMES)
    assert rule.profiles == {"chihuahua": [1], "muffin": [10]}  # class 999 cut off: in no profile
    assert rule.threshold == pytest.approx(0.3)  # midway between the negatives' 0.2 and the dataset's 0.4


def test_the_flagged_share_is_cross_validated_a_photo_never_vouches_for_itself():
    """Each muffin looks like a class of its own: in-sample every one passes, but a rule fitted without a photo
    has never seen its class, so cross-validation flags them all."""
    chihuahuas = [distribution({1: 0.9}) for _ in range(10)]
    muffins = [distribution({100 + i: 0.9}) for i in range(10)]
    imagenet = np.stack(chihuahuas + muffins)[:, :999]
    labels = ["chihuahua"] * 10 + ["muffin"] * 10
    names = [f"{label}/{i}.jpg" for i, label in enumerate(labels)]
    negatives, leaning = np.stack([distribution({500: 0.9})])[:, :999], ["muffin"]

    in_sample = neither.fit(imagenet, labels, negatives, leaning, NAMES)
    assert all(
        in_sample.evidence(row, label) >= in_sample.threshold for row, label in zip(imagenet, labels, strict=True)
    )
    assert neither.cross_validated_flagged(imagenet, labels, negatives, leaning, names, NAMES) == sorted(names[10:])
