"""builders.neither: calibrating the 'neither' rule."""

import numpy as np

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


def test_threshold_separates_and_prefers_flagging_fewer_real_photos():
    in_domain, negatives = np.array([0.3, 0.5, 0.9]), np.array([0.01, 0.05, 0.2])
    threshold = neither.choose_threshold(in_domain, negatives)
    assert 0.2 < threshold <= 0.3
    overlapping = neither.choose_threshold(np.array([0.1, 0.6, 0.9]), np.array([0.05, 0.2]))
    assert (np.array([0.6, 0.9]) >= overlapping).all() and overlapping > 0.05


def test_domain_mass_sums_the_listed_inclusive_ranges():
    probabilities = np.zeros((1, 1000))
    probabilities[0, [151, 268, 415, 500]] = 0.25
    assert domain_mass(probabilities, [[151, 268], [415, 415]])[0] == 0.75
