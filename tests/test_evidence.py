"""evidence: a verdict stands against its strongest ImageNet rival; otherwise "neither", saying what it looks like.

On constructed logits and pooled features, with the real class names and the rule of the built model's card.
"""

import json

import numpy as np
import pytest

from muffin_v_chihuahua.evidence import NEITHER, UNCLEAR_BELOW, EvidenceRule
from tests.servers import CARD, PACKAGE

NAMES = json.loads((PACKAGE / "model" / CARD["imagenet_class_names"]).read_text())
REFERENCES = np.load(PACKAGE / "model" / CARD["neither"]["references"]["file"])
RULE = EvidenceRule.from_card(CARD["neither"], REFERENCES, NAMES)
CHIHUAHUA, TOY_TERRIER, FRENCH_BULLDOG, PEKINGESE, BAGEL, ORANGE = (
    NAMES.index(name) for name in ("Chihuahua", "toy terrier", "French Bulldog", "Pekingese", "bagel", "orange")
)
MUFFIN = RULE.references["muffin"][0]  # a dataset muffin's features: similarity 1 to the nearest muffin
ELSEWHERE = np.ones_like(MUFFIN)  # features alike for every channel: far from every dataset muffin


def logits(placed: dict[int, float]) -> np.ndarray:
    """ImageNet logits: the given ones, 0 elsewhere (a softmax spreads what is left over 1000 classes)."""
    row = np.zeros(1000)
    for index, value in placed.items():
        row[index] = value
    return row


def test_the_card_names_the_classes_imagenet_has_and_the_muffins_it_lacks():
    assert set(RULE.aliases["chihuahua"]) == {CHIHUAHUA, TOY_TERRIER, NAMES.index("Miniature Pinscher")}
    assert RULE.aliases["muffin"] == [] and RULE.references["muffin"].shape[1] == REFERENCES.shape[1]
    assert np.allclose(np.linalg.norm(RULE.references["muffin"], axis=1), 1, atol=1e-5)
    slope, _ = RULE.similarity_scale
    assert slope > 0  # closer to the dataset's photos, more of a class


def test_a_chihuahua_stands_and_its_evidence_is_its_probability_against_the_strongest_rival():
    judged = RULE.judge(logits({CHIHUAHUA: 8, FRENCH_BULLDOG: 6}), ELSEWHERE, "chihuahua")
    assert judged.verdict == "chihuahua" and judged.reason is None
    margin = np.log(np.exp(8) + 2) - 6  # the aliases' log-sum-exp (Chihuahua 8, toy terrier and Pinscher 0) - 6
    assert judged.evidence == pytest.approx(1 / (1 + np.exp(-margin)))


def test_a_chihuahua_that_imagenet_calls_a_toy_terrier_is_still_a_chihuahua():
    assert RULE.judge(logits({TOY_TERRIER: 8, CHIHUAHUA: 5}), ELSEWHERE, "chihuahua").verdict == "chihuahua"


def test_a_french_bulldog_is_neither_and_the_reason_says_so():
    judged = RULE.judge(logits({FRENCH_BULLDOG: 12, CHIHUAHUA: 6}), ELSEWHERE, "chihuahua")
    assert judged.verdict == NEITHER
    assert judged.reason == "looks like a French Bulldog: a dog, but not a chihuahua"
    assert judged.evidence < RULE.threshold


def test_a_dog_the_head_calls_a_muffin_is_still_named_a_dog():
    assert RULE.judge(logits({PEKINGESE: 12}), ELSEWHERE, "muffin").reason == (
        "looks like a Pekingese: a dog, but not a chihuahua"
    )


def test_a_chihuahua_the_head_calls_a_muffin_is_not_called_not_a_chihuahua():
    assert RULE.judge(logits({CHIHUAHUA: 12}), ELSEWHERE, "muffin").reason == "looks like a Chihuahua, not a muffin"


def test_a_photo_like_the_dataset_muffins_is_a_muffin_even_where_imagenet_sees_some_bagel():
    slope, intercept = RULE.similarity_scale
    own = slope + intercept  # the muffin's logit at similarity 1
    assert RULE.judge(logits({BAGEL: own - 1}), MUFFIN, "muffin").verdict == "muffin"


def test_a_bagel_is_neither_however_muffin_like_its_features():
    slope, intercept = RULE.similarity_scale
    judged = RULE.judge(logits({BAGEL: slope + intercept + 6}), MUFFIN, "muffin")
    assert judged.verdict == NEITHER and judged.reason == "looks like a bagel, not a muffin"


def test_a_photo_far_from_every_dataset_muffin_needs_little_from_imagenet_to_be_neither():
    similarity = float(RULE.similarity(ELSEWHERE[np.newaxis], "muffin")[0])
    slope, intercept = RULE.similarity_scale
    judged = RULE.judge(logits({ORANGE: slope * similarity + intercept + 3}), ELSEWHERE, "muffin")
    assert judged.verdict == NEITHER and judged.reason == "looks like an orange, not a muffin"


def test_a_flat_output_whose_top_guess_is_the_class_is_the_class():
    """Issue 28: a chihuahua whose top ImageNet label is Chihuahua, at 2 %, was neither 'looking like a Chihuahua'."""
    flat = logits({CHIHUAHUA: 3, PEKINGESE: 2.5})
    assert np.exp(3) / np.exp(flat).sum() < 0.05
    assert RULE.judge(flat, ELSEWHERE, "chihuahua").verdict == "chihuahua"


def test_when_nothing_is_clear_the_reason_says_unclear_and_never_names_the_class():
    strict = RULE.with_threshold(0.999)
    judged = strict.judge(logits({PEKINGESE: 3, CHIHUAHUA: 1}), ELSEWHERE, "chihuahua")
    rival = np.exp(3) / np.exp(logits({PEKINGESE: 3, CHIHUAHUA: 1})).sum()
    assert rival < UNCLEAR_BELOW
    assert judged.verdict == NEITHER and judged.reason.startswith("unclear: it looks neither clearly like a chihuahua")
    assert "Chihuahua" not in judged.reason and "a Pekingese" in judged.reason


def test_the_threshold_is_the_boundary_and_can_be_moved():
    photo = logits({CHIHUAHUA: 8, FRENCH_BULLDOG: 7})
    evidence = float(RULE.evidence(photo[np.newaxis], ELSEWHERE[np.newaxis], "chihuahua")[0])
    assert evidence == pytest.approx(1 / (1 + np.exp(-1)), abs=1e-3)
    assert RULE.with_threshold(evidence - 1e-6).judge(photo, ELSEWHERE, "chihuahua").verdict == "chihuahua"
    assert RULE.with_threshold(evidence + 1e-6).judge(photo, ELSEWHERE, "chihuahua").verdict == NEITHER
    assert RULE.with_threshold(None) is RULE


def test_evidence_is_computed_per_photo_over_a_batch():
    batch = np.stack([logits({CHIHUAHUA: 9}), logits({FRENCH_BULLDOG: 9})])
    evidence = RULE.evidence(batch, np.stack([ELSEWHERE, ELSEWHERE]), "chihuahua")
    assert evidence.shape == (2,) and evidence[0] > 0.99 > 0.01 > evidence[1]
