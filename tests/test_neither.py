"""builders.neither: calibrating the 'neither' rule."""

import numpy as np
import pytest

from builders import neither
from muffin_v_chihuahua.classifier import domain_mass


def test_negative_samples_load_offline_as_images():
    photos = neither.negative_photos()
    assert sorted(photos) == sorted(neither.NEGATIVE_SAMPLES)
    assert all(data.startswith(b"\x89PNG") for data in photos.values())


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


def test_domain_mass_sums_the_listed_inclusive_ranges():
    probabilities = np.zeros((1, 1000))
    probabilities[0, [151, 268, 415, 500]] = 0.25
    assert domain_mass(probabilities, [[151, 268], [415, 415]])[0] == 0.75
