"""Whether a photo is what the head says it is: the ImageNet evidence for a verdict, else "neither".

The head knows two classes, so it puts everything on muffin or chihuahua. The backbone's own ImageNet output
says what the photo looks like. Each class has a profile, measured on the dataset's own photos at build time
(builders/neither.py): the ImageNet classes its photos look like (the chihuahuas: Chihuahua, toy terrier,
Miniature Pinscher...; the muffins: pot pie, baguette, bagel, bakery...). The head's verdict stands only when
the ImageNet probability on that verdict's profile, its evidence, reaches the card's threshold; otherwise the
photo is neither, and the reason names what it looks like.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

NEITHER = "neither"


@dataclass(frozen=True)
class Judgement:
    verdict: str  # the head's class, or NEITHER
    evidence: float  # the ImageNet probability on the profile of the class the head chose
    reason: str | None  # why the photo is NEITHER, for a person


@dataclass(frozen=True)
class EvidenceRule:
    profiles: Mapping[str, Sequence[int]]  # class name -> the ImageNet classes its photos look like
    threshold: float  # the least evidence a verdict needs
    dog_classes: Sequence[int]  # ImageNet's dog breeds, to say "a dog, but not a chihuahua"
    imagenet_names: Sequence[str]

    @classmethod
    def from_card(cls, rule: Mapping[str, Any], imagenet_names: Sequence[str]) -> EvidenceRule:
        first, last = rule["dog_classes"]
        return cls(
            profiles={name: [int(i) for i in indices] for name, indices in rule["profiles"].items()},
            threshold=float(rule["threshold"]),
            dog_classes=range(int(first), int(last) + 1),
            imagenet_names=imagenet_names,
        )

    def evidence(self, imagenet: npt.NDArray[np.floating[Any]], label: str) -> npt.NDArray[np.floating[Any]]:
        """Per photo (the last axis is ImageNet's 1000 classes), the probability on `label`'s profile."""
        return np.asarray(imagenet[..., list(self.profiles[label])].sum(axis=-1))

    def judge(self, imagenet: npt.NDArray[np.floating[Any]], leaning: str) -> Judgement:
        """One photo's ImageNet probabilities and the head's verdict -> that verdict, or NEITHER and why."""
        evidence = float(self.evidence(imagenet, leaning))
        if evidence >= self.threshold:
            return Judgement(leaning, evidence, None)
        return Judgement(NEITHER, evidence, self._reason(imagenet, leaning, evidence))

    def _reason(self, imagenet: npt.NDArray[np.floating[Any]], leaning: str, evidence: float) -> str:
        top = int(np.argmax(imagenet))
        looks_like = f"looks like {_article(self.imagenet_names[top])}"
        if top in self.profiles[leaning]:  # what it looks like is in the profile, but spread too thin
            return f"not clearly a {leaning}: only {evidence:.0%} of ImageNet's probability is on what {leaning}s look like"
        if top in self.dog_classes:
            return f"{looks_like}: a dog, but not a chihuahua"
        return f"{looks_like}, not a {leaning}"


def _article(name: str) -> str:
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"
