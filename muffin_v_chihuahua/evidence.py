"""Whether a photo is what the head says it is: its class against its strongest ImageNet rival, else "neither".

The head knows two classes, so it puts everything on muffin or chihuahua. The backbone's ImageNet classifier knows
a thousand others, the near misses among them (bagel, French loaf, pot pie, French bulldog, pug...), on the same
pooled features. So the class the head chose is scored on ImageNet's logit scale and set against the most likely
ImageNet class that is not it, its strongest rival:
- a class ImageNet has (the chihuahua: ImageNet's Chihuahua, and the toy terrier and Miniature Pinscher it cannot be
  told from in a photo) scores ImageNet's own logits for it;
- a class ImageNet lacks (the muffin) scores how close the photo is to the dataset's own photos of it: the cosine
  similarity of its pooled features to the nearest of them (Sun et al. 2022), put on ImageNet's logit scale by the
  line along which ImageNet's chihuahua logit follows the same similarity to the dataset's chihuahuas.
The evidence is the class's probability against that rival, sigmoid(class logit - rival logit). Below the card's
threshold the photo is neither, and the reason names the rival (builders/neither.py measures and chooses it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

NEITHER = "neither"
# A rival under this ImageNet probability is no more than ImageNet's best guess on a photo it finds unclear: the
# reason says so rather than name it.
UNCLEAR_BELOW = 0.1

Floats = npt.NDArray[np.floating[Any]]


@dataclass(frozen=True)
class Judgement:
    verdict: str  # the head's class, or NEITHER
    evidence: float  # the head's class's probability against its strongest ImageNet rival
    reason: str | None  # why the photo is NEITHER, for a person


@dataclass(frozen=True)
class EvidenceRule:
    aliases: Mapping[str, Sequence[int]]  # class -> the ImageNet classes that are it (none for a class ImageNet lacks)
    references: Mapping[str, Floats]  # class ImageNet lacks -> its dataset photos' pooled features, unit length
    similarity_scale: tuple[float, float]  # (slope, intercept): nearest-photo cosine similarity -> ImageNet logit
    threshold: float  # the least evidence a verdict needs
    dog_classes: Sequence[int]  # ImageNet's dog breeds, to say "a dog, but not a chihuahua"
    imagenet_names: Sequence[str]

    @classmethod
    def from_card(cls, rule: Mapping[str, Any], references: Floats, imagenet_names: Sequence[str]) -> EvidenceRule:
        """The card's "neither" entry, with the array its references file holds (rows [first, last) per class)."""
        first, last = rule["dog_classes"]
        scale = rule["similarity_scale"]
        return cls(
            aliases={name: [int(i) for i in indices] for name, indices in rule["aliases"].items()},
            references={name: references[int(a) : int(b)] for name, (a, b) in rule["references"]["rows"].items()},
            similarity_scale=(float(scale["slope"]), float(scale["intercept"])),
            threshold=float(rule["threshold"]),
            dog_classes=range(int(first), int(last) + 1),
            imagenet_names=imagenet_names,
        )

    def with_threshold(self, threshold: float | None) -> EvidenceRule:
        """The same rule at another operating point (None: this one)."""
        return self if threshold is None else replace(self, threshold=threshold)

    def margins(self, logits: Floats, features: Floats, label: str) -> npt.NDArray[np.float64]:
        """Per photo (logits (N, 1000), pooled features (N, C)): `label`'s logit minus its strongest rival's."""
        values = np.asarray(logits, dtype=np.float64)
        own = list(self.aliases[label])
        if own:
            score = log_sum_exp(values[:, own])
        else:
            slope, intercept = self.similarity_scale
            score = slope * self.similarity(features, label) + intercept
        return np.asarray(score - self._rivals(values, label).max(axis=1))

    def similarity(self, features: Floats, label: str) -> npt.NDArray[np.float64]:
        """Per photo, the cosine similarity of its pooled features to the nearest reference photo of `label`."""
        features = np.asarray(features, dtype=np.float64)
        norms = np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
        return np.asarray((features / norms @ np.asarray(self.references[label], dtype=np.float64).T).max(axis=1))

    def evidence(self, logits: Floats, features: Floats, label: str) -> npt.NDArray[np.float64]:
        """Per photo, `label`'s probability against its strongest rival."""
        return np.asarray(1 / (1 + np.exp(-self.margins(logits, features, label))))

    def judge(self, logits: Floats, features: Floats, leaning: str) -> Judgement:
        """One photo's ImageNet logits and pooled features, and the head's class -> that class, or NEITHER and why."""
        evidence = float(self.evidence(logits[np.newaxis], features[np.newaxis], leaning)[0])
        if evidence >= self.threshold:
            return Judgement(leaning, evidence, None)
        return Judgement(NEITHER, evidence, self._reason(np.asarray(logits, dtype=np.float64), leaning))

    def _rivals(self, logits: npt.NDArray[np.float64], label: str) -> npt.NDArray[np.float64]:
        """The logits with `label`'s own ImageNet classes left out (-inf)."""
        rivals = logits.copy()
        rivals[..., list(self.aliases[label])] = -np.inf
        return rivals

    def _reason(self, logits: npt.NDArray[np.float64], leaning: str) -> str:
        rival = int(np.argmax(self._rivals(logits, leaning)))
        probability = float(1 / np.exp(logits - logits[rival]).sum())  # its softmax probability
        name = self.imagenet_names[rival]
        if probability < UNCLEAR_BELOW:
            return (
                f"unclear: it looks neither clearly like a {leaning} nor like anything else "
                f"(ImageNet's best guess, {_article(name)}, has {probability:.0%})"
            )
        is_a_class = any(rival in indices for indices in self.aliases.values())
        if rival in self.dog_classes and not is_a_class:
            return f"looks like {_article(name)}: a dog, but not a chihuahua"
        return f"looks like {_article(name)}, not a {leaning}"


def log_sum_exp(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """log(sum(exp(row))) of each row, computed from its largest value so that it stays finite."""
    top = values.max(axis=1)
    return np.asarray(top + np.log(np.exp(values - top[:, np.newaxis]).sum(axis=1)))


def _article(name: str) -> str:
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"
