"""evidence: a verdict stands only on ImageNet evidence for it; otherwise "neither", saying what the photo looks like.

On constructed ImageNet outputs, with the real class names and the profiles of the built model's card.
"""

import json

import numpy as np
import pytest

from muffin_v_chihuahua.evidence import NEITHER, EvidenceRule
from tests.servers import CARD, PACKAGE

NAMES = json.loads((PACKAGE / "model" / CARD["imagenet_class_names"]).read_text())
RULE = EvidenceRule.from_card(CARD["neither"], NAMES)
CHIHUAHUA, TOY_TERRIER, PEKINGESE, BAGEL, ORANGE, GRANNY_SMITH = (
    NAMES.index(name) for name in ("Chihuahua", "toy terrier", "Pekingese", "bagel", "orange", "Granny Smith apple")
)


def imagenet(placed: dict[int, float]) -> np.ndarray:
    """A distribution with the given probabilities on some classes (by index) and the rest spread evenly."""
    distribution = np.full(1000, (1 - sum(placed.values())) / (1000 - len(placed)), dtype=np.float32)
    for index, probability in placed.items():
        distribution[index] = probability
    return distribution


def test_the_profiles_are_what_the_dataset_looks_like_not_every_dog_or_food():
    assert {CHIHUAHUA, TOY_TERRIER} <= set(RULE.profiles["chihuahua"])
    assert BAGEL in RULE.profiles["muffin"]
    assert PEKINGESE not in RULE.profiles["chihuahua"]
    assert not {ORANGE, GRANNY_SMITH} & set(RULE.profiles["muffin"])


def test_a_chihuahua_stands_and_carries_its_evidence():
    judged = RULE.judge(imagenet({CHIHUAHUA: 0.9}), "chihuahua")
    assert judged.verdict == "chihuahua" and judged.reason is None
    assert judged.evidence == pytest.approx(0.9, abs=0.01)


def test_a_chihuahua_that_imagenet_calls_a_toy_terrier_is_still_a_chihuahua():
    judged = RULE.judge(imagenet({TOY_TERRIER: 0.7, CHIHUAHUA: 0.1}), "chihuahua")
    assert judged.verdict == "chihuahua"


def test_a_muffin_that_imagenet_calls_a_bagel_is_still_a_muffin():
    assert RULE.judge(imagenet({BAGEL: 0.6}), "muffin").verdict == "muffin"


def test_a_dog_that_is_not_a_chihuahua_is_neither_and_the_reason_says_so():
    judged = RULE.judge(imagenet({PEKINGESE: 0.85, CHIHUAHUA: 0.02}), "chihuahua")
    assert judged.verdict == NEITHER
    assert judged.reason == "looks like a Pekingese: a dog, but not a chihuahua"
    assert judged.evidence < RULE.threshold


def test_a_dog_the_head_calls_a_muffin_is_still_named_a_dog():
    assert RULE.judge(imagenet({PEKINGESE: 0.85}), "muffin").reason == (
        "looks like a Pekingese: a dog, but not a chihuahua"
    )


@pytest.mark.parametrize(("fruit", "article"), [(ORANGE, "an"), (GRANNY_SMITH, "a")])
def test_fruit_is_not_a_muffin(fruit, article):
    judged = RULE.judge(imagenet({fruit: 0.8}), "muffin")
    assert judged.verdict == NEITHER
    assert judged.reason == f"looks like {article} {NAMES[fruit]}, not a muffin"


def test_an_almost_flat_distribution_is_neither_even_when_its_top_guess_is_in_the_profile():
    judged = RULE.judge(imagenet({CHIHUAHUA: 0.01}), "chihuahua")
    assert judged.verdict == NEITHER
    assert judged.reason.startswith("not clearly a chihuahua: only 1% of ImageNet's probability")


def test_the_threshold_is_the_boundary():
    def bagel(probability: float) -> np.ndarray:  # the rest on an orange, outside both profiles
        return imagenet({BAGEL: probability, ORANGE: 1 - probability})

    assert RULE.judge(bagel(RULE.threshold + 1e-3), "muffin").verdict == "muffin"
    assert RULE.judge(bagel(RULE.threshold - 1e-3), "muffin").verdict == NEITHER


def test_evidence_is_computed_per_photo_over_a_batch():
    batch = np.stack([imagenet({BAGEL: 0.5}), imagenet({ORANGE: 0.5})])
    evidence = RULE.evidence(batch, "muffin")
    assert evidence.shape == (2,) and evidence[0] > 0.5 > 0.1 > evidence[1]
